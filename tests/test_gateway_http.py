"""The gateway's HTTP client: every answer a gateway can give becomes the one error that fits."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metis_env.errors import (
    ConnectionFailedError,
    GatewayError,
    LoginRequiredError,
    NotLiveError,
    ReauthRequiredError,
)
from metis_env.sources.gateway import http
from metis_env.sources.gateway.http import GatewayEndpoint, parse_list_endpoints
from tests._http import Canned, CannedServer, SilentServer, closed_port
from tests._tls import make_self_signed, server_context

TOKEN = "AT-test-token-0123456789"
GW = "https://gw.example/resource_server/"
POLICY = (
    "Error: Permission denied from internal policies. This is likely due to a high-assurance timeout. "
    "Please logout by visiting https://app.globus.org/logout, and re-authenticate."
)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "info": {}}}).encode()


def html(status: int) -> Canned:
    return Canned(status, b"<html><body>Bad Gateway</body></html>", (("Content-Type", "text/html"),))


ANSWERS = [
    # (answer, error class, message)
    (Canned(401, error_body("unauthorized", POLICY)), ReauthRequiredError, http.REAUTH_MESSAGE),
    (
        Canned(401, error_body("unauthorized", "Token is inactive")),
        LoginRequiredError,
        "the gateway refused the Globus token (whoami: HTTP 401: Token is inactive); run `metis-env login`",
    ),
    (
        Canned(503, error_body("cluster_under_maintenance", "Metis is under maintenance")),
        NotLiveError,
        "whoami: Metis is under maintenance (HTTP 503); see `metis-env status`",
    ),
    (
        Canned(503, error_body("service_unavailable", "'gpt-oss-120b' is not currently live on Metis.")),
        NotLiveError,
        "whoami: 'gpt-oss-120b' is not currently live on Metis. (HTTP 503); see `metis-env status`",
    ),
    (html(502), GatewayError, "{url} answered HTTP 502 (not JSON: text/html, 37 bytes)"),
    (Canned(500, b'{"error": "boom"}'), GatewayError, "{url} answered HTTP 500: boom (JSON, 17 bytes)"),
    (html(200), GatewayError, "{url} answered 200 but not with a JSON object (not JSON: text/html, 37 bytes)"),
    (Canned(200, b"[1, 2]"), GatewayError, "{url} answered 200 but not with a JSON object (JSON, 6 bytes)"),
    (
        Canned(302, b"", (("Location", "https://elsewhere.example/"),)),
        GatewayError,
        "{url} redirected to https://elsewhere.example/ (HTTP 302), not followed; check the gateway_url setting",
    ),
    (
        Canned(401, error_body("unauthorized", f"bad token {TOKEN}")),
        LoginRequiredError,
        "the gateway refused the Globus token (whoami: HTTP 401: bad token <token>); run `metis-env login`",
    ),
]


@pytest.mark.parametrize("canned, error, message", ANSWERS, ids=lambda v: getattr(v, "__name__", None) or "")
def test_each_answer_becomes_one_error(canned, error, message):
    with CannedServer(lambda handler: canned) as server:
        url = f"http://127.0.0.1:{server.port}/resource_server/whoami"
        with pytest.raises(error) as caught:
            http.get_json(url, TOKEN, "whoami")
    assert str(caught.value) == message.format(url=url)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_a_good_answer_and_the_request_it_came_from():
    seen = {}

    def route(handler):
        seen.update(auth=handler.headers["Authorization"], path=handler.path, method=handler.command)
        return Canned(200, b'{"id": "u1", "username": "alice"}')

    with CannedServer(route) as server:
        payload = http.get_json(f"http://127.0.0.1:{server.port}/resource_server/whoami", TOKEN, "whoami")
    assert (payload, seen) == (
        {"id": "u1", "username": "alice"},
        {"auth": f"Bearer {TOKEN}", "path": "/resource_server/whoami", "method": "GET"},
    )


def test_post_sends_json():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["type"] = self.headers["Content-Type"]
            body = b'{"choices": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answer = http.request("POST", f"http://127.0.0.1:{server.server_address[1]}/x", TOKEN, {"model": "m"})
    finally:
        server.shutdown()
        server.server_close()
    assert (answer.status, answer.json(), seen) == (200, {"choices": []}, {"body": {"model": "m"}, "type": "application/json"})


def test_nothing_listening_is_a_connection_failure():
    port = closed_port()
    with pytest.raises(ConnectionFailedError) as caught:
        http.request("GET", f"http://127.0.0.1:{port}/", TOKEN)
    assert str(caught.value) == f"connection refused by 127.0.0.1:{port}; is the gateway up and gateway_url right?"


def test_a_silent_server_times_out_within_the_bound():
    with SilentServer() as server:
        start = time.monotonic()
        with pytest.raises(ConnectionFailedError) as caught:
            http.request("GET", f"http://127.0.0.1:{server.port}/", TOKEN, timeout=0.3)
        elapsed = time.monotonic() - start
    assert str(caught.value) == f"127.0.0.1:{server.port} did not answer within 0.3 s; check your network and try again"
    assert elapsed < 2


class Dripping:
    """A loopback server that sends ``at_once``, then ``dripped`` one byte per 0.1 s (100 s for 1000
    bytes). ``sent`` counts the dripped bytes it wrote; ``finished`` is set once it wrote them all,
    which is what a client without a deadline would wait for. What happened, not how long it took."""

    def __init__(self, at_once: bytes, dripped: bytes):
        self.sent, self.finished = 0, threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                try:
                    self.wfile.write(at_once)
                    for byte in dripped:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        outer.sent += 1
                        time.sleep(0.1)
                    outer.finished.set()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up at its deadline, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.where = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Dripping:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_body_that_drips_is_cut_at_the_deadline():
    """The timeout bounds the whole call, not each read: a byte per 0.1 s must not keep us for minutes."""
    with Dripping(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b" " * 1000) as server:
        with pytest.raises(ConnectionFailedError):
            http.request("GET", f"http://{server.where}/", TOKEN, timeout=0.5)
        # it left after a few of the 1000 bytes, long before the server would have finished
        assert (server.finished.is_set(), server.sent < 100) == (False, True), server.sent


def test_tls_is_verified_and_ssl_cert_file_honoured(tmp_path, monkeypatch):
    cert, key = make_self_signed(tmp_path)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(ConnectionFailedError) as caught:
            http.request("GET", url, TOKEN, timeout=5)
        assert str(caught.value).startswith(f"TLS certificate of 127.0.0.1:{server.server_address[1]} not trusted (")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert http.request("GET", url, TOKEN, timeout=5).status == 200
    finally:
        server.shutdown()
        server.server_close()


# --- list-endpoints --------------------------------------------------------------------------------

LISTING = {
    "clusters": {
        "sophia": {
            "base_url": "/resource_server/sophia",
            "frameworks": {"vllm": {"models": ["openai/gpt-oss-120b", "meta-llama/Llama-3.3-70B-Instruct"], "endpoints": []}},
        },
        "metis": {
            "base_url": "/resource_server/metis",
            "frameworks": {"api": {"models": ["gemma-4-31B-it", "gpt-oss-120b"], "endpoints": ["/v1/chat/completions"]}},
        },
        "minerva": {"base_url": "/resource_server/minerva", "frameworks": {"api": {"models": []}}},
    }
}


def test_list_endpoints_gives_one_record_per_serving_cluster():
    assert parse_list_endpoints(LISTING, GW) == [
        GatewayEndpoint("metis", GW + "metis/api/v1", ("gemma-4-31B-it", "gpt-oss-120b"), "api", ("/v1/chat/completions",)),
        GatewayEndpoint("sophia", GW + "sophia/vllm/v1", ("openai/gpt-oss-120b", "meta-llama/Llama-3.3-70B-Instruct"), "vllm", ()),
    ]


def test_list_endpoints_over_http():
    with CannedServer(lambda handler: Canned(200, json.dumps(LISTING).encode())) as server:
        base = f"http://127.0.0.1:{server.port}/resource_server/"
        records = http.list_endpoints(base, TOKEN)
        assert server.paths == ["/resource_server/list-endpoints"]
    assert [(r.id, r.base_url) for r in records] == [("metis", base + "metis/api/v1"), ("sophia", base + "sophia/vllm/v1")]


def cluster(name="metis", base_url="/resource_server/metis", framework="api", models=("m1",)):
    return {"clusters": {name: {"base_url": base_url, "frameworks": {framework: {"models": list(models)}}}}}


BAD_LISTINGS = [
    ({"detail": "x"}, 'list-endpoints answered JSON without a "clusters" object; is gateway_url right?'),
    ({"clusters": []}, 'list-endpoints answered JSON without a "clusters" object; is gateway_url right?'),
    ({"clusters": {"metis": "x"}}, "list-endpoints: the entry of cluster metis is not of the expected shape"),
    ({"clusters": {"metis": {"base_url": "/resource_server/metis", "frameworks": {"api": {"models": "m1"}}}}}, "list-endpoints: the models of metis/api are not a list of names"),
    (cluster(models=[1]), "list-endpoints: the models of metis/api are not a list of names"),
    (cluster(name="$(reboot)"), "list-endpoints: a cluster name is not a plain name ('$(reboot)'); refusing the whole list"),
    (cluster(name="../etc"), "list-endpoints: a cluster name is not a plain name ('../etc'); refusing the whole list"),
    (cluster(name="7"), "list-endpoints: cluster name '7' is a number; numbers are the endpoint files' ids"),
    (cluster(base_url="/resource_server/../x"), "list-endpoints: a base_url of cluster metis is not a plain name ('..'); refusing the whole list"),
    (cluster(framework="a b"), "list-endpoints: a framework of cluster metis is not a plain name ('a b'); refusing the whole list"),
    (cluster(models=["ok", "evil\nexport X=1"]), "list-endpoints: cluster metis lists a model name that is not usable ('evil export X=1')"),
    (cluster(models=["a,b"]), "list-endpoints: cluster metis lists a model name that is not usable ('a,b')"),
    (cluster(models=["\x1b[31mred"]), "list-endpoints: cluster metis lists a model name that is not usable ('[31mred')"),
    (cluster(models=[""]), "list-endpoints: cluster metis lists a model name that is not usable ('')"),
    (cluster(models=["m", "m"]), "list-endpoints: cluster metis lists a model twice"),
    ({"clusters": {"metis": {"frameworks": {"api": {"models": ["m"], "endpoints": "/v1/chat/completions"}}}}},
     "list-endpoints: the endpoints of metis/api are not a list of paths"),
    ({"clusters": {"metis": {"frameworks": {"api": {"models": ["m"], "endpoints": ["/v1/../../admin"]}}}}},
     "list-endpoints: metis/api lists a route that is not a plain path ('/v1/../../admin'); refusing the whole list"),
    ({"clusters": {"metis": {"frameworks": {"api": {"models": ["m"], "endpoints": ["https://evil.example/v1/chat"]}}}}},
     "list-endpoints: metis/api lists a route that is not a plain path ('https://evil.example/v1/chat'); refusing the whole list"),
]


@pytest.mark.parametrize("payload, message", BAD_LISTINGS)
def test_a_listing_of_the_wrong_shape_or_with_hostile_names_is_refused_whole(payload, message):
    with pytest.raises(GatewayError) as caught:
        parse_list_endpoints(payload, GW)
    assert str(caught.value) == message


def test_hostile_model_names_that_are_still_names_are_kept_verbatim():
    """Quotes, $ and spaces inside are a shell's problem, solved by quoting (tests/test_gateway_cli.py)."""
    names = ["it's $(rm -rf ~)", "`id`; \"x\"", "naïve model"]
    assert parse_list_endpoints(cluster(models=names), GW)[0].models == tuple(names)


def test_a_listing_of_88000_clusters_and_1000_models_each_is_cut_to_the_caps(capsys):
    """A hostile gateway cannot make every export slow: what is kept is bounded, and said."""
    clusters = {f"c{i}": {"base_url": f"/resource_server/c{i}", "frameworks": {"api": {"models": ["m"]}}} for i in range(88_000)}
    clusters["c0"]["frameworks"]["api"]["models"] = [f"m{j}" for j in range(1000)]
    records = parse_list_endpoints({"clusters": clusters}, GW)
    assert [r.id for r in records] == sorted(f"c{i}" for i in range(http.MAX_CLUSTERS))
    assert [len(r.models) for r in records if r.id == "c0"] == [http.MAX_MODELS] and (http.MAX_CLUSTERS, http.MAX_MODELS) == (64, 256)
    assert records[0].models == tuple(f"m{j}" for j in range(256))
    assert capsys.readouterr().err == (
        "metis-env: warning: list-endpoints: cluster c0 lists more than 256 models; only the first 256 are kept\n"
        "metis-env: warning: list-endpoints lists 88000 clusters with models; only the first 64 are kept\n"
    )


def test_headers_that_drip_are_cut_at_the_deadline_too():
    """http.client reads the status line and headers with a per-read timeout: one byte per 0.1 s of
    headers must not keep a login or a sync for minutes either."""
    with Dripping(b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000) as server:
        with pytest.raises(ConnectionFailedError) as caught:
            http.request("GET", f"http://{server.where}/", TOKEN, timeout=0.5)
        assert (str(caught.value), server.finished.is_set(), server.sent < 100) == (
            f"{server.where} did not answer within 0.5 s; check your network and try again", False, True), server.sent
