"""`run --proxy` under attack: another local client without the key, a hostile upstream, and the
variables a shell hands down. Each attacker is a real process on loopback; each test waits for
states (an answer, a closed connection), never for time."""

from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

import pytest

from metis_env.testing.openai_server import OpenAIStubServer
from tests._http import Canned, CannedServer
from tests.conftest import REPO, metis
from tests.test_proxy import KEY_1, MODEL_1, REPLY, endpoint_file, run_json, stubs  # noqa: F401  (a fixture)

# An attacker that has the proxy's URL (it is on loopback, any local user can find the port) but not
# its key. It prints what it saw, as JSON.
ATTACKER_HEAD = r"""
import json, os, socket, sys
host, port = os.environ["OPENAI_BASE_URL"].split("//")[1].split("/")[0].rsplit(":", 1)
port = int(port)
def connect():
    s = socket.create_connection((host, port))
    s.settimeout(120)  # only a safety net: every read below ends with an answer or a close
    return s
def answer_of(s):
    data = b""
    while True:
        piece = s.recv(65536)
        if not piece:
            return data
        data += piece
"""

BODY_FIRST = ATTACKER_HEAD + r"""
s = connect()
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
          b"Content-Length: 33554432\r\nContent-Type: application/json\r\n\r\n")  # and never a byte of body
data = answer_of(s)
print(json.dumps([data.split(b"\r\n")[0].decode(), json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"]]))
"""


def test_the_key_is_checked_before_the_body_is_read(stubs):
    one, _, _ = stubs
    assert run_json("--proxy", "1", "--", sys.executable, "-c", BODY_FIRST)[:2] == (
        0, ["HTTP/1.1 401 Unauthorized", "invalid_api_key"]
    )
    assert one.requests == []


IDLE_FLOOD = ATTACKER_HEAD + r"""
import resource, openai
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
idle = [connect() for _ in range(1200)]  # more than the cap: another user's idle connections, never a byte sent
client = openai.OpenAI(max_retries=0, timeout=60)
reply = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "x"}])
cut = 0
for s in idle[:700]:  # the oldest: made room for newer ones, so they were closed by the proxy
    s.settimeout(60)
    try:
        cut += s.recv(1) == b""
    except ConnectionResetError:
        cut += 1
print(json.dumps([reply.choices[0].message.content, cut]))
"""


def test_a_thousand_idle_connections_do_not_keep_the_jobs_request_out(stubs):
    assert run_json("--proxy", "1", "--", sys.executable, "-c", IDLE_FLOOD)[:2] == (0, [REPLY, 700])


PATHS = ATTACKER_HEAD + r"""
import http.client
out = []
for path in sys.argv[1:]:
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("POST", path, body=b'{"model": "%s"}' % os.environ["MODEL_NAME"].encode(),
              headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"})
    r = c.getresponse()
    out.append([path, r.status, json.loads(r.read())["error"]["code"]])
print(json.dumps(out))
"""

ESCAPES = [
    "/v1/../../../x", "/v1/chat/../../x", "/v1/%2e%2e/x", "/v1/%2E%2e/%2e%2e/x", "/v1/..%2fx", "/v1/..%2Fx",
    "/v1/%252e%252e/x", "/v1/chat/..;/x", "/v1/./chat/completions", "/v1/..\\x", "/v1/%2e%2e%5cx",
    "/endpoint/1/v1/../x", "/endpoint/../v1/chat/completions", "/v2/chat/completions",
]


def test_paths_that_leave_the_base_url_are_refused_and_nothing_goes_upstream(stubs):
    one, two, _ = stubs
    code, seen, _ = run_json("--proxy", "1", "--", sys.executable, "-c", PATHS, *ESCAPES)
    assert (code, seen) == (0, [[path, 404, "not_found"] for path in ESCAPES])
    assert (one.requests, two.requests) == ([], [])


class Echoing:
    """A hostile upstream that echoes the key it was sent: in an error body (as OpenAI's 'Incorrect API
    key provided: sk-...'), in a header, and in a streamed answer cut in the middle of the key."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Authorization"].split(" ", 1)[1].encode()
                if self.path.endswith("/stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in (b"data: " + key[:7], key[7:] + b"\n\n", b"data: [DONE]\n\n"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {key.decode()}", "code": "invalid_api_key"}}).encode()
                self.send_response(400)
                self.send_header("X-Echo", "key=" + key.decode())
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


ECHO_CHILD = r"""
import json, os, urllib.request, urllib.error
base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
def post(path):
    req = urllib.request.Request(base + path, data=b'{"model": "m"}', headers={"Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(req) as r:
            return [r.status, r.headers.get("X-Echo"), r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers.get("X-Echo"), json.loads(e.read())["error"]["message"]]
print(json.dumps([post("chat/completions"), post("stream")]))
"""


def test_the_real_key_is_scrubbed_from_what_an_upstream_echoes(file_store, tmp_path):
    upstream = Echoing()
    folder = tmp_path / "files"
    folder.mkdir()
    assert metis("import", str(endpoint_file(folder, 1, upstream.base_url, KEY_1, ["m"]))).returncode == 0
    code, seen, stderr = run_json("--proxy", "--", sys.executable, "-c", ECHO_CHILD)
    upstream.server.shutdown()
    assert (code, seen, stderr) == (0, [
        [400, "key=<key>", "Incorrect API key provided: <key>"],
        [200, None, "data: <key>\n\ndata: [DONE]\n\n"],
    ], "")


ENV_DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


@pytest.mark.skipif(shutil.which("direnv") is None, reason="direnv is not installed")
def test_direnvs_record_of_the_real_key_does_not_reach_the_command(stubs, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / ".envrc").write_text(f'eval "$({sys.executable} -m metis_env export 1)"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    assert subprocess.run(["direnv", "allow", str(project)], env=env, capture_output=True).returncode == 0
    script = (f'cd {project} && eval "$(direnv export bash 2>/dev/null)" && '
              f'{sys.executable} -c "import os; print(os.environ[\'DIRENV_DIFF\'])" && '
              f'{sys.executable} -m metis_env run --proxy 1 -- {sys.executable} -c "{ENV_DUMP}"')
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, timeout=120)
    diff, child = result.stdout.decode().splitlines()
    parent_had = zlib.decompress(base64.urlsafe_b64decode(diff + "=" * (-len(diff) % 4)))
    child_env = json.loads(child)
    assert (result.returncode, KEY_1.encode() in parent_had) == (0, True)  # direnv did record the key
    assert ("DIRENV_DIFF" in child_env, [k for k, v in child_env.items() if KEY_1 in v]) == (False, [])


@pytest.mark.parametrize("encode", [
    lambda k: k,
    lambda k: "prefix-" + k,
    lambda k: "https://x/?key=" + k.replace("-", "%2D"),
    lambda k: base64.b64encode(("{\"k\": \"" + k + "\"}").encode()).decode(),
    lambda k: base64.b64encode(("xx" + k).encode()).decode(),
    lambda k: base64.urlsafe_b64encode(zlib.compress(("{\"OPENAI_API_KEY\": \"" + k + "\"}").encode())).decode().rstrip("="),
])
def test_an_inherited_variable_carrying_the_key_in_any_encoding_is_dropped(encode):
    from metis_env.proxy import carries_key

    assert (carries_key(encode(KEY_1), [KEY_1]), carries_key(encode("sk-some-other-key-0000000"), [KEY_1])) == (True, False)


def test_the_command_gets_the_users_core_dump_limit_back(stubs):
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    soft = 12345 * 1024 if hard == resource.RLIM_INFINITY else min(hard, 12345 * 1024)
    child = "import json, resource; print(json.dumps(resource.getrlimit(resource.RLIMIT_CORE)))"
    result = subprocess.run(
        [sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", child],
        capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (soft, hard)),
    )
    assert (result.returncode, json.loads(result.stdout), result.stderr) == (0, [soft, hard], b"")


# --- behind ALCF's HTTP proxy settings (issue 17, item 1) --------------------------------------------------

ALCF_NO_PROXY = "admin,polaris-adminvm-01,localhost,*.cm.polaris.alcf.anl.gov,polaris-*,*.polaris.alcf.anl.gov,*.alcf.anl.gov"
OPENAI_THROUGH_PROXY_VARS = r"""
import json, os, openai
reply = openai.OpenAI(max_retries=0).chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "x"}])
print(json.dumps([reply.choices[0].message.content, os.environ["NO_PROXY"], os.environ["no_proxy"]]))
"""


def test_the_command_reaches_the_loopback_proxy_past_alcfs_http_proxy_settings(stubs):
    refusing = CannedServer(lambda h: Canned(403, b'{"error": "proxy says no"}'))  # the "ALCF proxy"
    with refusing:
        proxy = f"http://127.0.0.1:{refusing.port}"
        env = {name: proxy for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
        env["no_proxy"] = ALCF_NO_PROXY
        code, seen, stderr = run_json("--proxy", "1", "--", sys.executable, "-c", OPENAI_THROUGH_PROXY_VARS, env=env)
    added = ALCF_NO_PROXY + ",127.0.0.1,::1"
    assert (code, seen, stderr, refusing.paths) == (0, [REPLY, added, added], "", [])


# --- deadlines, with an in-process proxy whose limits are short -----------------------------------------

SLOW_CLIENTS = ATTACKER_HEAD + r"""
import threading
key = sys.argv[1]
def slow_headers(s):
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
def slow_body(s):
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)  # 10 of 100 bytes
def idle_after_one(s):
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() + b"\r\n\r\n")
results = {}
def attack(name, how):
    s = connect()
    how(s)
    results[name] = answer_of(s).split(b"\r\n")[0].decode()  # the end: the proxy closed it
threads = [threading.Thread(target=attack, args=(n, f)) for n, f in
           (("headers", slow_headers), ("body", slow_body), ("idle", idle_after_one))]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results, sort_keys=True))
"""


def test_slow_headers_a_slow_body_and_an_idle_connection_are_cut(stubs):
    from metis_env.broker.engine import ProxyServer, Router
    from metis_env.broker.guard import Limits
    from metis_env.broker.upstream import KeyCache
    from metis_env.settings import load_settings
    from metis_env.store import open_store

    settings = load_settings()
    store = open_store(settings)
    limits = Limits(header_timeout=2.0, idle_timeout=2.0, body_timeout=2.0)
    server = ProxyServer(Router(store, "1"), KeyCache(store, settings), "metis-env-local-test", settings, limits)
    server.start()
    try:
        result = subprocess.run([sys.executable, "-c", SLOW_CLIENTS, "metis-env-local-test"], capture_output=True, timeout=120,
                                env={**os.environ, "OPENAI_BASE_URL": server.base_url})
    finally:
        server.stop()
    assert (json.loads(result.stdout), server.guard.cut_count, len(server.guard)) == (
        {"body": "", "headers": "", "idle": "HTTP/1.1 200 OK"}, 3, 0
    )
