"""`metis-env kernel install`: the kernelspec it writes (no key in it), and a real kernel started from
it by jupyter_client that calls the gateway stand-in, outlives its token, and calls it again."""

from __future__ import annotations

import json
import os
import queue
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from metis_env.testing.gateway_standin import REPLY
from tests._engines import chat_statuses, scan_processes, short_login, tokens, wait_until_expired
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests.conftest import metis

METIS_ENV = str(Path(sys.executable).parent / "metis-env")
CALL = """
import openai, os
client = openai.OpenAI(max_retries=0)   # what the kernel's environment holds: run --proxy's URL and local key
reply = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "hi"}])
print(reply.choices[0].message.content, os.getpid(), os.environ["OPENAI_BASE_URL"].startswith("http://127.0.0.1:"))
"""


@pytest.fixture
def stored(file_store, tmp_path) -> None:
    """One endpoint file's endpoint, 1, serving a model whose name has a slash."""
    path = tmp_path / "metis_endpoint_1.txt"
    path.write_text("BASE_URL=https://metis.alcf.anl.gov/v1/\nSAMBANOVA_API_KEY=sk-kernel-0123456789abcdef\n"
                    "MODELS=meta-llama/Llama-3.3-70B-Instruct,DeepSeek-R1\n")
    assert metis("import", str(path)).returncode == 0


@pytest.fixture
def jupyter_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(folder))  # --user writes here; jupyter_client looks here
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    return folder


@pytest.mark.parametrize(
    "args, name, display_name, endpoint_args",
    [
        (["1"], "metis-env-1", "Python 3 (metis-env 1)", ["1"]),
        ([], "metis-env", "Python 3 (metis-env)", []),
        (["DeepSeek-R1", "--name", "r1", "--display-name", "R1 (Metis)", "--user"], "r1", "R1 (Metis)", ["DeepSeek-R1"]),
        (["meta-llama/Llama-3.3-70B-Instruct"], "metis-env-meta-llama-llama-3.3-70b-instruct",
         "Python 3 (metis-env meta-llama/Llama-3.3-70B-Instruct)", ["meta-llama/Llama-3.3-70B-Instruct"]),
    ],
)
def test_kernel_install_writes_a_spec_that_runs_the_kernel_under_run_proxy(stored, jupyter_dir, args, name, display_name, endpoint_args):
    proc = metis("kernel", "install", *args)
    folder = jupyter_dir / "kernels" / name
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (0, b"", f"metis-env: installed kernel {name} in {folder}\n")
    assert json.loads((folder / "kernel.json").read_text()) == {
        "argv": [METIS_ENV, "run", "--proxy", *endpoint_args, "--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"metis_env": {"endpoint": endpoint_args[0] if endpoint_args else None}},
    }
    assert sorted(p.name for p in folder.iterdir()) == ["kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]
    assert KernelSpecManager().get_kernel_spec(name).display_name == display_name


def test_an_ipykernel_that_answers_no_interrupt_request_is_interrupted_by_signal(stored, jupyter_dir, tmp_path):
    """An ipykernel from before message interrupts (its Kernel has no interrupt_request): "signal"."""
    old = tmp_path / "old-ipykernel"
    (old / "ipykernel").mkdir(parents=True)
    (old / "ipykernel_launcher.py").write_text("")
    (old / "ipykernel" / "__init__.py").write_text("")
    (old / "ipykernel" / "kernelbase.py").write_text("class Kernel:\n    def do_execute(self):\n        pass\n")
    python = tmp_path / "python-with-an-old-ipykernel"  # a real Python that finds only that ipykernel
    python.write_text(f'#!/bin/sh\nPYTHONPATH={old} exec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    assert metis("kernel", "install", "1", "--python", str(python)).returncode == 0
    spec = json.loads((jupyter_dir / "kernels" / "metis-env-1" / "kernel.json").read_text())
    assert (spec["interrupt_mode"], spec["argv"][-5]) == ("signal", str(python))


def test_sys_prefix_installs_into_the_kernel_pythons_environment(stored, jupyter_dir):
    folder = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "metis-env-test-sys-prefix"
    try:
        proc = metis("kernel", "install", "1", "--name", "metis-env-test-sys-prefix", "--sys-prefix")
        assert (proc.returncode, proc.stderr.decode(), (folder / "kernel.json").is_file()) == (
            0, f"metis-env: installed kernel metis-env-test-sys-prefix in {folder}\n", True)
    finally:
        for path in folder.glob("*"):
            path.unlink()
        if folder.exists():
            folder.rmdir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["nothere"], "metis-env: error: no endpoint or model 'nothere' is stored; stored endpoints: 1\n"),
        (["--name", "a b"], "metis-env: error: kernel name 'a b' may hold only letters, digits, '.', '_' and '-'\n"),
        (["--python", "{bare}"], "metis-env: error: {bare} has no ipykernel; run: {bare} -m pip install ipykernel\n"),
        (["--python", "/nonexistent/python"], "metis-env: error: no Python at /nonexistent/python; give --python the interpreter the kernel should run\n"),
    ],
)
def test_kernel_install_refuses_what_cannot_work(stored, jupyter_dir, tmp_path, args, message):
    bare = tmp_path / "python-without-site-packages"  # a real Python that has no ipykernel
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    args, message = [a.format(bare=bare) for a in args], message.format(bare=bare)
    proc = metis("kernel", "install", *args)
    code = 3 if args == ["nothere"] else 2
    assert (proc.returncode, proc.stdout, proc.stderr.decode(), jupyter_dir.exists()) == (code, b"", message, False)


def test_sys_prefix_with_a_python_that_fails_to_say_its_prefix_is_one_line(stored, jupyter_dir, tmp_path):
    odd = tmp_path / "python-that-fails"  # has ipykernel, but fails when asked for sys.prefix
    odd.write_text(f'#!/bin/sh\ncase "$2" in *sys.prefix*) exit 3;; esac\nexec {sys.executable} "$@"\n')
    odd.chmod(0o755)
    proc = metis("kernel", "install", "--python", str(odd), "--sys-prefix")
    assert (proc.returncode, proc.stdout, proc.stderr.decode(), jupyter_dir.exists()) == (2, b"", (
        f"metis-env: error: {odd} did not tell its sys.prefix for --sys-prefix; check that it runs, "
        "or install for the user without --sys-prefix\n"
    ), False)


def execute(client, code: str) -> tuple[str, str]:
    """Run ``code`` in the kernel -> (status, what it printed)."""
    printed: list[str] = []

    def hook(message) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            printed.append("\n".join(message["content"]["traceback"]))

    reply = client.execute_interactive(code, output_hook=hook, timeout=120)
    return reply["content"]["status"], "".join(printed)


# A cell that cleans up when interrupted. The clean-up waits until the kernel's parent, metis-env, has
# no SIGINT pending and is waiting for signals again: had the interrupt been a signal to the process
# group (a kernelspec's "interrupt_mode": "signal"), the copy metis-env passes on would have reached
# the kernel by then and broken into the clean-up.
CLEANING_CELL = r"""
import os, time
def metis_env_took_it(pid=os.getppid()):
    with open(f"/proc/{pid}/status") as status:
        pending = sum(int(line.split()[1], 16) for line in status if line.startswith(("ShdPnd:", "SigPnd:")))
    with open(f"/proc/{pid}/task/{pid}/wchan") as wchan:
        return "sigtimedwait" in wchan.read() and not pending & 2
try:
    print("sleeping", flush=True)  # seen by the test while this line may still be flushing
    time.sleep(600)
except KeyboardInterrupt:
    while not metis_env_took_it():
        time.sleep(0.01)
    print("cleaned up", flush=True)
    raise
"""


def interrupt_a_long_cell(manager, client) -> tuple[str, str, str]:
    """Run a cell that sleeps and interrupt the kernel once while it runs, as a person presses Jupyter's
    button -> (status, ename, what the cell printed). Once the cell has printed, its
    own code runs: a SIGINT before that lands in ipykernel's code, which logs "KeyboardInterrupt caught
    in kernel" and never answers the cell."""
    msg_id = client.execute(CLEANING_CELL)
    printed: list[str] = []
    while not printed:
        message = client.get_iopub_msg(timeout=120)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
    manager.interrupt_kernel()
    while True:
        message = client.get_iopub_msg(timeout=120)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status" \
                and message["content"]["execution_state"] == "idle":
            break
    while True:
        try:
            reply = client.get_shell_msg(timeout=120)
        except queue.Empty:
            raise AssertionError("the interrupted cell never answered") from None
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["status"], reply["content"].get("ename", ""), "".join(printed)


def test_a_kernel_from_the_spec_stays_logged_in_across_a_token_expiry(jupyter_dir, globus, globus_env, monkeypatch):  # noqa: F811
    env = short_login(globus, globus_env, monkeypatch)
    assert metis("kernel", "install", "metis", env=env).returncode == 0
    spec_text = (jupyter_dir / "kernels" / "metis-env-metis" / "kernel.json").read_text()
    manager = KernelManager(kernel_name="metis-env-metis")
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        first = execute(client, CALL)
        refreshes_before = globus.grants("refresh_token")
        seen = wait_until_expired(globus, env)
        second = execute(client, CALL)
        third = execute(client, CALL)
        interrupted = interrupt_a_long_cell(manager, client)
        after_interrupt = execute(client, "print('still here')")
        secrets = seen | tokens(env)
        leaks = scan_processes(secrets)
        kernel_pid = int(first[1].split()[-2])
        parent = int(Path(f"/proc/{kernel_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent_argv = Path(f"/proc/{parent}/cmdline").read_bytes().decode().split("\0")[1:6]  # after the script's interpreter
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)

    assert [first[0], second[0], third[0]] == ["ok"] * 3, (first, second, third)
    # interrupted once: the cell's clean-up ran to its end (no second SIGINT broke into it)
    assert (interrupted, after_interrupt) == (("error", "KeyboardInterrupt", "sleeping\ncleaned up\n"), ("ok", "still here\n"))
    assert {line.replace(str(kernel_pid), "PID") for line in (first[1], second[1], third[1])} == {f"{REPLY} PID True\n"}
    assert (globus.grants("refresh_token") - refreshes_before, set(chat_statuses(globus))) == (1, {(200, True)})
    assert parent_argv == [METIS_ENV, "run", "--proxy", "metis", "--"]  # the kernel runs under metis-env
    assert (len(secrets) >= 3, leaks, [s for s in secrets if s in spec_text]) == (True, [], [])
    assert (manager.is_alive(), os.path.exists(f"/proc/{parent}")) == (False, False)
