"""`metis-env run --proxy` with endpoint-file endpoints: the real CLI, the real openai client as the
child, the loopback OpenAI stub (and hand-made servers for streaming, redirects and TLS) upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metis_env.testing.openai_server import OpenAIStubServer, StubRequest
from tests._http import Canned, CannedServer
from tests._tls import make_self_signed, server_context
from tests.conftest import REPO, metis

KEY_1 = "sk-proxy-real-one-5d1f0a9c3b7e"
KEY_2 = "sk-proxy-real-two-8e2c4b6a0d1f"
MODEL_1 = "DeepSeek-R1"
MODELS_2 = ("Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct")
REPLY = "Hello from the metis-env stub endpoint."

# The child: the real openai client, as a user's script would use it, reporting what it saw as JSON.
OPENAI_CHILD = r"""
import json, os, sys, openai
client = openai.OpenAI()
model = sys.argv[1] if len(sys.argv) > 1 else os.environ["MODEL_NAME"]
msgs = [{"role": "user", "content": "ping"}]
plain = client.chat.completions.create(model=model, messages=msgs).choices[0].message.content
streamed = [c.choices[0].delta.content for c in client.chat.completions.create(model=model, messages=msgs, stream=True) if c.choices]
print(json.dumps({"plain": plain, "streamed": "".join(p or "" for p in streamed), "pieces": len(streamed),
                  "models": [m.id for m in client.models.list()]}))
"""

ENV_CHILD = r"""
import json, os
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("OPENAI_", "MODEL_NAME", "SAMBA", "METIS_ENV_ENDPOINT", "METIS_ENV_TOKEN", "MY_"))}))
"""


def endpoint_file(folder: Path, number: int, base_url: str, key: str, models) -> Path:
    path = folder / f"metis_endpoint_{number}.txt"
    path.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={key}\nMODELS={','.join(models)}\n")
    return path


@pytest.fixture
def stubs(file_store, tmp_path):
    """Two stored endpoints, each a stub with its own key and models."""
    one, two = OpenAIStubServer(KEY_1, [MODEL_1]), OpenAIStubServer(KEY_2, list(MODELS_2))
    urls = one.start(), two.start()
    folder = tmp_path / "files"
    folder.mkdir()
    files = [endpoint_file(folder, 1, urls[0], KEY_1, [MODEL_1]), endpoint_file(folder, 2, urls[1], KEY_2, MODELS_2)]
    assert metis("import", *map(str, files)).returncode == 0
    yield one, two, folder
    one.stop()
    two.stop()


def run_json(*args: str, env: dict | None = None) -> tuple[int, dict | None, str]:
    result = metis("run", *args, env=env)
    out = result.stdout.decode()
    return result.returncode, (json.loads(out) if out.strip() else None), result.stderr.decode()


def test_the_openai_client_works_through_the_proxy_plain_and_streamed(stubs):
    one, two, _ = stubs
    code, seen, stderr = run_json("--proxy", "1", "--", sys.executable, "-c", OPENAI_CHILD)
    assert (code, seen, stderr) == (
        0,
        {"plain": REPLY, "streamed": REPLY, "pieces": 8, "models": [MODEL_1, *MODELS_2]},
        "",
    )
    body = {"model": MODEL_1, "messages": [{"role": "user", "content": "ping"}]}
    assert one.requests == [
        StubRequest("POST", "/v1/chat/completions", True, body),
        StubRequest("POST", "/v1/chat/completions", True, {**body, "stream": True}),
    ]
    assert two.requests == []  # /v1/models came from the stored models, not from an endpoint


def test_the_child_gets_the_proxy_and_a_local_key_never_the_real_one(stubs, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY_2)  # an old export of a real key in the parent shell
    monkeypatch.setenv("SAMBANOVA_API_KEY", KEY_2)
    monkeypatch.setenv("SOMETHING_ELSE", f"prefix-{KEY_1}")
    monkeypatch.setenv("METIS_ENV_ALIASES", "MY_KEY=OPENAI_API_KEY")  # an alias gets the local key too
    code, env, stderr = run_json("--proxy", "1", "--", sys.executable, "-c", ENV_CHILD + "\nimport os; print(open('/proc/self/cmdline').read(), file=__import__('sys').stderr)")
    local = env["OPENAI_API_KEY"]
    url = env["OPENAI_BASE_URL"]
    assert (code, env) == (0, {
        "METIS_ENV_ENDPOINT": "1", "MODEL_NAME": MODEL_1, "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "OPENAI_API_BASE": url, "OPENAI_API_KEY": local, "OPENAI_BASE_URL": url,
        "SAMBANOVA_API_BASE": url, "SAMBANOVA_API_KEY": local, "SAMBA_NOVA_BASE_URL": url, "MY_KEY": local,
    })
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/")
    assert local.startswith("metis-env-local-") and len(local) > 50
    assert KEY_1 not in stderr and KEY_2 not in stderr  # the child's argv (printed there) holds neither


def test_runs_share_the_brokers_local_key_and_a_new_broker_makes_a_new_one(stubs):
    key = lambda: run_json("--proxy", "1", "--", sys.executable, "-c", ENV_CHILD)[1]["OPENAI_API_KEY"]
    first, joined = key(), key()
    assert metis("proxy", "stop").returncode == 0
    assert (first == joined, key() == first) == (True, False)


WRONG_KEY_CHILD = r"""
import json, os, urllib.request, urllib.error
url = os.environ["OPENAI_BASE_URL"] + "chat/completions"
body = json.dumps({"model": os.environ["MODEL_NAME"], "messages": []}).encode()
out = []
for auth in (None, "Bearer wrong", "Bearer " + os.environ["OPENAI_API_KEY"][:-1], os.environ["OPENAI_API_KEY"]):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **({"Authorization": auth} if auth else {})})
    try:
        urllib.request.urlopen(req)
        out.append("accepted")
    except urllib.error.HTTPError as e:
        out.append([e.code, json.loads(e.read())["error"]["code"]])
print(json.dumps(out))
"""


def test_the_proxy_refuses_a_missing_or_wrong_local_key_and_sends_nothing_upstream(stubs):
    one, _, _ = stubs
    code, seen, stderr = run_json("--proxy", "1", "--", sys.executable, "-c", WRONG_KEY_CHILD)
    refused = [401, "invalid_api_key"]
    assert (code, seen, stderr) == (0, [refused, refused, refused, refused], "")  # the key without "Bearer " too
    assert one.requests == []


def test_requests_are_routed_by_their_model_across_stored_endpoints(stubs):
    one, two, _ = stubs
    code, seen, _ = run_json("--proxy", "1", "--", sys.executable, "-c", OPENAI_CHILD, MODELS_2[1])
    assert (code, seen["plain"], seen["streamed"]) == (0, REPLY, REPLY)
    assert (len(one.requests), [(r.path, r.authorized, r.body["model"]) for r in two.requests]) == (
        0,
        [("/v1/chat/completions", True, MODELS_2[1])] * 2,
    )


def test_a_model_no_endpoint_serves_goes_to_the_selected_endpoint(stubs):
    one, two, _ = stubs
    child = OPENAI_CHILD.replace("plain = ", "try:\n    client.chat.completions.create(model=model, messages=msgs)\nexcept openai.NotFoundError as e:\n    print(json.dumps({'status': e.status_code})); raise SystemExit(0)\nplain = ")
    assert run_json("--proxy", "2", "--", sys.executable, "-c", child, "no-such-model")[:2] == (0, {"status": 404})
    assert ([r.body["model"] for r in two.requests], one.requests) == (["no-such-model"], [])


ROTATE_CHILD = r"""
import os, sys, time, openai
client = openai.OpenAI(max_retries=0)
ask = lambda: client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "x"}]).choices[0].message.content
print(ask(), flush=True)
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
print(ask(), flush=True)
"""


def test_an_upstream_401_after_a_key_rotation_gets_the_new_key_and_one_retry(stubs, tmp_path):
    one, _, folder = stubs
    asked, go = tmp_path / "asked", tmp_path / "go"
    child = subprocess.Popen(
        [sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", ROTATE_CHILD, str(asked), str(go)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wait_for(asked.exists)
    rotated = "sk-proxy-rotated-0f9e8d7c6b5a"
    one.rotate_key(rotated)  # ALCF rotates the key, and a sync stores the new one while the job runs
    assert metis("import", str(endpoint_file(folder, 1, one.base_url, rotated, [MODEL_1]))).returncode == 0
    go.touch()
    out, err = child.communicate(timeout=60)
    assert (child.returncode, out.decode(), err.decode()) == (0, f"{REPLY}\n{REPLY}\n", "")
    assert [r.authorized for r in one.requests] == [True, False, True]


def test_an_upstream_401_with_no_new_key_reaches_the_child_once(stubs):
    one, _, _ = stubs
    one.rotate_key("sk-someone-else-entirely-000")
    child = "import openai, os\ntry:\n    openai.OpenAI(max_retries=0).chat.completions.create(model=os.environ['MODEL_NAME'], messages=[])\nexcept openai.AuthenticationError as e:\n    print(e.status_code, e.body['code'])"
    assert metis("run", "--proxy", "1", "--", sys.executable, "-c", child).stdout == b"401 invalid_api_key\n"
    assert [r.authorized for r in one.requests] == [False]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- streaming, redirects, TLS ------------------------------------------------------------------------


class HeldStream:
    """An upstream that sends one SSE event, then holds the rest until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.authorizations.append(self.headers["Authorization"])
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in (b"data: first\n\n", None, b"data: second\n\n", b"data: [DONE]\n\n"):
                    if event is None:
                        outer.release.wait(30)
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


STREAM_CHILD = r"""
import os, sys, urllib.request
req = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "chat/completions", data=b'{"model": "m", "stream": true}',
                             headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"})
with urllib.request.urlopen(req) as answer:
    lines = [answer.readline()]
    open(sys.argv[1], "w").close()  # the first event arrived while the upstream still holds the second
    lines += list(answer)
print(answer.headers["Content-Type"], [l.decode() for l in lines if l.strip()])
"""


def test_server_sent_events_are_passed_on_as_they_come(file_store, tmp_path):
    upstream = HeldStream()
    folder = tmp_path / "files"
    folder.mkdir()
    assert metis("import", str(endpoint_file(folder, 1, upstream.base_url, KEY_1, ["m"]))).returncode == 0
    first = tmp_path / "first"
    child = subprocess.Popen(
        [sys.executable, "-m", "metis_env", "run", "--proxy", "--", sys.executable, "-c", STREAM_CHILD, str(first)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for(first.exists)  # a buffering proxy would hold "first" until the upstream finished
    finally:
        upstream.release.set()
    out, err = child.communicate(timeout=60)
    upstream.server.shutdown()
    assert (child.returncode, out.decode(), err.decode()) == (
        0, "text/event-stream ['data: first\\n', 'data: second\\n', 'data: [DONE]\\n']\n", ""
    )
    assert upstream.authorizations == [f"Bearer {KEY_1}"]


def test_a_redirect_is_handed_to_the_child_and_the_key_goes_nowhere_else(file_store, tmp_path):
    elsewhere = CannedServer(lambda h: Canned(200, b"{}"))
    with elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/v1/chat/completions"
        redirecting = CannedServer(lambda h: Canned(307, b"", (("Location", target),)))
        with redirecting:
            folder = tmp_path / "files"
            folder.mkdir()
            base = f"http://127.0.0.1:{redirecting.port}/v1"
            assert metis("import", str(endpoint_file(folder, 1, base, KEY_1, ["m"]))).returncode == 0
            child = ("import os, urllib.request as u, urllib.error as e\n"
                     "class N(u.HTTPRedirectHandler):\n    redirect_request = lambda *a: None\n"
                     "r = u.Request(os.environ['OPENAI_BASE_URL'] + 'chat/completions', data=b'{}', headers={'Authorization': 'Bearer ' + os.environ['OPENAI_API_KEY']})\n"
                     "try:\n    u.build_opener(N).open(r)\nexcept e.HTTPError as x:\n    print(x.code, x.headers['Location'])")
            result = metis("run", "--proxy", "--", sys.executable, "-c", child)
    assert (result.returncode, result.stdout.decode(), result.stderr.decode()) == (0, f"307 {target}\n", "")
    assert (redirecting.paths, elsewhere.paths) == (["/v1/chat/completions"], [])


def test_tls_upstream_is_verified_against_ssl_cert_file(file_store, tmp_path):
    cert, key = make_self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca = make_self_signed(tmp_path / "other")[0]
    stub = OpenAIStubServer(KEY_1, ["m"], ssl_context=server_context(cert, key))
    folder = tmp_path / "files"
    folder.mkdir()
    try:
        assert metis("import", str(endpoint_file(folder, 1, stub.start(), KEY_1, ["m"]))).returncode == 0
        child = ("import openai, os\ntry:\n    print(openai.OpenAI(max_retries=0).chat.completions.create(model='m', messages=[]).choices[0].message.content)\n"
                 "except openai.APIStatusError as e:\n    print(e.status_code, e.body['code'])")
        # The broker takes SSL_CERT_FILE from the process that starts it: a new one for each CA.
        trusted = metis("run", "--proxy", "--", sys.executable, "-c", child, env={"SSL_CERT_FILE": str(cert)})
        assert metis("proxy", "stop").returncode == 0
        untrusted = metis("run", "--proxy", "--", sys.executable, "-c", child, env={"SSL_CERT_FILE": str(other_ca)})
        assert metis("proxy", "stop").returncode == 0
        port = int(stub.base_url.rsplit(":", 1)[1].split("/")[0])
    finally:
        stub.stop()
    assert (trusted.returncode, trusted.stdout.decode()) == (0, f"{REPLY}\n")
    assert (untrusted.returncode, untrusted.stdout.decode()) == (0, "502 upstream_unreachable\n")
    assert untrusted.stderr.decode().startswith(f"metis-env: warning: proxy: cannot reach 127.0.0.1:{port} (SSLCertVerificationError")
    assert [r.authorized for r in stub.requests] == [True]


# --- the parent: exit status, signals, loopback, argv -----------------------------------------------------


@pytest.mark.parametrize(
    "script, code",
    [
        ("raise SystemExit(0)", 0),
        ("raise SystemExit(7)", 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL),
    ],
)
def test_the_childs_exit_status_is_metis_envs(stubs, script, code):
    result = metis("run", "--proxy", "1", "--", sys.executable, "-c", script)
    assert (result.returncode, result.stdout, result.stderr) == (code, b"", b"")


def test_a_command_that_cannot_run_is_exit_127(stubs):
    result = metis("run", "--proxy", "1", "--", "metis-env-no-such-command")
    assert (result.returncode, result.stdout, result.stderr) == (
        127, b"", b"metis-env: error: cannot run 'metis-env-no-such-command': No such file or directory\n"
    )


TRAP_CHILD = r"""
import os, signal, sys, time
got = []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda n, f: got.append(n))
open(sys.argv[1], "w").close()
seen = 0
while len(got) < 3:
    if len(got) > seen:
        seen = len(got)
        open(sys.argv[1] + str(seen), "w").close()  # one at a time: the test sends the next on this
    time.sleep(0.01)
print(" ".join(signal.Signals(n).name for n in got), flush=True)
raise SystemExit(5)
"""


def test_sigint_sigterm_and_sighup_sent_to_metis_env_reach_the_child(stubs, tmp_path):
    ready = tmp_path / "ready"
    parent = subprocess.Popen(
        [sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", TRAP_CHILD, str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wait_for(ready.exists)
    for number, signo in enumerate((signal.SIGINT, signal.SIGTERM), 1):
        parent.send_signal(signo)
        wait_for(Path(f"{ready}{number}").exists)  # the child has it: the next cannot overtake it
    parent.send_signal(signal.SIGHUP)
    out, err = parent.communicate(timeout=30)
    assert (parent.returncode, out.decode(), err.decode()) == (5, "SIGINT SIGTERM SIGHUP\n", "")


def test_a_signal_that_kills_the_child_gives_128_plus_n(stubs, tmp_path):
    ready = tmp_path / "ready"
    child = f"import time; open({str(ready)!r}, 'w').close(); time.sleep(60)"
    parent = subprocess.Popen(
        [sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wait_for(ready.exists)
    parent.send_signal(signal.SIGTERM)
    out, err = parent.communicate(timeout=30)
    assert (parent.returncode, out, err) == (128 + signal.SIGTERM, b"", b"")


LISTENERS_CHILD = r"""
import os, sys, json
port = int(os.environ["OPENAI_BASE_URL"].rsplit(":", 1)[1].split("/")[0])
found = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        address, hexport = fields[1].split(":")
        if int(hexport, 16) == port and fields[3] == "0A":  # LISTEN
            found.append((table, address))
# the real key never in any process's command line
leaks = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if sys.argv[1].encode() in cmdline:
        leaks.append(pid)
print(json.dumps({"listeners": found, "argv_leaks": leaks}))
"""


def test_the_proxy_listens_on_loopback_only_and_no_argv_holds_the_key(stubs):
    # The key is looked for in every argv with a needle the child gets in two pieces (so that the
    # child's own argv does not hold it whole).
    child = LISTENERS_CHILD.replace("sys.argv[1].encode()", "(sys.argv[1] + sys.argv[2]).encode()")
    code, seen, _ = run_json("--proxy", "1", "--", sys.executable, "-c", child, KEY_1[:10], KEY_1[10:])
    assert (code, seen) == (0, {"listeners": [["/proc/net/tcp", "0100007F"]], "argv_leaks": []})


def test_the_broker_stops_on_proxy_stop(stubs):
    child = "import os; print(os.environ['OPENAI_BASE_URL'])"
    result = metis("run", "--proxy", "1", "--", sys.executable, "-c", child)
    url = result.stdout.decode().strip()
    stopped = metis("proxy", "stop")
    assert (stopped.returncode, stopped.stderr.decode().startswith("metis-env: broker (pid ")) == (0, True)
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(url + "models", timeout=5)
    assert isinstance(refused.value.reason, ConnectionRefusedError)


# --- when the proxy asks for a key again ------------------------------------------------------------


@pytest.mark.parametrize(
    "expires_in, margin, min_ttl, recheck_in",
    [
        (None, 3600, None, None),  # an endpoint file's key: kept until the endpoint refuses it
        (172800, 3600, None, 172800 - 3600),  # a fresh 48 h token: asked again when export would refresh it
        (10, 4, None, 6),
        (1800, 3600, None, 30),  # inside the margin (a refresh failed): asked again every 30 s at most
        (4, 3600, None, 2),  # tokens that live less than the margin: asked again at half their life
        (1, 3600, None, 1),
        # min_ttl (proxy start --min-ttl): export's refresh_margin, the larger of the two ...
        (172800, 3600, 30 * 3600, 172800 - 30 * 3600),
        (172800, 3600, 1800, 172800 - 3600),
        # ... and never more than the grant's lifetime (48 h) less a minute
        (172800, 3600, 50 * 3600, 60),
    ],
)
def test_the_key_cache_asks_again_when_export_would_refresh(monkeypatch, expires_in, margin, min_ttl, recheck_in):
    from collections import namedtuple

    from metis_env.broker import upstream as proxy
    from metis_env.credentials import TokenState
    from metis_env.settings import load_settings
    from metis_env.store import StoredEndpoint

    Selection = namedtuple("Selection", "endpoint model warnings expires_at")  # selection.Selection's fields
    now = 1_800_000_000.0
    monkeypatch.setattr(proxy.time, "time", lambda: now)
    expires_at = None if expires_in is None else time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + expires_in))
    stored = StoredEndpoint("metis", "https://gw/resource_server/metis/api/v1/", ("m",), "", "gateway", "", "", "", "", "")
    state = TokenState("file", "", "a", "r", "", now + (expires_in or 0), now, "", "", "", "", "", 172800.0)
    calls = []
    monkeypatch.setattr(proxy.credentials, "select_with_key", lambda *a: calls.append(a[1]) or (Selection(stored, "m", (), expires_at), "tok-2"))
    monkeypatch.setattr(proxy.credentials, "read_state", lambda store: state)
    cache = proxy.KeyCache(None, load_settings()._replace(token_refresh_margin=float(margin), min_ttl=min_ttl))
    cache.prime(Selection(stored, "m", (), expires_at), "tok-1")
    assert cache._cache["metis"] == ("tok-1", None if recheck_in is None else now + recheck_in)
    assert (cache.get("metis"), calls) == ("tok-1", [])
    assert (cache.get("metis", refused="tok-1"), calls) == ("tok-2", ["metis"])  # a 401: always asked again
    assert (cache.get("metis", refused="tok-1"), calls) == ("tok-2", ["metis"])  # another request already did


def test_a_joiners_min_ttl_raises_the_brokers_and_sends_every_key_to_be_looked_up_again(monkeypatch):
    from collections import namedtuple

    from metis_env.broker import upstream as proxy
    from metis_env.settings import load_settings
    from metis_env.store import StoredEndpoint

    Selection = namedtuple("Selection", "endpoint model warnings expires_at")
    stored = StoredEndpoint("metis", "https://gw/resource_server/metis/api/v1/", ("m",), "", "gateway", "", "", "", "", "")
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 172800))
    monkeypatch.setattr(proxy.credentials, "read_state", lambda store: None)
    monkeypatch.setattr(proxy.credentials, "select_with_key", lambda *a: (Selection(stored, "m", (), expires_at), "tok-2"))
    cache = proxy.KeyCache(None, load_settings()._replace(min_ttl=None))
    cache.prime(Selection(stored, "m", (), expires_at), "tok-1")
    cache.want_min_ttl(3600.0)
    cache.want_min_ttl(60.0)  # less than asked before: kept at the larger
    assert (cache._settings.min_ttl, cache.get("metis")) == (3600.0, "tok-2")


CTRL_C_CHILD = r"""
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda n, f: got.append(n))
print("ready", flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.5)  # a second, forwarded SIGINT would arrive meanwhile
print("SIGINT x", len(got), flush=True)
"""


def test_a_ctrl_c_at_the_terminal_reaches_the_child_and_metis_env_waits_for_its_status(stubs):
    """metis-env takes the terminal's SIGINT itself and does not die of it: the child handles its own
    and exits, and that status is metis-env's. (That it is not forwarded a second time cannot be seen
    reliably: two SIGINTs close together merge into one.)"""
    import pty
    import select as select_module

    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, as a person's
        # A terminal's ^C discards output not yet read (unless NOFLSH): under load that was "ready"'s
        # line end, so the test could not tell what the child printed.
        attributes = termios.tcgetattr(0)
        attributes[3] |= termios.NOFLSH
        termios.tcsetattr(0, termios.TCSANOW, attributes)
        os.execvpe(sys.executable, [sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", CTRL_C_CHILD],
                   {**os.environ, "PYTHONPATH": str(REPO)})
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            if select_module.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # EIO: every process holding the terminal has exited
                    return
                if not chunk:
                    return
                seen += chunk

    read_until(b"ready\r\n")  # the whole line: the child is in its loop, waiting for the signal
    os.write(fd, b"\x03")  # Ctrl-C: the terminal signals the whole foreground process group
    read_until(b"\0")  # everything, until the terminal closes (EIO)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    lines = seen.replace(b"\r", b"").replace(b"^C", b"").split(b"\n")
    assert (os.waitstatus_to_exitcode(status), lines[-3:]) == (0, [b"ready", b"SIGINT x 1", b""]), seen
