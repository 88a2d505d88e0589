"""`metis-env configure TOOL ID --proxy`: the tools' configs go through this host's broker.

The real tools (as tests/test_configure_tools.py runs them, against the same loopback stub) read a
config that names the broker's stable address (the proxy_port setting; conftest gives each test a
free one) and `metis-env get key ID --proxy`; each works with no broker running (its key command
starts one), and the stub sees every request come from the broker with the real key while no file the
tool reads holds it. Then what configure chooses (a table), what `get key --proxy` does when another
process holds the port (it refuses, so the tool sends nothing there), and that a refresh after sync
keeps a config on the broker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from metis_env.testing.openai_server import OpenAIStubServer
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests.conftest import metis
from tests.test_configure_tools import CASES, CASES_FILES, KEY, MODELS, NEEDS_RUN, REPLY, tool_env, tool_path

ROUTE = "/v1/chat/completions"


def import_stub(tmp_path: Path, base_url: str) -> None:
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
    assert metis("import", str(endpoint_file)).returncode == 0


def broker_url(endpoint: str = "1") -> str:
    return f"http://127.0.0.1:{os.environ['METIS_ENV_PROXY_PORT']}/endpoint/{endpoint}/v1"


def status(env: dict | None = None) -> dict:
    return json.loads(metis("proxy", "status", "--json", env=env).stdout)


@pytest.fixture
def stub():
    server = OpenAIStubServer(KEY, MODELS, reply=REPLY)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_each_configured_tool_works_through_the_broker(case, stub, file_store, tmp_path, env_setup):
    """On its own where the tool can run metis-env for its key (opencode's plugin, pi, llm's plugin);
    under `run --proxy` where it cannot (aider, llm without the plugin): the same broker either way."""
    tool, extra, command, model, extra_env = CASES[case]
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    import_stub(tmp_path, stub.base_url)
    configured = metis("configure", tool, "1", "--proxy", *extra)
    work = tmp_path / "work"
    work.mkdir()
    env = {**tool_env(tmp_path), **extra_env}
    way = ["metis-env", "run", "--proxy", "1", "--"] if case in NEEDS_RUN else []
    proc = subprocess.run([*way, *command], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    seen = status()
    assert (configured.returncode, b"goes through this host's broker" in configured.stderr) == (0, True), configured.stderr
    assert (proc.returncode, REPLY in proc.stdout.decode(errors="replace")) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    assert {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"} == {(ROUTE, True, model)}
    assert (seen["running"], seen["requests"] >= 1) == (True, True)
    assert KEY not in (Path(os.environ["HOME"]) / CASES_FILES[tool]).read_text()
    assert [str(p) for p in Path(os.environ["HOME"]).rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []


def written(tool: str) -> dict:
    """What configure wrote for endpoint 1 that says where requests go and how the key is had."""
    text = (Path(os.environ["HOME"]) / CASES_FILES[tool]).read_text()
    if tool == "opencode":
        return json.loads(text)["provider"]["metis-1"]["options"]
    if tool == "pi":
        provider = json.loads(text)["providers"]["metis-1"]
        return {"baseUrl": provider["baseUrl"], "apiKey": provider["apiKey"]}
    raise AssertionError(tool)


# case: (configure's arguments, extra environment, exit code, what it wrote, or the error's words)
CHOICES = {
    "opencode on Metis: the broker by default": (
        ["opencode", "1"], {}, 0, lambda: {"baseURL": broker_url()}),
    "opencode on Metis with --no-proxy: straight, the key from the plugin or run": (
        ["opencode", "1", "--no-proxy"], {}, 0, lambda: {"baseURL": STUB_URL, "apiKey": "{env:OPENAI_API_KEY}"}),
    "pi on Metis: the broker by default": (
        ["pi", "1"], {}, 0, lambda: {"baseUrl": broker_url(), "apiKey": f"!metis-env get key 1 --proxy-port {os.environ['METIS_ENV_PROXY_PORT']}"}),
    "pi on Metis with metis_compat off: straight (the broker would not adapt)": (
        ["pi", "1"], {"METIS_ENV_METIS_COMPAT": "false"}, 0, lambda: {"baseUrl": STUB_URL, "apiKey": "!metis-env get key 1"}),
    "pi with proxy_port 0: no address a config can name": (
        ["pi", "1", "--proxy"], {"METIS_ENV_PROXY_PORT": "0"}, 26, "proxy_port is 0 (a random port each time)"),
}
STUB_URL = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("case", CHOICES)
def test_what_configure_chooses(case, file_store, tmp_path, env_setup):
    arguments, extra_env, code, expected = CHOICES[case]
    import_stub(tmp_path, STUB_URL)
    result = metis("configure", *arguments, env=extra_env)
    assert result.returncode == code, result.stderr
    if code == 0:
        assert written(arguments[0]) == expected()
    else:
        assert (expected in result.stderr.decode(), result.stderr.count(b"\n")) == (True, 1), result.stderr


def test_a_tool_configure_cannot_send_through_the_broker_is_refused(file_store, tmp_path, env_setup):
    import_stub(tmp_path, STUB_URL)
    result = metis("configure", "claude", "1", "--proxy")
    assert (result.returncode, result.stderr) == (
        2, b"metis-env: error: claude: --proxy is not supported for claude; configure it without --proxy\n")


def test_get_key_proxy_gives_the_brokers_local_key_and_get_url_its_stable_address(stub, file_store, tmp_path, env_setup):
    import_stub(tmp_path, stub.base_url)
    key = metis("get", "key", "1", "--proxy")  # starts the broker
    again = metis("get", "key", "1", "--proxy", "--json")  # joins it
    url = metis("get", "url", "1", "--proxy")
    state = json.loads((Path(os.environ["XDG_RUNTIME_DIR"]) / "metis-env" / "broker.json").read_text())
    assert (key.returncode, key.stdout.decode(), key.stderr) == (0, state["local_key"] + "\n", b"")
    assert json.loads(again.stdout) == {"key": state["local_key"], "expires_at": None}
    assert (url.stdout.decode(), state["port"]) == (broker_url() + "\n", int(os.environ["METIS_ENV_PROXY_PORT"]))
    assert KEY not in key.stdout.decode() + again.stdout.decode()


@pytest.mark.parametrize("tool", ["pi", "opencode"])  # the two configure sends through the broker by default
def test_when_another_process_holds_the_port_the_key_command_refuses_and_the_tool_sends_nothing(tool, stub, file_store, tmp_path, env_setup):
    """Another user's listener on the stable port (here: a socket of the test's): the broker starts at
    a random port instead, `get key --proxy` says so and prints no key, the tool sends no request there."""
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    import_stub(tmp_path, stub.base_url)
    assert metis("configure", tool, "1").returncode == 0
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", int(os.environ["METIS_ENV_PROXY_PORT"])))
    squatter.listen(8)
    squatter.setblocking(False)
    try:
        key = metis("get", "key", "1", "--proxy")
        pi = subprocess.run(CASES[tool][2], cwd=tmp_path, env=tool_env(tmp_path), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=240)
        try:
            connection, _ = squatter.accept()
            connection.close()
            reached = True
        except BlockingIOError:
            reached = False
    finally:
        squatter.close()
    state = json.loads((Path(os.environ["XDG_RUNTIME_DIR"]) / "metis-env" / "broker.json").read_text())
    message = key.stderr.decode()
    assert (key.returncode, key.stdout, message.startswith("metis-env: error: this host's broker"), message.count("\n")) == (26, b"", True, 1)
    assert f"listens at port {state['port']}, not at {os.environ['METIS_ENV_PROXY_PORT']}" in message
    assert (pi.returncode != 0, REPLY in pi.stdout.decode(errors="replace"), reached, stub.requests) == (True, False, False, [])


def test_a_refresh_after_sync_keeps_the_config_on_the_broker(file_store, tmp_path, env_setup):
    """sync (or login) rewrites a config whose endpoint changed: one written with --proxy stays so."""
    import_stub(tmp_path, STUB_URL)
    assert metis("configure", "pi", "1").returncode == 0
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={STUB_URL}/\nSAMBANOVA_API_KEY={KEY}\nMODELS=Llama-3.3-70B-Instruct\n")
    imported = metis("import", str(endpoint_file))
    models = json.loads((Path(os.environ["HOME"]) / CASES_FILES["pi"]).read_text())["providers"]["metis-1"]["models"]
    assert (imported.returncode, written("pi"), [m["id"] for m in models]) == (
        0, {"baseUrl": broker_url(), "apiKey": f"!metis-env get key 1 --proxy-port {os.environ['METIS_ENV_PROXY_PORT']}"}, ["Llama-3.3-70B-Instruct"]), imported.stderr


def test_the_real_codex_reaches_a_cluster_through_the_broker(globus, globus_env, tmp_path):  # noqa: F811
    """codex's auth command is `metis-env get key sophia --proxy`: the broker's local key goes to the
    broker, which puts the gateway's token in its place; no token in codex's config."""
    from tests._gateway import gateway_env, login_headless
    from tests.test_configure_tools import NPM_BIN

    if tool_path("codex") is None:
        pytest.skip("codex is not installed here (bash .ci/run installs it)")
    env = gateway_env(globus_env)
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0, err
    token = metis("get", "key", "sophia", env=env).stdout.decode().strip()
    stub = OpenAIStubServer(token, ["openai/gpt-oss-120b"], reply=REPLY)
    stub.start()
    try:
        path = Path(env["METIS_ENV_CONFIG_DIR"]) / "endpoints.yaml"
        data = json.loads(path.read_text())
        data["endpoints"]["sophia"]["base_url"] = stub.base_url
        data["endpoints"]["sophia"].setdefault("extra", {})["routes"] = ["/v1/chat/completions", "/v1/responses"]
        path.write_text(json.dumps(data))
        configured = metis("configure", "codex", "sophia", "--model", "openai/gpt-oss-120b", "--proxy", env=env)
        work = tmp_path / "work"
        work.mkdir()
        command = [str(NPM_BIN / "codex"), "-c", "model_provider=metis-sophia", "-m", "openai/gpt-oss-120b", "exec",
                   "--skip-git-repo-check", "hi"]
        proc = subprocess.run(command, cwd=work, env={**tool_env(tmp_path), **globus.env()}, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=240)
        seen = status(env)
    finally:
        stub.stop()
    config = (Path(env["HOME"]) / CASES_FILES["codex"]).read_text()
    assert configured.returncode == 0, configured.stderr
    assert (proc.returncode, REPLY in proc.stdout.decode(errors="replace")) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    assert {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"} == {("/v1/responses", True, "openai/gpt-oss-120b")}
    assert (seen["requests"] >= 1, token in config, f'base_url = "{broker_url("sophia")}"' in config,
            f'args = ["get", "key", "sophia", "--proxy-port", "{os.environ["METIS_ENV_PROXY_PORT"]}"]' in config) == (True, False, True, True)


class RefusingProxy:
    """An HTTP proxy that answers 403 to everything, as ALCF's does to a request for 127.0.0.1, and
    keeps the request lines it was sent."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def refuse(self) -> None:
                seen.append(self.requestline)
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_GET = do_POST = do_CONNECT = do_HEAD = refuse

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ALCF_NO_PROXY = "admin,polaris-adminvm-01,localhost,*.cm.polaris.alcf.anl.gov,polaris-*,*.polaris.alcf.anl.gov,*.alcf.anl.gov"
PROXIED = {"opencode": [], "llm (metis-env's plugin)": []}  # the plugins keep loopback off the proxy


@pytest.mark.parametrize("case", PROXIED)
def test_the_plugins_keep_the_brokers_requests_off_alcfs_http_proxy(case, stub, file_store, tmp_path, env_setup):
    """With ALCF's http_proxy and no_proxy (no 127.0.0.1 in it), opencode and llm still reach the broker."""
    tool, extra, command, model, extra_env = CASES[case]
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    import_stub(tmp_path, stub.base_url)
    proxy = RefusingProxy()
    try:
        configured = metis("configure", tool, "1", "--proxy", env={"http_proxy": proxy.url, "no_proxy": ALCF_NO_PROXY})
        variables = {name: proxy.url for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
        env = {**tool_env(tmp_path), **variables, "no_proxy": ALCF_NO_PROXY, "NO_PROXY": ALCF_NO_PROXY}
        work = tmp_path / "work"
        work.mkdir()
        proc = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    finally:
        proxy.close()
    assert (configured.returncode, b"warning" in configured.stderr) == (0, False), configured.stderr
    assert (proc.returncode, REPLY in proc.stdout.decode(errors="replace")) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    assert [line for line in proxy.seen if "127.0.0.1" in line] == PROXIED[case]


def test_configure_warns_when_pi_would_send_the_brokers_requests_to_an_http_proxy(file_store, tmp_path, env_setup):
    import_stub(tmp_path, STUB_URL)
    alcf = {"http_proxy": "http://proxy.alcf.anl.gov:3128", "no_proxy": ALCF_NO_PROXY}
    warned = metis("configure", "pi", "1", env=alcf)
    fixed = metis("configure", "pi", "1", env={**alcf, "no_proxy": ALCF_NO_PROXY + ",127.0.0.1"})
    assert (warned.returncode, warned.stderr.decode().splitlines()[0]) == (0, (
        "metis-env: warning: an HTTP proxy is set and no_proxy does not name 127.0.0.1, so pi would send its requests for "
        "this host's broker to that proxy; add it where the proxy is set (e.g. ~/.bash_profile): "
        'export no_proxy="$no_proxy,127.0.0.1" NO_PROXY="$NO_PROXY,127.0.0.1"'))
    assert (fixed.returncode, b"warning" in fixed.stderr) == (0, False)


def test_after_proxy_port_changed_an_old_config_gets_no_key_and_sends_nothing_to_its_port(stub, file_store, tmp_path, env_setup, monkeypatch):
    """pi was configured for the broker at port A; proxy_port is now B. A process of someone else's
    listens at A: pi's key command (`--proxy-port A`) refuses, so nothing reaches A."""
    if tool_path("pi") is None:
        pytest.skip("pi is not installed here (bash .ci/run installs it)")
    from tests.conftest import free_port

    import_stub(tmp_path, stub.base_url)
    old = os.environ["METIS_ENV_PROXY_PORT"]
    assert metis("configure", "pi", "1").returncode == 0
    monkeypatch.setenv("METIS_ENV_PROXY_PORT", str(free_port()))
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", int(old)))
    squatter.listen(8)
    squatter.setblocking(False)
    try:
        key = metis("get", "key", "1", "--proxy-port", old)
        pi = subprocess.run(CASES["pi"][2], cwd=tmp_path, env=tool_env(tmp_path), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=240)
        try:
            squatter.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
    finally:
        squatter.close()
    assert (key.returncode, key.stdout, key.stderr.decode()) == (26, b"", (
        f"metis-env: error: the tool's config names the broker at port {old}, but proxy_port is now "
        f"{os.environ['METIS_ENV_PROXY_PORT']}; run metis-env configure again for that tool\n"))
    assert (pi.returncode != 0, reached, stub.requests) == (True, False, [])


def test_doctor_names_the_proxy_option_in_the_fix_for_a_config_through_the_broker(file_store, tmp_path, env_setup):
    import_stub(tmp_path, STUB_URL)
    assert metis("configure", "llm", "1", "--proxy").returncode == 0
    path = Path(os.environ["HOME"]) / CASES_FILES["llm"]
    path.write_text(path.read_text().replace("can_stream: true", "can_stream: false"))
    findings = json.loads(metis("doctor", "--json").stdout)["findings"]
    assert [(f["status"], f["fix"]) for f in findings if f["name"] == "configure llm"] == [
        ("warn", "metis-env configure llm 1 --proxy (the edited file is backed up first)")]
