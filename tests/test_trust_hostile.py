"""Hostile endpoint files: values built to break out of each shell's quoting, odd names, a 1 GiB file,
invalid UTF-8. A value travels the whole way: endpoint file -> parser -> store -> export -> the real
shell evaluating the code; a canary command (``metis_pwned``) named in the values must never run and
the shell must see every value byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metis_env.commands import endpoints, export
from metis_env.settings import load_settings
from metis_env.store import open_store
from tests._trust import CANARY_COMMAND, Remote, cases, canary_bin, endpoint_text, subprocess_env, write_endpoint
from tests._shells import SHELL_DIR, need, shell_env, write_metis_wrapper
from tests._shells import endpoint_text as shells_endpoint_text
from tests._shells import run as run_shell
from tests.conftest import metis

SHELLS = {
    # shell: (argv running a script file, how the script takes in one export's output file)
    "bash": (["bash"], 'eval "$(cat {file})"'),
    "dash": (["dash"], 'eval "$(cat {file})"'),
    "zsh": (["zsh", "-f"], 'eval "$(cat {file})"'),
    "fish": (["fish", "--no-config"], "cat {file} | source"),
}
RENDERER = {"bash": "bash", "dash": "sh", "zsh": "zsh", "fish": "fish"}
SHOWN = ("OPENAI_API_KEY", "MODEL_NAME", "OPENAI_BASE_URL", "METIS_ENV_ENDPOINT")

P = CANARY_COMMAND
FRAGMENTS = [
    "'", '"', "\\", "$", "`", ";", "&", "|", "<", ">", "(", ")", "{", "}", "[", "]", "*", "?", "~", "#", "!",
    "%", "^", "=", " ", "\t", "-e", "--", "\u2018", "\u2019", "\u201a", "\u201b", "é", "日本", "\u2028", "\u00a0",
    f"$({P})", f"`{P}`", f"'; {P}; '", f'"; {P}; "', f"\\'; {P}; #", f"; {P}", f"&& {P}", f"| {P}", f"({P})",
    f"{{{P}}}", f"%({P})", f"\\'$({P})\\'", f"'\\''; {P} #", f"$'\\x27'; {P}", f"!({P})", f"${{{P}}}", f"$(({P}))",
    f"\\\\'; {P}; '", "$HOME", "${PATH}", "!!", "\\n", "\\x27", "'\\''", "\\$", "$$",
]
VALUE = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=3)),
    max_size=8,
).map("".join)
ENDPOINT_VALUES = st.tuples(VALUE, VALUE, VALUE)  # key, model, the path of BASE_URL
BATCH = st.lists(ENDPOINT_VALUES, min_size=1, max_size=12)


def as_stored(key: str, model: str, path: str) -> tuple[str, str, str]:
    """The values as the parser will keep them (a model has no comma and no outer blanks)."""
    model = model.replace(",", "").strip(" \t") or "m"
    return key or "k", model, "https://metis.example/" + path


def write_batch(folder: Path, batch) -> dict[str, tuple[str, str, str]]:
    expected = {}
    for number, values in enumerate(batch, start=1):
        key, model, url = as_stored(*values)
        write_endpoint(folder, str(number), key, base_url=url, models=model)
        expected[str(number)] = (key, model, url, str(number))
    return expected


def evaluate(shell: str, code_files: list[Path], workdir: Path, unquoted: bool = False) -> tuple[list[tuple[str, ...]], str]:
    """Evaluate each export output in one shell process; what it saw after each, and its stderr."""
    bin_dir, _record = canary_bin(workdir / "canary")
    argv, take = SHELLS[shell]
    if unquoted:
        take = take.replace('"$(cat {file})"', "$(cat {file})")
    lines = []
    for code_file in code_files:
        lines.append(take.format(file=f"'{code_file}'"))
        lines.append("printenv " + " ".join(SHOWN))
    script = workdir / f"script.{shell}"
    script.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in SHOWN}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run([*argv, str(script)], capture_output=True, env=env, cwd=workdir, timeout=120)
    out = proc.stdout.split(b"\n")[:-1]
    seen = [tuple(v.decode("utf-8") for v in out[i : i + 4]) for i in range(0, len(out), 4)]
    return seen, proc.stderr.decode("utf-8", "replace")


def export_files(folder: Path, ids, shell: str) -> list[Path]:
    """What ``metis-env export ID --shell X`` prints, through the same function the CLI calls."""
    settings = load_settings()
    store = open_store(settings)
    paths = []
    for endpoint_id in ids:
        code, _warnings = export.export_code(store, settings, endpoint_id, None, RENDERER[shell], False)
        path = folder / f"export-{endpoint_id}.{shell}"
        path.write_text(code, encoding="utf-8")
        paths.append(path)
    return paths


def run_batch(shell: str, batch, tmp_path: Path) -> None:
    work = tmp_path / f"batch-{time.monotonic_ns()}"
    expected = write_batch(work / "files", batch)
    settings = load_settings()
    endpoints.import_files(open_store(settings), sorted(map(str, (work / "files").iterdir())), None)
    seen, stderr = evaluate(shell, export_files(work, expected, shell), work)
    assert not (work / "canary" / "PWNED").exists(), (work / "canary" / "PWNED").read_text()
    assert (seen, stderr) == (list(expected.values()), "")
    cases(3 * len(batch))


HYPOTHESIS = settings(
    max_examples=int(os.environ.get("METIS_TRUST_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("shell", SHELLS)
@HYPOTHESIS
@given(batch=BATCH)
def test_hostile_values_in_an_endpoint_file_reach_the_shell_byte_for_byte_and_run_nothing(shell, batch, tmp_path, memory_keyring):
    run_batch(shell, batch, tmp_path)


NASTY = [
    f"$({P})", f"`{P}`", f"'; {P}; '", f'"; {P}; "', f"\\'; {P}; #", f"a b  c\t*", f"'\\''{P}", "\u2019; " + P,
    f"x\"$({P})\"y", f"$(( $({P}) ))", "-e", "--", f"%({P})", "日本語 ~ $HOME !!", f"{{{P}}} \\ \\\\",
    f"k'; {P}; #", "a * b", "?", "[a-z]*", f"+({P})", "'$'",
]
# File names an unquoted `eval $(...)` would paste into the code if a value's glob reached the shell.
HOSTILE_FILE_NAMES = [f"x';{P};'", "K='a", f"';{P};#", f"$({P})", f"a';{P};'b", "'", f"`{P}`"]


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_real_cli_exports_nasty_values_that_each_shell_evaluates_verbatim(shell, tmp_path):
    expected = write_batch(tmp_path / "files", [(v, v, v) for v in NASTY])
    assert metis("import", *sorted(map(str, (tmp_path / "files").iterdir()))).returncode == 0
    code_files = []
    for endpoint_id in expected:
        proc = metis("export", endpoint_id, "--shell", RENDERER[shell])
        assert (proc.returncode, proc.stderr) == (0, b"")
        code_files.append(tmp_path / f"export-{endpoint_id}")
        code_files[-1].write_bytes(proc.stdout)
    seen, stderr = evaluate(shell, code_files, tmp_path)
    assert not (tmp_path / "canary" / "PWNED").exists()
    assert (seen, stderr) == (list(expected.values()), "")
    cases(3 * len(NASTY))


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize("shell", ["bash", "zsh", "dash"])
def test_an_unquoted_eval_of_nasty_values_runs_nothing(shell, tmp_path):
    """``eval $(metis-env export 1)`` splits and globs the code before eval reads it: the code holds no
    blank and no glob character, so hostile file names next to it change nothing and run nothing."""
    expected = write_batch(tmp_path / "files", [(v, v, v) for v in NASTY])
    metis("import", *sorted(map(str, (tmp_path / "files").iterdir())), check=True)
    for name in HOSTILE_FILE_NAMES:  # something for a glob in a value to find
        (tmp_path / name).touch()
    seen, stderr = evaluate(shell, export_files(tmp_path, expected, shell), tmp_path, unquoted=True)
    assert not (tmp_path / "canary" / "PWNED").exists()
    assert (seen, stderr) == (list(expected.values()), "")
    cases(3 * len(NASTY))


# export without --shell, evaluated by a shell that is not the one $SHELL names (a bash script run by a
# fish user, fish after `exec fish` from a bash login): (how the shell runs the real CLI, $SHELL).
EVALUATORS = {
    "bash": (["bash", "--norc", "--noprofile"], ['eval "$({cmd})" || exit 99', "eval $({cmd}) || exit 99"], "/usr/bin/fish"),
    "bash --posix": (["bash", "--posix", "--norc", "--noprofile"], ['eval "$({cmd})" || exit 99'], "/usr/bin/fish"),
    "dash": (["dash"], ['eval "$({cmd})" || exit 99', "eval $({cmd}) || exit 99"], "/usr/bin/fish"),
    "zsh": (["zsh", "-f"], ['eval "$({cmd})" || exit 99', "eval $({cmd}) || exit 99"], "/usr/local/bin/pwsh"),
    "fish": (["fish", "--no-config"], ["{cmd} | source; or exit 99", 'eval "$({cmd})"; or exit 99'], "/bin/bash"),
}


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize("shell", EVALUATORS)
def test_export_without_shell_is_read_alike_by_every_shell_whatever_shell_says(shell, tmp_path):
    """The default code does not depend on $SHELL: the fast path (``export ID``) and the click path
    (``--store file export ID``), evaluated quoted and unquoted, give every value byte for byte."""
    from tests._shells import write_metis_wrapper

    argv, forms, login_shell = EVALUATORS[shell]
    batch = [tuple(NASTY[i : i + 3]) + ("x",) * (3 - len(NASTY[i : i + 3])) for i in range(0, len(NASTY), 3)]
    expected = write_batch(tmp_path / "files", batch)
    metis("import", *sorted(map(str, (tmp_path / "files").iterdir())), check=True)
    work = tmp_path / "work"
    work.mkdir()
    for name in HOSTILE_FILE_NAMES:
        (work / name).touch()
    bin_dir, record = canary_bin(tmp_path / "canary")
    write_metis_wrapper(bin_dir)
    lines, runs = [], []
    for endpoint_id in expected:
        for cmd in (f"metis-env export {endpoint_id}", f"metis-env --store file export {endpoint_id}"):
            for form in forms:
                lines += [form.format(cmd=cmd), "printenv " + " ".join(SHOWN)]
                runs.append(expected[endpoint_id])
    script = tmp_path / "script"
    script.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in SHOWN}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", SHELL=login_shell, HOME=str(tmp_path))
    proc = subprocess.run([*argv, str(script)], capture_output=True, env=env, cwd=work, timeout=300)
    out = proc.stdout.split(b"\n")[:-1]
    seen = [tuple(v.decode("utf-8") for v in out[i : i + 4]) for i in range(0, len(out), 4)]
    assert not record.exists(), record.read_text()
    assert (proc.returncode, seen, proc.stderr.decode()) == (0, runs, "")
    cases(3 * len(runs))


# --- odd files and names ---------------------------------------------------------------------------


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


# The child reports its own peak (VmHWM of its address space, which starts afresh at exec): wait4's
# ru_maxrss also counts the pytest process's pages the child had before exec, which made the figure
# depend on how big pytest had grown by then.
_PEAK_REPORTER = (
    "import atexit, os, sys\n"
    "def report():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            os.write(int(os.environ['PEAK_FD']), line.split()[1].encode())\n"
    "atexit.register(report)\n"
    "sys.argv = ['metis-env', *sys.argv[1:]]\n"
    "from metis_env.main import main\n"
    "sys.exit(main())\n"
)


def run_measured(args: list[str], stdin=None) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run the CLI; its exit, output, wall time and peak memory (KiB, as the child saw it)."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _PEAK_REPORTER, *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**subprocess_env(), "PEAK_FD": str(write_end)},
                            pass_fds=(write_end,))
    os.close(write_end)
    stdout, stderr = proc.communicate(timeout=60)
    seconds = time.monotonic() - started
    with os.fdopen(read_end, "rb") as report:
        peak_kib = int(report.read() or b"0")
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), seconds, peak_kib


@pytest.mark.usefixtures("file_store")
def test_a_1_gib_file_is_refused_without_reading_it(tmp_path, env_setup):
    huge = tmp_path / "metis_endpoint_1.txt"
    with open(huge, "wb") as handle:
        handle.write(endpoint_text("sk-huge-0123456789abcdef").encode())
        handle.truncate(1 << 30)  # sparse: costs no disk
    limit = "file is 65537 bytes, over the 65536-byte limit for an endpoint file"
    for args, stdin, name in ((["import", str(huge)], None, str(huge)), (["import", "--id", "1", "-"], "open", "<stdin>")):
        with open(huge, "rb") as source:
            proc, seconds, peak_kib = run_measured(args, stdin=source if stdin else None)
            offset = source.tell() if stdin else 0
        assert result(proc) == (4, "", f"metis-env: error: {name}: {limit}\n")
        assert seconds < 5 and peak_kib < 120 * 1024, (seconds, peak_kib)
        assert offset <= 1 << 20  # stdin was read no further than a buffer past the limit
    link = tmp_path / "zeros" / "metis_endpoint_2.txt"
    link.parent.mkdir()
    link.symlink_to("/dev/zero")
    proc, seconds, peak_kib = run_measured(["import", str(link)])
    assert result(proc) == (4, "", f"metis-env: error: {link}: {limit}\n")
    assert seconds < 5 and peak_kib < 120 * 1024
    assert not env_setup.exists() or not (env_setup / "endpoints.yaml").exists()
    cases(3)


@pytest.mark.usefixtures("file_store")
def test_invalid_utf8_is_refused_with_its_line_and_stores_nothing(tmp_path, env_setup):
    path = tmp_path / "metis_endpoint_1.txt"
    path.write_bytes(b"BASE_URL=https://m.example/\nSAMBANOVA_API_KEY=sk-\xff\xfe-0123456789abcdef\nMODELS=a\n")
    overlong = tmp_path / "o" / "metis_endpoint_2.txt"
    overlong.parent.mkdir()
    overlong.write_bytes(b"BASE_URL=https://m.example/\nSAMBANOVA_API_KEY=sk-0123456789abcdef\nMODELS=\xc0\xaf\n")
    assert result(metis("import", str(path))) == (4, "", f"metis-env: error: {path}:2: file is not UTF-8 text\n")
    assert result(metis("import", str(overlong))) == (4, "", f"metis-env: error: {overlong}:3: file is not UTF-8 text\n")
    assert result(metis("import", "--id", "3", "-", input=b"\xef\xbb\xbf\xed\xa0\x80=1\n")) == (
        4, "", "metis-env: error: <stdin>:1: file is not UTF-8 text\n")
    assert not (env_setup / "endpoints.yaml").exists()
    cases(3)


@pytest.mark.usefixtures("file_store")
def test_odd_file_names_are_one_escaped_line_and_never_reach_the_store_as_paths(tmp_path, env_setup):
    text = endpoint_text("sk-odd-0123456789abcdef")
    folder = tmp_path / "files"
    folder.mkdir()
    newline = folder / "metis_endpoint_1\n\x1b[2Jx.txt"
    newline.write_text(text)
    bell = folder / "a\x1b]0;pwned\x07b"
    assert result(metis("import", str(newline))) == (
        4, "", f"metis-env: error: {folder}/metis_endpoint_1\\n\\x1b[2Jx.txt: cannot tell the endpoint id from this file "
        f"name (metis_endpoint_N.txt becomes endpoint N); pass it: metis-env import --id ID '{folder}/metis_endpoint_1\\n\\x1b[2Jx.txt'\n")
    assert result(metis("import", str(bell))) == (3, "", f"metis-env: error: {folder}/a\\x1b]0;pwned\\x07b: no such file\n")
    assert result(metis("import", "--id", "../x", "-", input=text.encode())) == (
        4, "", "metis-env: error: endpoint id '../x' is not valid: use letters, digits, '.', '_' or '-'\n")
    # ../ in a path the user typed is only a path: the stored name is the file's own, the id from it
    (folder / "sub").mkdir()
    (folder / "metis_endpoint_2.txt").write_text(text)
    assert result(metis("import", str(folder / "sub" / ".." / "metis_endpoint_2.txt"))) == (0, "", "endpoint 2: new\n")
    # a symlink the user names is followed, and named after the link; a dangling one is "no such file"
    (folder / "metis_endpoint_3.txt").symlink_to(folder / "metis_endpoint_2.txt")
    (folder / "metis_endpoint_4.txt").symlink_to(folder / "missing.txt")
    assert result(metis("import", str(folder / "metis_endpoint_3.txt"))) == (0, "", "endpoint 3: new\n")
    assert result(metis("import", str(folder / "metis_endpoint_4.txt"))) == (
        3, "", f"metis-env: error: {folder}/metis_endpoint_4.txt: no such file\n")
    assert result(metis("import", str(folder))) == (4, "", f"metis-env: error: {folder}: is a directory, not an endpoint file\n")
    rows = [(r["id"], r["file_name"]) for r in __import__("json").loads(metis("list", "--json").stdout)["endpoints"]]
    assert rows == [("2", "metis_endpoint_2.txt"), ("3", "metis_endpoint_3.txt")]
    cases(8)


# --- served by the login node and synced ------------------------------------------------------------


@pytest.fixture
def remote(tmp_path):
    node = Remote(tmp_path / "remote-home")
    yield node
    node.stop()


def serve_batch(remote: Remote, folder: Path, batch) -> dict[str, tuple[str, str, str, str]]:
    expected = write_batch(folder, batch)
    remote.serve({p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())})
    return expected


@pytest.mark.usefixtures("file_store")
@settings(max_examples=int(os.environ.get("METIS_TRUST_SYNC_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(batch=st.lists(ENDPOINT_VALUES, min_size=1, max_size=12))
def test_hostile_values_served_by_the_login_node_are_synced_and_evaluated_verbatim(batch, remote, tmp_path):
    work = tmp_path / f"sync-{time.monotonic_ns()}"
    expected = serve_batch(remote, work / "files", batch)
    proc = remote.sync()
    assert proc.returncode == 0, proc.stderr
    for shell in SHELLS:
        seen, stderr = evaluate(shell, export_files(work, expected, shell), work)
        assert not (work / "canary" / "PWNED").exists()
        assert (seen, stderr) == (list(expected.values()), ""), shell
    cases(3 * len(batch) * len(SHELLS))


@pytest.mark.usefixtures("file_store")
def test_the_nasty_values_synced_then_exported_by_the_real_cli_run_nothing(remote, tmp_path):
    expected = serve_batch(remote, tmp_path / "files", [(v, v, v) for v in NASTY])
    assert remote.sync().returncode == 0
    for shell in SHELLS:
        code_files = []
        for endpoint_id in expected:
            proc = metis("export", endpoint_id, "--shell", RENDERER[shell])
            code_files.append(tmp_path / f"export-{endpoint_id}.{shell}")
            code_files[-1].write_bytes(proc.stdout)
        seen, stderr = evaluate(shell, code_files, tmp_path)
        assert not (tmp_path / "canary" / "PWNED").exists()
        assert (seen, stderr) == (list(expected.values()), ""), shell
    cases(3 * len(NASTY) * len(SHELLS))


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize(
    "name, shown",
    [
        ("metis_endpoint_1\n\x1b[2Jx.txt", "metis_endpoint_1\\n\\x1b[2Jx.txt"),
        (f"metis_endpoint_$({P}).txt", f"metis_endpoint_$({P}).txt"),
        ("metis_endpoint_\u202e1.txt", "metis_endpoint_\\u202e1.txt"),
    ],
)
def test_an_oddly_named_remote_file_is_one_escaped_line_and_the_store_is_untouched(name, shown, remote, tmp_path, env_setup):
    remote.serve({"metis_endpoint_1.txt": endpoint_text("sk-first-0123456789abcdef")})
    assert remote.sync().returncode == 0
    before = {p.name: p.read_bytes() for p in env_setup.iterdir()}
    (remote.home / name).write_text(endpoint_text("sk-odd-0123456789abcdef"))
    bin_dir, record = canary_bin(tmp_path / "canary")
    proc = remote.sync(env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout, err.splitlines()[-1]) == (4, b"", (
        f"metis-env: error: on {remote.user}@127.0.0.1: {shown}: cannot tell the endpoint id from this file name; "
        "name it metis_endpoint_N.txt or pass --id; nothing was changed"))
    assert err.isprintable() is False and all(line.isprintable() for line in err.splitlines())
    assert not record.exists()
    assert {p.name: p.read_bytes() for p in env_setup.iterdir()} == before
    cases(1)


# --- a hostile endpoint: check's time limit ---------------------------------------------------------


def _drip_server(mode: str):
    """A loopback HTTP server that answers each request one byte every 0.8 s, forever: in the status
    line and headers (``head``) or in a body it announced as long (``body``)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.recv(65536)
            if mode == "body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            drip = b"HTTP/1.1 200 OK\r\nX-Slow: " if mode == "head" else b'{"data": ['
            while not stop.is_set():
                for byte in drip + b"a" * 1000000:
                    if stop.wait(0.8):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        return

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, stop


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize("mode", ["head", "body"])
def test_check_timeout_bounds_the_whole_call_against_a_dripping_endpoint(mode, tmp_path):
    listener, stop = _drip_server(mode)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/"
        write_endpoint(tmp_path / "files", "1", "sk-drip-0123456789abcdef", base_url=url)
        metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"), check=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "metis_env", "check", "1", "--timeout", "2"], capture_output=True,
                              timeout=60, env=subprocess_env())
        seconds = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
    where = url.split("/")[2]
    assert (proc.returncode, proc.stdout.decode(), proc.stderr.decode(), seconds < 6) == (
        14, f"1: timeout: {where} did not answer within 2 s\n",
        f"metis-env: error: check of endpoint 1: {where} did not answer within 2 s\n", True)


# --- TAB completion of hostile names ----------------------------------------------------------------

HOSTILE_MODEL = "zz$(touch PWNED)`touch PWNED2`;touch PWNED3 'q' \"d\" *"


@pytest.mark.usefixtures("file_store")
def test_bash_completion_inserts_a_hostile_model_name_quoted(tmp_path):
    """What _metis_env_complete puts in COMPREPLY is what readline types on the line: pressing Enter
    must give the model name as one word and run nothing."""
    folder = tmp_path / "endpoint-files"
    folder.mkdir()
    (folder / "metis_endpoint_1.txt").write_text(shells_endpoint_text("sk-one", models=HOSTILE_MODEL.replace("\"", "")))
    metis("import", str(folder / "metis_endpoint_1.txt"), check=True)
    bin_dir = tmp_path / "bin"
    write_metis_wrapper(bin_dir)
    work = tmp_path / "work"
    work.mkdir()
    script = (
        f"source '{SHELL_DIR / 'metis-env.bash'}'; "
        "COMP_LINE='metis-env export 1 --model zz'; COMP_POINT=${#COMP_LINE}; _metis_env_complete; "
        "for word in \"${COMPREPLY[@]}\"; do eval \"printf '[%s]\\n' $word\"; done; "
        "COMP_LINE='metis-env export zz'; COMP_POINT=${#COMP_LINE}; _metis_env_complete; "
        "for word in \"${COMPREPLY[@]}\"; do eval \"printf '[%s]\\n' $word\"; done"
    )
    result = run_shell([need("bash"), "--norc", "--noprofile", "-c", script], shell_env(bin_dir), cwd=work)
    model = HOSTILE_MODEL.replace('"', "")
    assert (result.returncode, result.stdout.decode(), result.stderr, sorted(os.listdir(work))) == (
        0, f"[{model}]\n[{model}]\n", b"", [])


