"""Leak scan: a canary key goes through every command and option, failures and tracebacks included.

It may appear only where the user asked for it: ``export``'s and ``get key``'s stdout and ``run``'s
child environment. Never on stderr, in endpoints.yaml, config.yaml or any other file but the key
store, in an exception's text, or in the argv (/proc/PID/cmdline) of a process metis-env starts.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metis_env import main as metis_main
from metis_env.endpoint import parse_endpoint_file
from metis_env.errors import EndpointFileError
from metis_env.testing.openai_server import OpenAIStubServer
from metis_env.testing.loginnode import Faults
from tests._trust import Remote, cases, endpoint_text, start_metis, subprocess_env, wait_for_line, write_endpoint
from tests.conftest import metis

# The middle of the key is what must never show: the mask (`sk-…q9w8`) shows its first three and
# last four characters by design.
CORE = "CANARY5eCr3t7f3a9c1e5b2d"
KEY = f"sk-{CORE}q9w8"
OTHER_KEY = "sk-other-0123456789abcdef"

FAKE_TOOLS = ("ssh", "dump-child")


def fake_bin(folder: Path) -> Path:
    """Stand-ins for every program metis-env may start: each records its own argv and environment."""
    folder.mkdir()
    log = folder / "started"
    log.mkdir()
    for name in FAKE_TOOLS:
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f"cat /proc/$$/cmdline > '{log}/'$$.cmdline\n"
            f"cat /proc/$$/environ > '{log}/'$$.environ\n"
            "exit 255\n" if name == "ssh" else
            "#!/bin/sh\n"
            f"cat /proc/$$/cmdline > '{log}/'$$.cmdline\n"
            f"cat /proc/$$/environ > '{log}/'$$.environ\n"
            "exit 0\n"
        )
        script.chmod(0o755)
    return log


class EchoingServer(http.server.BaseHTTPRequestHandler):
    """A hostile endpoint: its error answers repeat the request's Authorization header."""

    def _answer(self) -> None:
        body = json.dumps({"error": {"message": f"bad key: {self.headers.get('Authorization')}"}}).encode()
        self.send_response(401 if self.path.endswith("/models") else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echo_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/"
    server.shutdown()
    server.server_close()
    thread.join()


class Scan:
    """Runs commands and collects every place the canary showed where it must not."""

    def __init__(self, config: Path, files: Path):
        self.config = config
        self.files = files
        self.leaks: list[str] = []
        self.runs = 0

    def run(self, *args: str, allowed: bool = False, input: bytes | None = None, env: dict | None = None, config: Path | None = None) -> subprocess.CompletedProcess:
        env = dict(env or {})
        if config is not None:
            env["METIS_ENV_CONFIG_DIR"] = str(config)
        proc = metis(*args, input=input, env=env)
        return self.check(proc, " ".join(args) + (f" {env}" if env else ""), allowed, config)

    def check(self, proc: subprocess.CompletedProcess, label: str, allowed: bool = False, config: Path | None = None,
              passcodes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        self.runs += 1
        out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        if CORE in err:
            self.leaks.append(f"stderr of `{label}`")
        if allowed:
            if proc.returncode == 0 and KEY not in out:
                self.leaks.append(f"positive control: `{label}` exited 0 without the key on stdout")
        elif CORE in out:
            self.leaks.append(f"stdout of `{label}`")
        for name in self.files_with_canary(config or self.config):
            self.leaks.append(f"{name} after `{label}`")
        for code in passcodes:
            if code in out or code in err:
                self.leaks.append(f"passcode on the output of `{label}`")
            for path in (config or self.config).glob("*"):
                if path.is_file() and code.encode() in path.read_bytes():
                    self.leaks.append(f"passcode in {path.name} after `{label}`")
        return proc

    @staticmethod
    def files_with_canary(config: Path) -> list[str]:
        found = []
        if config.exists():
            for path in sorted(config.rglob("*")):
                # keys.json is the file store itself: the one file that holds the key by design.
                if path.is_file() and path.name != "keys.json" and CORE.encode() in path.read_bytes():
                    found.append(path.name)
        return found


@pytest.fixture
def scan(env_setup, tmp_path, file_store, monkeypatch) -> Scan:
    log = fake_bin(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    files = tmp_path / "files"
    write_endpoint(files, "1", KEY)
    write_endpoint(files, "2", OTHER_KEY, base_url="https://metis.alcf.anl.gov/v2/", models="Llama-3.3-70B-Instruct,Other")
    scanner = Scan(env_setup, files)
    scanner.log = log
    return scanner


def started_processes(log: Path) -> list[tuple[bytes, bytes]]:
    return [(p.read_bytes(), p.with_suffix(".environ").read_bytes()) for p in sorted(log.glob("*.cmdline"))]


def test_the_canary_shows_only_where_asked_for_through_every_command(scan: Scan, echo_server):
    f1, f2 = scan.files / "metis_endpoint_1.txt", scan.files / "metis_endpoint_2.txt"
    scan.run("import", str(f1), str(f2))
    scan.run("--debug", "import", str(f1))
    scan.run("import", "--id", "1", "-", input=f1.read_bytes())
    scan.run("--store", "file", "import", str(f1))
    for args in (["list"], ["list", "--json"], ["--debug", "list"], ["config", "list"], ["hook", "bash"], ["doctor"], ["doctor", "--json"]):
        scan.run(*args)
    for shell in ("bash", "zsh", "sh", "fish", "powershell", "dotenv", "json"):
        scan.run("export", "1", "--shell", shell, allowed=True)
        scan.run("export", "--unset", "--shell", shell)
    scan.run("export", "1", allowed=True)
    scan.run("export", "DeepSeek-R1", "--model", "DeepSeek-R1", allowed=True)
    scan.run("--debug", "export", "1", allowed=True)
    scan.run("export", "1", allowed=True, env={"METIS_ENV_DEBUG": "1"})
    scan.run("get", "key", "1", allowed=True)
    scan.run("--debug", "get", "key", "1", allowed=True)
    for args in (["get", "url", "1"], ["get", "models", "1"], ["get", "key", "9"], ["get", "nonsense", "1"]):
        scan.run(*args)
    # failures: unknown endpoint, model, shell; several endpoints and no default; bad options
    for args in (["export", "9"], ["export", "1", "--model", "nope"], ["export", "1", "--shell", "tcsh"], ["export"],
                 ["export", "1", "--bogus"], ["run", "9", "--", "true"], ["run", "1"], ["run", "1", "--", "no-such-command-xyz"]):
        scan.run(*args)
        scan.run(*args, env={"METIS_ENV_DEBUG": "1"})
        scan.run("--debug", *args)
    # check: a refused key, an endpoint that repeats the key in its error answers, nothing listening
    with OpenAIStubServer("sk-not-the-canary-0000000000", ["DeepSeek-R1"]) as stub_url:
        for number, url in (("3", stub_url), ("4", echo_server), ("5", "http://127.0.0.1:9/v1/")):
            scan.run("import", "--id", number, "-", input=endpoint_text(KEY, base_url=url).encode())
            for args in (["check", number], ["check", number, "--json"], ["--debug", "check", number]):
                scan.run(*args)
    # a keyring that does not work (the fail backend), asked for by option, setting and environment
    scan.run("--store", "keyring", "import", str(f1))
    scan.run("--debug", "--store", "keyring", "import", str(f1))
    scan.run("import", str(f1), env={"METIS_ENV_STORE": "keyring", "METIS_ENV_DEBUG": "1"})
    scan.run("config", "set", "default_endpoint", "1")
    scan.run("export", allowed=True)
    scan.run("forget", "5")
    scan.run("--debug", "forget", "4")
    cases(scan.runs)
    assert scan.leaks == []


def test_run_puts_the_key_in_the_childs_environment_never_in_its_argv(scan: Scan):
    scan.run("import", str(scan.files / "metis_endpoint_1.txt"))
    scan.run("run", "1", "--", "dump-child", "--flag", "value")
    scan.run("--debug", "run", "--model", "DeepSeek-R1", "1", "--", "dump-child")
    (cmdline_1, environ_1), (cmdline_2, environ_2) = started_processes(scan.log)
    assert {cmdline_1, cmdline_2} == {
        f"/bin/sh\0{scan.log.parent / 'dump-child'}\0--flag\0value\0".encode(),
        f"/bin/sh\0{scan.log.parent / 'dump-child'}\0".encode(),
    }
    for environ in (environ_1, environ_2):
        assert f"\0OPENAI_API_KEY={KEY}\0".encode() in environ
        assert f"\0SAMBANOVA_API_KEY={KEY}\0".encode() in environ
    cases(scan.runs)
    assert scan.leaks == []


def test_doctor_starts_ssh_without_the_key_in_its_argv_or_environment(scan: Scan):
    scan.run("import", str(scan.files / "metis_endpoint_1.txt"))
    scan.run("doctor", env={"METIS_ENV_TRANSPORT": "openssh"})
    started = started_processes(scan.log)
    assert [cmdline.split(b"\0")[1:4] for cmdline, _ in started] == [[str(scan.log.parent / "ssh").encode(), b"-O", b"check"]]
    assert [CORE.encode() in cmdline + environ for cmdline, environ in started] == [False]
    cases(scan.runs)
    assert scan.leaks == []


BAD_FILES = {
    "http base url": endpoint_text(KEY, base_url="http://metis.example/v1/"),
    "no models": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY={KEY}\n',
    "empty models": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY={KEY}\nMODELS=,\n',
    "key twice": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY={KEY}\nSAMBANOVA_API_KEY={KEY}\nMODELS=a\n',
    "unmatched quote": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY="{KEY}\nMODELS=a\n',
    "control character": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY={KEY}\x1b[2J\nMODELS=a\n',
    "key wrapped onto its own line": f'BASE_URL=https://m.example/\nSAMBANOVA_API_KEY=\n{KEY}==\nMODELS=a\n',
    "key as a line without =": f'BASE_URL=https://m.example/\n{KEY}\nMODELS=a\n',
    "too big": endpoint_text(KEY) + "#" * 70000 + "\n",
    "not UTF-8": endpoint_text(KEY) + "\udcff\n",
}


def test_a_rejected_endpoint_file_never_repeats_the_key(scan: Scan):
    for number, (name, text) in enumerate(BAD_FILES.items(), start=1):
        path = scan.files / f"bad_{number}" / f"metis_endpoint_{number}.txt"
        path.parent.mkdir()
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        for args in (["import", str(path)], ["--debug", "import", str(path)], ["import", "--id", "7", "-"]):
            proc = scan.run(*args, input=path.read_bytes())
            assert proc.returncode == 4, (name, args, proc.stderr)
    cases(scan.runs)
    assert scan.leaks == []


def test_damaged_or_unsafe_stores_and_a_forced_internal_error_never_show_the_key(scan: Scan, tmp_path):
    scan.run("import", str(scan.files / "metis_endpoint_1.txt"))
    stores = {}
    for name in ("damaged keys", "keys readable by others", "internal error"):
        copy = tmp_path / name.replace(" ", "-")
        shutil.copytree(scan.config, copy)
        stores[name] = copy
    (stores["damaged keys"] / "keys.json").write_text(json.dumps({"version": 1, "keys": [KEY, {"x": KEY}]}))
    (stores["keys readable by others"] / "keys.json").chmod(0o644)
    metadata = stores["internal error"] / "endpoints.yaml"
    data = json.loads(metadata.read_text())
    data["endpoints"]["1"]["base_url"] = 5  # a type the code never expects: a bug, not a user error
    metadata.write_text(json.dumps(data))
    internal = scan.run("--debug", "export", "1", config=stores["internal error"])
    assert internal.stderr.decode().startswith("Traceback (most recent call last):\n")
    for config in stores.values():
        for args in (["export", "1"], ["get", "key", "1"], ["get", "url", "1"], ["list"], ["list", "--json"],
                     ["run", "1", "--", "dump-child"], ["import", str(scan.files / "metis_endpoint_1.txt")]):
            allowed = args[0] == "export" or args[:2] == ["get", "key"]
            scan.run(*args, config=config, allowed=allowed)
            scan.run(*args, config=config, allowed=allowed, env={"METIS_ENV_DEBUG": "1"})
            scan.run("--debug", *args, config=config, allowed=allowed)
    cases(scan.runs)
    assert scan.leaks == []


def test_the_in_process_keyring_path_keeps_the_key_in_the_keyring_only(env_setup, memory_keyring, tmp_path, capfd):
    path = write_endpoint(tmp_path / "files", "1", KEY)
    runs = [(["import", str(path)], False), (["list", "--json"], False), (["export", "1"], True),
            (["export", "1", "--shell", "fish"], True), (["get", "key", "1"], True), (["export", "2"], False),
            (["--debug", "list"], False), (["forget", "1"], False)]
    leaks = []
    for argv, allowed in runs:
        metis_main.main(argv)
        out, err = capfd.readouterr()
        if CORE in err or (CORE in out) != allowed:
            leaks.append(argv)
        leaks += [(argv, name) for name in Scan.files_with_canary(env_setup)]
        if argv[0] == "import":
            assert list(memory_keyring.entries.values()) == [KEY]
    assert memory_keyring.entries == {}
    cases(len(runs))
    assert leaks == []


KEY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=20)
LINE = st.one_of(
    st.just("BASE_URL=https://m.example/"), st.just("BASE_URL=http://m.example/"), st.just("MODELS=a,b"),
    st.just("MODELS="), st.just(""), st.just("#"), st.just("=="), st.just("export"), KEY_TEXT,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(LINE, max_size=4), after=st.lists(LINE, max_size=4),
    prefix=st.sampled_from(["SAMBANOVA_API_KEY=", "SAMBANOVA_API_KEY='", "SAMBANOVA_API_KEY=\"", "export SAMBANOVA_API_KEY=", "", "X ", "1="]),
    suffix=KEY_TEXT, repeat=st.booleans(),
)
def test_parser_errors_never_quote_the_key(before, after, prefix, suffix, repeat):
    key_line = prefix + KEY + suffix
    lines = before + [key_line] + ([key_line] if repeat else []) + after
    try:
        endpoint = parse_endpoint_file("\n".join(lines), "metis_endpoint_1.txt")
    except EndpointFileError as exc:
        assert CORE not in str(exc) and CORE not in repr(exc)
    else:
        assert CORE not in repr(endpoint)
        assert CORE not in json.dumps(endpoint.extra)
    cases(1)


def test_a_sync_that_succeeds_or_dies_midway_never_shows_the_key_or_the_passcode(scan: Scan, tmp_path):
    files = {"metis_endpoint_1.txt": endpoint_text(KEY), "metis_endpoint_2.txt": endpoint_text(OTHER_KEY, models="Other")}
    nodes = {}
    try:
        for name, faults in (("ok", None), ("drop at read", Faults(drop_at="read")), ("drop at listdir", Faults(drop_at="listdir")),
                             ("hang at read", Faults(hang_at="read")), ("drop at auth", Faults(drop_at="auth"))):
            nodes[name] = Remote(tmp_path / "remote" / name.replace(" ", "-"), faults=faults)
            nodes[name].serve(files)
        ok = nodes["ok"]
        for extra, env in (((), {}), (("--dry-run",), {}), ((), {"METIS_ENV_DEBUG": "1"}), (("--timeout", "5"), {})):
            scan.check(ok.sync(*extra, env=env), f"sync {extra} {env}", passcodes=tuple(ok.codes))
        debug = subprocess.run([sys.executable, "-m", "metis_env", "--debug", *ok.args()], input=b"000000\n",
                               capture_output=True, env=subprocess_env(), timeout=120)
        scan.check(debug, "--debug sync with a refused code", passcodes=("000000",))
        for name, node in nodes.items():
            if name == "ok":
                continue
            for env in ({}, {"METIS_ENV_DEBUG": "1"}):
                proc = scan.check(node.sync("--timeout", "1", env=env), f"sync ({name}) {env}", passcodes=tuple(node.codes))
                assert proc.returncode != 0, name
    finally:
        for node in nodes.values():
            node.stop()
    scan.run("export", "1", allowed=True)
    cases(scan.runs)
    assert scan.leaks == []


def test_sync_via_openssh_starts_ssh_without_the_key_in_its_argv(scan: Scan, tmp_path):
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    (remote_home / "metis_endpoint_1.txt").write_text(endpoint_text(KEY))
    ssh = scan.log.parent / "ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        f"cat /proc/$$/cmdline > '{scan.log}/'$$.cmdline\n"
        f"cat /proc/$$/environ > '{scan.log}/'$$.environ\n"
        f"cd '{remote_home}' && HOME='{remote_home}' exec sh -s\n"
    )
    for args in (["sync", "--via", "openssh", "--host", "metis", "--user", "alice"],
                 ["--debug", "sync", "--via", "openssh", "--host", "metis", "--dry-run"]):
        proc = scan.run(*args)
        assert proc.returncode == 0, proc.stderr
    started = started_processes(scan.log)
    assert len(started) == 2
    assert [CORE.encode() in cmdline + environ for cmdline, environ in started] == [False, False]
    assert [cmdline.split(b"\0")[1] for cmdline, _ in started] == [str(ssh).encode()] * 2
    scan.run("get", "key", "1", allowed=True)
    cases(scan.runs)
    assert scan.leaks == []


# --- the gateway's Globus tokens and the authorization code ----------------------------------------

from tests._gateway import gateway_env, login_headless  # noqa: E402
from tests._globus import globus, globus_env  # noqa: E402,F401  (fixtures)


def test_globus_tokens_and_the_code_show_only_where_asked_for(globus, globus_env, tmp_path):
    """The access and refresh tokens and the authorization code, through login, export, get, list,
    config, doctor, a refresh, a refused refresh with --debug, sync --gateway and logout: on stdout
    only for export/get key, in the key store only, never on stderr or in another file."""
    codes: list[str] = []
    approve = globus.approve
    globus.approve = lambda url: codes.append(approve(url)) or codes[-1]
    env = gateway_env(globus_env)
    code, out, err, _url = login_headless(env, globus)
    assert code == 0
    config = Path(env["METIS_ENV_CONFIG_DIR"])
    keys = json.loads((config / "keys.json").read_text())["keys"]
    secrets = [codes[0], *keys.values()]
    outputs = [(out, err.encode())]
    asked = []
    margin = {"METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}
    for args, extra, may_show in [
        (("export", "metis"), {}, True),
        (("--debug", "export", "sophia", "--shell", "json"), {}, True),
        (("get", "key", "metis"), {}, True),
        (("list",), {}, False),
        (("list", "--json"), {}, False),
        (("config", "list"), {}, False),
        (("doctor",), {}, False),
        (("sync", "--gateway"), {}, False),
        (("export", "metis"), margin, True),  # a refresh
    ]:
        proc = metis(*args, env={**env, **extra})
        (asked if may_show else outputs).append((proc.stdout, proc.stderr))
        if may_show:
            outputs.append((b"", proc.stderr))
    keys = json.loads((config / "keys.json").read_text())["keys"]
    secrets += list(keys.values())
    globus.refresh_fails = True
    refused = metis("--debug", "export", "metis", env={**env, **margin})
    assert refused.returncode == 0  # the token still works: handed out, with a warning (issue 16)
    asked.append((refused.stdout, b""))
    outputs.append((b"", refused.stderr))
    files = {p: p.read_bytes() for p in config.rglob("*") if p.is_file() and p.name != "keys.json"}
    logout = metis("--debug", "logout", env=env)
    outputs.append((logout.stdout, logout.stderr))
    files.update({p: p.read_bytes() for p in config.rglob("*") if p.is_file() and p.name != "keys.json"})
    for secret in set(secrets):
        needle = secret.encode()
        assert [i for i, (o, e) in enumerate(outputs) if needle in o or needle in e] == []
        assert [str(p) for p, data in files.items() if needle in data] == []
    assert [s for s in set(secrets) if s.encode() in (config / "keys.json").read_bytes()] == []  # logout forgot them
    assert any(keys[k].encode() in o for o, _e in asked for k in keys)  # the probe can see a token
    cases(len(set(secrets)) * (len(outputs) + len(files)))


# Attack: a crashing command that holds a key dumped it into a core file. With `ulimit -c unlimited`
# and the kernel writing `core` in the working directory, each command dies by SIGABRT while it holds
# the key (the fast path after get, a writer paused mid-update) and leaves no core file; run's command
# still gets the core limit it would have had.
CORE_CHILD = (
    "import os, sys\n"
    "from metis_env.main import main\n"
    "main(sys.argv[1:])\n"
    "os.abort()\n"
)


@pytest.mark.usefixtures("file_store")
def test_a_crash_while_holding_the_key_leaves_no_core_file(tmp_path, env_setup):
    import resource
    import signal

    write_endpoint(tmp_path / "files", "1", CANARY_KEY_FOR_CORE)
    metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"), check=True)
    unlimited = lambda: resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # noqa: E731
    work = tmp_path / "work"
    work.mkdir()
    fast = subprocess.run([sys.executable, "-c", CORE_CHILD, "get", "key", "1"], cwd=work, capture_output=True, timeout=60,
                          env=subprocess_env(), preexec_fn=unlimited)
    writer = start_metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"), cwd=work, preexec_fn=unlimited,
                         env={"METIS_ENV_TEST_PAUSE_AT": "before-metadata"})
    wait_for_line(writer.stderr, "metis-env: paused at before-metadata")
    writer.send_signal(signal.SIGABRT)
    writer.wait(timeout=30)
    child = metis("run", "1", "--", "sh", "-c", "ulimit -c")
    assert (fast.returncode, fast.stdout.decode(), writer.returncode, sorted(os.listdir(work)), child.stdout.decode()) == (
        -signal.SIGABRT, CANARY_KEY_FOR_CORE + "\n", -signal.SIGABRT, [], subprocess.run(
            ["sh", "-c", "ulimit -c"], capture_output=True, text=True).stdout)


CANARY_KEY_FOR_CORE = "sk-core-0123456789abcdef"
