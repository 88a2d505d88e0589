"""The loopback server behind ``run --proxy`` and ``metis-env proxy``: it holds the real keys and
gives clients a local one.

- Every request must carry the local key (``Authorization: Bearer``, compared in constant time),
  checked as soon as the headers are in and before any body is read; connections are capped and each
  phase has a deadline (``guard.Limits``).
- ``/v1/...`` goes to the default endpoint's base URL, ``/endpoint/ID/v1/...`` to endpoint ID's; a
  request's ``"model"`` picks another stored endpoint when only that one serves it (``routing.Router``).
  Paths are confined below the base URL; ``GET /v1/models`` is answered from the stored models.
- The real key is put in place of the local one (``upstream.KeyCache``), and taken out of every
  header and body relayed back; answers stream chunk by chunk as they arrive (SSE included).
- A 429, and a 503 with ``Retry-After``, are held and retried (``pacing.Pacer``) until a deadline;
  a 503 for a model that is not live or in maintenance is passed on at once.
- A chat-completions request to a Metis endpoint is adapted to what Metis takes (``metis_compat``),
  unless the ``metis_compat`` setting is false; each change is counted in ``proxy status``.
- ``GET /metis-env/status`` and ``POST /metis-env/stop`` (local key required) serve ``proxy status``
  and ``proxy stop``.

Standard library only.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from ..credentials import uses_login
from ..http import redact
from ..text import warn
from ..errors import MetisEnvError
from ..sources.gateway.http import IDP_WORDS, POLICY_WORDS, REAUTH_MESSAGE, idp_refusal
from . import metis_compat, pacing, upstream
from .guard import ConnectionGuard, Limits, Redactor, confine_path
from .routing import Router, Stats  # noqa: F401  (Router: what daemon.py and the tests build a server with)
from ..locks import pid_alive

CHUNK = 64 * 1024
BUFFERED_ANSWER = 8 * 1024 * 1024  # answers with a Content-Length up to this are redacted whole
DRAIN_ON_REFUSAL = 64 * 1024  # a refused request's small body is read and dropped, so the close is clean
RATE_LIMIT_DEADLINE = 600.0  # seconds a request may be held for upstream 429s before the client sees one
NOT_LIVE_WORDS = (b"not currently live", b"maintenance")
# Headers that describe one connection, not the message (RFC 9110 7.6.1), and the ones we set ourselves;
# Accept-Encoding too: a compressed answer could not be searched for the key.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "authorization", "api-key",
    "accept-encoding",
}


class ProxyServer:
    """The loopback listener; ``base_url`` is known as soon as it is made, ``start()`` serves in a
    thread, ``serve()`` in this one (until ``stop()``)."""

    def __init__(self, router: Router, keys: upstream.KeyCache, local_key: str, settings=None,
                 limits: Limits = Limits(), host: str = "127.0.0.1", port: int = 0,
                 rate_limit_deadline: float = RATE_LIMIT_DEADLINE, listener: socket.socket | None = None) -> None:
        self.router, self.keys, self.local_key = router, keys, local_key
        self.stats = Stats()
        self.guard = ConnectionGuard(limits)
        _allow_descriptors(limits.max_connections + 64)
        self.rate_limit_deadline = rate_limit_deadline
        self.on_stop: Callable[[], None] | None = None
        self._rate_setting = getattr(settings, "rate_limit", None)
        self.metis_compat = getattr(settings, "metis_compat", True) is not False
        self._clients: set[int] = set()  # processes that joined (run --proxy, proxy start's shell, the API)
        self._pacers: dict[str, pacing.Pacer] = {}
        self._pacers_lock = threading.Lock()
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._server = _GuardedServer((host, port), handler, self.guard, listener)
        self._threads: list[threading.Thread] = []
        host, port = self._server.server_address[:2]
        self.address = (host, port)
        self.base_url = f"http://{host}:{port}/v1/"

    def __repr__(self) -> str:
        return f"ProxyServer({self.base_url!r})"

    def url_for(self, endpoint_id: str) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/endpoint/{endpoint_id}/v1/"

    def pacer_for(self, stored) -> pacing.Pacer:
        """One pacer for every gateway endpoint (the limit is the user's, not a cluster's), one per
        endpoint file; ``rate_limit`` caps both, gateway endpoints default to the gateway's 10/s."""
        name = "gateway" if uses_login(stored) else f"file:{stored.id}"
        with self._pacers_lock:
            if name not in self._pacers:
                cap = self._rate_setting or (pacing.GATEWAY_RATE if uses_login(stored) else None)
                self._pacers[name] = pacing.Pacer(cap)
            return self._pacers[name]

    def add_client(self, pid: int) -> None:
        with self._pacers_lock:
            self._clients.add(pid)
        self.stats.count("requests", 0)

    def live_clients(self) -> int:
        with self._pacers_lock:
            self._clients = {pid for pid in self._clients if pid_alive(pid)}
            return len(self._clients)

    def status(self) -> dict:
        with self._pacers_lock:
            pacers = dict(self._pacers)
        rates = {name: p.rate for name, p in pacers.items()}
        return {
            "pid": os.getpid(),
            "url": self.base_url,
            "uptime_seconds": round(time.time() - self.stats.started, 1),
            "clients": self.live_clients(),
            "connections": len(self.guard),
            "requests": self.stats.requests,
            "refreshes": self.keys.refreshes,
            "rate_limited_absorbed": self.stats.absorbed,
            "min_ttl": self.keys.min_ttl,
            "queue": sum(p.waiting for p in pacers.values()) + self.stats.holding,
            "rate": rates.get("gateway"),
            "rates": rates,
            "metis_compat": {"enabled": self.metis_compat, **self.stats.adapted},
        }

    def idle_for(self) -> float:
        """Seconds since the last request or connection; 0 while any connection is open."""
        if len(self.guard) or self.live_clients():
            return 0.0
        return time.monotonic() - self.stats.last_active

    def start(self) -> None:
        for target, name in ((self.guard.watch, "metis-env-proxy-guard"), (self.serve, "metis-env-proxy")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def serve(self) -> None:
        if not any(t.name == "metis-env-proxy-guard" for t in self._threads):
            guard = threading.Thread(target=self.guard.watch, name="metis-env-proxy-guard", daemon=True)
            guard.start()
            self._threads.append(guard)
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self._server.shutdown()
        self.guard.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._server.server_close()


class _GuardedServer(ThreadingHTTPServer):
    """A thread per connection, but only for connections the guard admits; socketserver's traceback
    on stderr for an error in a handler becomes one line (a client that hangs up is normal here)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, guard: ConnectionGuard, listener: socket.socket | None = None) -> None:
        self.guard = guard
        if listener is None:
            super().__init__(address, handler)
            return
        super().__init__(address, handler, bind_and_activate=False)  # the broker's: listening already
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not self.guard.admit(request):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        self.guard.release(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError, OSError)):
            warn(f"proxy: a request failed ({type(error).__name__}); the client got no answer to it")
            if os.environ.get("METIS_ENV_DEBUG", "") not in ("", "0"):
                import traceback

                traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: ProxyServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers, then each chunk: without it, delayed ACKs cost 40 ms apiece
    server_version = "metis-env-proxy"
    sys_version = ""
    timeout = 900  # a socket-level bound under the guard's deadlines (a client that stops reading)
    _served = 0

    def log_message(self, format: str, *args: object) -> None:
        pass  # the clients' requests are their own business; errors that matter are warned about

    def handle_one_request(self) -> None:
        if self._served:  # between requests of a kept-alive connection
            self.proxy.guard.expect(self.connection, self.proxy.guard.limits.idle_timeout)
        super().handle_one_request()
        self._served += 1

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        proxy = self.proxy
        presented = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), f"Bearer {proxy.local_key}".encode()):
            self._refuse(401, "metis-env proxy: wrong or missing key; use the OPENAI_API_KEY metis-env gave the command", "invalid_api_key")
            return
        proxy.guard.trust(self.connection)
        body = self._read_body()
        if body is None:
            return
        proxy.guard.expect(self.connection, None)
        path, _, query = self.path.partition("?")
        selected, rest = self._split(path)
        if selected is None or rest is None:
            self._error(404, f"metis-env proxy: no route for {redact(path[:100], proxy.keys.known_keys())}; the API is under /v1/", "not_found")
            return
        if method == "GET" and path == "/metis-env/status":
            self._json(200, proxy.status())
            return
        if method == "POST" and path == "/metis-env/clients":
            joined = _json_of(body)
            pid, min_ttl = joined.get("pid"), joined.get("min_ttl")
            if isinstance(pid, int) and pid > 0:
                proxy.add_client(pid)
            if isinstance(min_ttl, (int, float)) and min_ttl > 0:
                proxy.keys.want_min_ttl(float(min_ttl))
            self._json(200, {"clients": proxy.live_clients()})
            return
        if method == "POST" and path == "/metis-env/stop" and proxy.on_stop is not None:
            self._json(200, {"stopping": True})
            threading.Thread(target=proxy.on_stop, daemon=True).start()
            return
        proxy.stats.count("requests")  # the client's, not metis-env's own calls above
        if method == "GET" and rest.rstrip("/") == "models":
            self._json(200, proxy.router.models_list(selected))
            return
        if method == "GET" and rest.startswith("models/"):
            wanted = rest[len("models/"):]
            match = [m for m in proxy.router.models_list(selected)["data"] if m["id"] == wanted]
            if match:
                self._json(200, match[0])
            else:
                self._error(404, f"The model `{wanted[:100]}` does not exist", "model_not_found")
            return
        endpoint_id = proxy.router.route(_model_of(body), selected)
        self._forward(method, endpoint_id, rest + (f"?{query}" if query else ""), body)

    def _split(self, path: str) -> tuple[str | None, str | None]:
        """The request path -> (selected endpoint, the part after its ``/v1/``), None where refused."""
        router = self.proxy.router
        router.reload()
        if path.startswith("/metis-env/"):
            return router.default, ""
        selected = router.default
        if path.startswith("/endpoint/"):
            selected, _, path = path[len("/endpoint/"):].partition("/")
            path = "/" + path
            if selected not in router.endpoints:
                return None, None
        if path == "/v1":
            return selected, ""
        if not path.startswith("/v1/"):
            return selected, None
        return selected, confine_path(path[len("/v1/"):])

    def _read_body(self) -> bytes | None:
        limits = self.proxy.guard.limits
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._refuse(411, "metis-env proxy: send a Content-Length, not a chunked body", "length_required")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= limits.max_body:
            self._refuse(413, f"metis-env proxy: request bodies are limited to {limits.max_body} bytes", "too_large")
            return None
        self.proxy.guard.expect(self.connection, limits.body_timeout)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _forward(self, method: str, endpoint_id: str, rest: str, body: bytes) -> None:
        proxy = self.proxy
        stored = proxy.router.endpoints[endpoint_id]
        url = stored.base_url.rstrip("/") + "/" + rest
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        data = body if method != "GET" else None
        if data and proxy.metis_compat and rest.partition("?")[0].rstrip("/") == "chat/completions" and metis_compat.is_metis(stored):
            data, changed = metis_compat.adapt_bytes(data)  # upstream.send sends its Content-Length
            proxy.stats.count_adapted(changed)
        pacer = proxy.pacer_for(stored)
        deadline = time.monotonic() + proxy.rate_limit_deadline
        attempt = 0
        while True:
            turn = pacer.wait_turn(first=attempt > 0)
            try:
                answer = self._ask(endpoint_id, url, method, data, headers)
                pacer.answered(turn)
            except MetisEnvError as exc:
                warn(f"proxy: {exc}")
                status = 401 if exc.exit_code in (18, 19) else 502
                self._error(status, f"metis-env proxy: {exc}", "metis_env_error")
                return
            except upstream.Unreachable as exc:
                warn(f"proxy: {exc}")
                self._error(502, f"metis-env proxy: {exc}", "upstream_unreachable")
                return
            wait = None
            if answer.status in (429, 503):
                answer = upstream.Buffered(answer)
                wait = self._hold_for(answer, attempt)
            if wait is None:
                if answer.status < 400:
                    pacer.succeeded()
                break
            if answer.status == 429:
                pacer.throttled(turn)
            if time.monotonic() + wait > deadline:
                break  # held long enough: the client sees the upstream's own answer
            proxy.stats.count("absorbed")
            proxy.stats.count("holding")
            try:
                time.sleep(wait)
            finally:
                proxy.stats.count("holding", -1)
            attempt += 1
        self._relay(answer)

    @staticmethod
    def _hold_for(answer: upstream.Buffered, attempt: int) -> float | None:
        """Seconds to hold a request that got ``answer`` before sending it again; None: pass it on."""
        after = upstream.retry_after(answer.headers)
        if answer.status == 429:
            return after if after is not None else pacing.backoff(attempt)
        if answer.status == 503 and after is not None and not any(w in answer.peek().lower() for w in NOT_LIVE_WORDS):
            return min(after, 60.0)
        return None

    def _ask(self, endpoint_id: str, url: str, method: str, data: bytes | None, headers: Mapping[str, str]):
        keys = self.proxy.keys
        key = keys.get(endpoint_id)
        answer = upstream.send(url, method, data, headers, key)
        if answer.status != 401:
            return answer
        # The key may have rotated (a sync) or the token been revoked: ask once more, and retry once
        # if that gave another key; otherwise the client sees the endpoint's own 401.
        refused = upstream.Buffered(answer)
        if POLICY_WORDS.encode() in refused.peek().lower():
            keys.warn_once(REAUTH_MESSAGE)  # no new token cures it: the user must act
        elif any(words.encode() in refused.peek().lower() for words in IDP_WORDS):
            keys.warn_once(idp_refusal(refused.peek().decode("utf-8", "replace")))
        fresh = keys.get(endpoint_id, refused=key)
        return upstream.send(url, method, data, headers, fresh) if fresh != key else refused

    def _relay(self, answer) -> None:
        keys = self.proxy.keys.known_keys()
        try:
            self.send_response(answer.status, redact(answer.reason or "", keys))
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, redact(value, keys))
            length = answer.headers.get("Content-Length")
            if answer.status in (204, 304):
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if length is not None and length.isdigit() and int(length) <= BUFFERED_ANSWER:
                body = redact(answer.read(), keys)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            redactor = Redactor(keys)
            while True:
                piece = answer.read1(CHUNK)
                if not piece:
                    break
                piece = redactor.feed(piece)
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()  # one SSE event out as soon as it came in
            tail = redactor.flush()
            if tail:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError, http.client.HTTPException):
            self.close_connection = True  # the client went away, or the endpoint broke off mid-answer
        finally:
            answer.close()

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer without reading the body, and close: a client without the key holds nothing."""
        self.close_connection = True
        self._error(status, message, code, close=True)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= DRAIN_ON_REFUSAL:
            try:
                self.rfile.read(length)  # so the close is a FIN, not a reset that could eat the answer
            except OSError:
                pass

    def _error(self, status: int, message: str, code: str, close: bool = False) -> None:
        self._json(status, {"error": {"message": message, "type": "metis_env_proxy_error", "param": None, "code": code}}, close)

    def _json(self, status: int, payload: dict, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _allow_descriptors(wanted: int) -> None:
    """Raise the soft limit on open files toward ``wanted`` (the hard limit permitting): a connection
    per client, and one upstream for each request in flight."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted * 2 if hard == resource.RLIM_INFINITY else min(hard, wanted * 2)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, OSError, ValueError):
        pass


def _json_of(body: bytes) -> dict:
    if not body.lstrip().startswith(b"{"):
        return {}
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _model_of(body: bytes) -> object:
    return _json_of(body).get("model")

