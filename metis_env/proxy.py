"""``metis-env run --proxy``: a loopback proxy that holds the real key while a long job runs.

An environment variable cannot be refreshed, and a gateway access token lives 48 h; a job can live
longer. So, for the child's lifetime only, metis-env listens on 127.0.0.1 (port 0: the kernel picks a
free one), gives the child ``OPENAI_BASE_URL`` = that proxy and ``OPENAI_API_KEY`` = a random key
made for this run, and stays the parent:

- each request must carry the local key (``Authorization: Bearer``, compared in constant time);
- the proxy puts the real key in its place, asking ``actions.select_with_key`` for it (the one way to
  get a current gateway token: it refreshes under the store's lock) and caching it until the moment
  ``export`` itself would refresh it (``token_refresh_margin`` before expiry);
- it forwards to the endpoint's base URL (TLS verified against the CAs ``SSL_CERT_FILE`` names, proxy
  variables honoured except for loopback, redirects never followed) and streams the answer back chunk
  by chunk as it arrives (SSE included); an upstream 401 makes it ask for the key again, and retry
  once if that gave a different key;
- ``GET /v1/models`` is answered from the stored models (the gateway has no such route);
- a request's ``"model"`` picks the endpoint: the selected endpoint when it serves that model, else
  the one stored endpoint that serves it; the selected endpoint when the model is absent, unknown or
  served by several others.

The real key never enters the child's environment or argv. metis-env forwards SIGINT, SIGTERM and
SIGHUP to the child, exits with its status (128+N when a signal N ended it) and stops the proxy when
the child is gone. Standard library only.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import actions
from .supervise import supervise
from .errors import MetisEnvError, UsageError
from .sources.gateway.http import IDP_WORDS, POLICY_WORDS, REAUTH_MESSAGE, idp_refusal

LOCAL_KEY_PREFIX = "metis-env-local-"
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # the gateway takes 10 MB; an endpoint file's server may take more
UPSTREAM_TIMEOUT = 900.0  # seconds for connect and for each read: a long generation may be slow to start
MIN_RECHECK = 30.0  # at most this many seconds between look-ups of a token inside the refresh margin
CHUNK = 64 * 1024
# Headers that describe one connection, not the message (RFC 9110 7.6.1), and the ones we set ourselves.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "authorization", "api-key",
}


def run_with_proxy(store, settings, spec: str | None, model: str | None, argv: Sequence[str]) -> int:
    """``metis-env run --proxy [ENDPOINT] [--model NAME] -- CMD``: the child's exit status."""
    if not argv:
        raise UsageError("nothing to run; usage: metis-env run --proxy [ENDPOINT] [--model NAME] -- COMMAND [ARGS...]")
    selection, key = actions.select_with_key(store, spec, model, settings, "run --proxy")
    for warning in selection.warnings:
        actions.warn(warning)
    keys = KeyCache(store, settings)
    keys.prime(selection, key)
    local_key = LOCAL_KEY_PREFIX + secrets.token_urlsafe(32)
    router = Router(store.endpoints(), selection.endpoint.id)
    server = ProxyServer(router, keys, local_key)
    env = child_environment(os.environ, selection, server.base_url, local_key, keys.known_keys(), settings)
    return supervise(argv, env, server.start, server.stop)


def child_environment(
    inherited: Mapping[str, str], selection, proxy_url: str, local_key: str, real_keys: Sequence[str], settings=None
) -> dict[str, str]:
    """What the child gets: ``run``'s variables, pointing at the proxy and carrying the local key.

    Inherited names that ``run`` would set for another kind of endpoint (an old export of a real key)
    are dropped, and so is any variable whose value holds a real key: the child must have none.
    """
    local = selection._replace(endpoint=selection.endpoint._replace(base_url=proxy_url))
    ours = actions.environment_for(local, local_key, settings)
    ours.pop("METIS_ENV_TOKEN_EXPIRES", None)  # the local key does not expire while the child runs
    env = {
        name: value
        for name, value in inherited.items()
        if name not in actions.EXPORTED_NAMES
        and name != "METIS_ENV_TOKEN_EXPIRES"
        and not any(k and k in value for k in real_keys)
    }
    env.update(ours)
    return env


# --- keys -------------------------------------------------------------------------------------------


class KeyCache:
    """The current real key of each endpoint, from ``actions.select_with_key``; one look-up at a time."""

    def __init__(self, store, settings) -> None:
        self._store = store
        self._settings = settings
        self._lead = float(getattr(settings, "token_refresh_margin", 3600.0))
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float | None]] = {}
        self._warned: set[str] = set()
        self._seen: list[str] = []

    def __repr__(self) -> str:
        return f"KeyCache(endpoints={sorted(self._cache)!r})"

    def prime(self, selection, key: str) -> None:
        with self._lock:
            self._remember(selection, key)

    def known_keys(self) -> list[str]:
        with self._lock:
            return list(self._seen)

    def get(self, endpoint_id: str, refused: str | None = None) -> str:
        """The key to send to ``endpoint_id``; ``refused``: the key the endpoint just answered 401 to."""
        with self._lock:
            cached = self._cache.get(endpoint_id)
            if cached is not None:
                key, recheck_at = cached
                if refused is not None and key != refused:
                    return key  # another request already got a new one
                if refused is None and (recheck_at is None or time.time() < recheck_at):
                    return key
            selection, key = actions.select_with_key(self._store, endpoint_id, None, self._settings)
            for warning in selection.warnings:
                self._warn_once(warning)
            self._remember(selection, key)
            return key

    def warn_once(self, message: str) -> None:
        with self._lock:
            self._warn_once(message)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            actions.warn(message)

    def _remember(self, selection, key: str) -> None:
        expires = parse_expiry(getattr(selection, "expires_at", None))
        now = time.time()
        if expires is None:
            recheck_at = None  # an endpoint file's key: until the endpoint refuses it
        elif expires - self._lead > now:
            recheck_at = expires - self._lead  # when export would refresh it
        else:  # already inside the margin (a refresh failed, or tokens live less than the margin)
            recheck_at = now + min(MIN_RECHECK, max(1.0, (expires - now) / 2))
        self._cache[selection.endpoint.id] = (key, recheck_at)
        if key not in self._seen:
            self._seen.append(key)


def parse_expiry(value: str | None) -> float | None:
    """ISO 8601 (``2026-12-02T03:00:00+00:00`` or ``...Z``) -> seconds since the epoch; None if absent."""
    if not value:
        return None
    import datetime

    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return time.time()  # unreadable: ask again at every request rather than trust it
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


# --- routing ----------------------------------------------------------------------------------------


class Router:
    """A request's model -> the endpoint that serves it (see the module docstring for the rule)."""

    def __init__(self, endpoints: Mapping, selected: str) -> None:
        self.endpoints = dict(endpoints)
        self.selected = selected
        self._serving: dict[str, list[str]] = {}
        for stored in self.endpoints.values():
            for name in stored.models:
                self._serving.setdefault(name, []).append(stored.id)

    def route(self, model: object) -> str:
        if not isinstance(model, str) or model in self.endpoints[self.selected].models:
            return self.selected
        serving = self._serving.get(model, [])
        return serving[0] if len(serving) == 1 else self.selected

    def models_list(self) -> dict:
        """``GET /v1/models`` in OpenAI's shape: every stored model, the selected endpoint's first."""
        order = [self.selected] + [i for i in self.endpoints if i != self.selected]
        data, seen = [], set()
        for endpoint_id in order:
            for name in self.endpoints[endpoint_id].models:
                if name not in seen:
                    seen.add(name)
                    data.append({"id": name, "object": "model", "created": 0, "owned_by": f"metis-env:{endpoint_id}"})
        return {"object": "list", "data": data}


# --- the server -------------------------------------------------------------------------------------


class ProxyServer:
    """The loopback listener; ``base_url`` is known as soon as it is made, ``start()`` serves."""

    def __init__(self, router: Router, keys: KeyCache, local_key: str, host: str = "127.0.0.1") -> None:
        handler = type("Handler", (_ProxyHandler,), {"router": router, "keys": keys, "local_key": local_key})
        self._server = _QuietServer((host, 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        host, port = self._server.server_address[:2]
        self.address = (host, port)
        self.base_url = f"http://{host}:{port}/v1/"

    def __repr__(self) -> str:
        return f"ProxyServer({self.base_url!r})"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="metis-env-proxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """socketserver prints a traceback on stderr (the child's terminal) for any error in a handler:
    a client that hangs up is normal here, and anything else is one line."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            actions.warn(f"proxy: a request failed ({type(error).__name__}); the command got no answer to it")
            if os.environ.get("METIS_ENV_DEBUG", "") not in ("", "0"):
                import traceback

                traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


class _ProxyHandler(BaseHTTPRequestHandler):
    router: Router
    keys: KeyCache
    local_key: str
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers, then each chunk: without it, delayed ACKs cost 40 ms apiece
    server_version = "metis-env-proxy"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass  # the child's requests are its own business; errors that matter are warned about below

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        presented = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), f"Bearer {self.local_key}".encode()):
            self._error(401, "metis-env proxy: wrong or missing key; use the OPENAI_API_KEY metis-env run --proxy set", "invalid_api_key")
            return
        path, _, query = self.path.partition("?")
        if not path.startswith("/v1/") and path != "/v1":
            self._error(404, f"metis-env proxy: no route for {path[:100]}; the API is under /v1/", "not_found")
            return
        rest = path[len("/v1/"):]
        if method == "GET" and rest.rstrip("/") == "models":
            self._json(200, self.router.models_list())
            return
        if method == "GET" and rest.startswith("models/"):
            wanted = rest[len("models/"):]
            match = [m for m in self.router.models_list()["data"] if m["id"] == wanted]
            if match:
                self._json(200, match[0])
            else:
                self._error(404, f"The model `{wanted[:100]}` does not exist", "model_not_found")
            return
        endpoint_id = self.router.route(_model_of(body))
        self._forward(method, endpoint_id, rest + (f"?{query}" if query else ""), body)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._error(411, "metis-env proxy: send a Content-Length, not a chunked body", "length_required")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self.close_connection = True
            self._error(413, f"metis-env proxy: request bodies are limited to {MAX_REQUEST_BYTES} bytes", "too_large")
            return None
        return self.rfile.read(length) if length else b""

    def _forward(self, method: str, endpoint_id: str, rest: str, body: bytes) -> None:
        stored = self.router.endpoints[endpoint_id]
        url = stored.base_url.rstrip("/") + "/" + rest
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        data = body if method != "GET" else None
        try:
            key = self.keys.get(endpoint_id)
            answer = _open(url, method, data, headers, key)
            if answer.status == 401:
                # The key may have rotated (a sync) or the token been revoked: ask once more, and retry
                # once if that gave another key; otherwise the child sees the endpoint's own 401.
                refused = _Buffered(answer)
                if POLICY_WORDS.encode() in refused.peek().lower():
                    self.keys.warn_once(REAUTH_MESSAGE)  # no new token cures it: the user must act
                elif any(words.encode() in refused.peek().lower() for words in IDP_WORDS):
                    self.keys.warn_once(idp_refusal(refused.peek().decode("utf-8", "replace")))
                fresh = self.keys.get(endpoint_id, refused=key)
                answer = _open(url, method, data, headers, fresh) if fresh != key else refused
        except MetisEnvError as exc:
            actions.warn(f"proxy: {exc}")
            status = 401 if exc.exit_code in (18, 19) else 502
            self._error(status, f"metis-env proxy: {exc}", "metis_env_error")
            return
        except _Unreachable as exc:
            actions.warn(f"proxy: {exc}")
            self._error(502, f"metis-env proxy: {exc}", "upstream_unreachable")
            return
        self._relay(answer)

    def _relay(self, answer) -> None:
        try:
            self.send_response(answer.status, answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            length = answer.headers.get("Content-Length")
            chunked = length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.flush()
            while True:
                piece = answer.read1(CHUNK)
                if not piece:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self.wfile.flush()  # one SSE event out as soon as it came in
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError, http.client.HTTPException):
            self.close_connection = True  # the child went away, or the endpoint broke off mid-answer
        finally:
            answer.close()

    def _error(self, status: int, message: str, code: str) -> None:
        self._json(status, {"error": {"message": message, "type": "metis_env_proxy_error", "param": None, "code": code}})

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _model_of(body: bytes) -> object:
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload.get("model") if isinstance(payload, dict) else None


# --- upstream ---------------------------------------------------------------------------------------


class _Unreachable(Exception):
    """No HTTP answer from the endpoint; the message names the host, never the key."""


class _Buffered:
    """An answer read into memory (and its connection closed), with the interface _relay uses."""

    def __init__(self, answer) -> None:
        self.status, self.reason, self.headers = answer.status, answer.reason, answer.headers
        try:
            self._body = answer.read()
        except (OSError, http.client.HTTPException):
            self._body = b""
        finally:
            answer.close()

    def peek(self) -> bytes:
        return self._body[:4000]

    def read1(self, _size: int) -> bytes:
        body, self._body = self._body, b""
        return body

    def read(self) -> bytes:
        return self.read1(0)

    def close(self) -> None:
        pass


_OPENERS: dict[tuple[str, str], object] = {}
_OPENERS_LOCK = threading.Lock()


def _opener_for(scheme: str, host: str):
    """check's opener (verified TLS, proxy variables, no redirects), one per host for the run: loading
    the CA bundle for each request would cost tens of milliseconds."""
    from .check import verified_opener

    with _OPENERS_LOCK:
        if (scheme, host) not in _OPENERS:
            _OPENERS[(scheme, host)] = verified_opener(scheme, host)[0]  # SSL_CERT_FILE read here
        return _OPENERS[(scheme, host)]


def _open(url: str, method: str, body: bytes | None, headers: Mapping[str, str], key: str):
    """One request upstream -> the open answer (any status), with ``status``, ``reason``, ``headers``, ``read1``."""
    parts = urlsplit(url)
    opener = _opener_for(parts.scheme, parts.hostname or "")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    request.add_header("Authorization", f"Bearer {key}")
    failure = None
    try:
        return opener.open(request, timeout=UPSTREAM_TIMEOUT)  # an http.client.HTTPResponse
    except urllib.error.HTTPError as exc:
        return _HTTPErrorAnswer(exc)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        failure = f"cannot reach {parts.hostname}:{parts.port or ''} ({type(reason).__name__}: {getattr(reason, 'strerror', None) or reason})"
    raise _Unreachable(failure.replace(key, "<key>"))


class _HTTPErrorAnswer:
    """urllib's HTTPError for a 4xx/5xx answer, seen as an answer to relay."""

    def __init__(self, exc: urllib.error.HTTPError) -> None:
        self._exc = exc
        self.status = exc.code
        self.reason = str(exc.reason)
        self.headers = exc.headers

    def read1(self, size: int) -> bytes:
        fp = self._exc.fp
        if fp is None:
            return b""
        reader = getattr(fp, "read1", None)
        return reader(size) if reader else fp.read(size)

    def read(self) -> bytes:
        return self._exc.read()

    def close(self) -> None:
        self._exc.close()
