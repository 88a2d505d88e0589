"""The HTTP floor: one client, one answer type, one failure ladder, one scrubber; used by ``check``,
the gateway's client (``sources/gateway/http.py``) and the proxy alike. Standard library only.

TLS is always verified, against the CAs ``ssl.create_default_context`` loads when each client starts,
so ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured. The usual proxy variables (``HTTPS_PROXY``,
``NO_PROXY``, ...) are honoured through urllib, except that a loopback host is never sent through a
proxy (a proxy's loopback is not ours). Redirects are not followed: a key goes only to the URL asked
for. A secret never appears in an answer's text, a message or an exception: text that comes from the
server or from an exception is scrubbed of it, and no exception is chained.

Example::

    client = Client("https://host/v1", key, timeout=10, scrub=Scrubber(key))
    answer = client.request("GET", "models")           # an Answer, or TransportError
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import namedtuple
from urllib.parse import urlsplit

from .endpoint import is_loopback_host
from .render import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, AnyStr

# What a request that got no HTTP answer ends in (TransportError.status; check's statuses too).
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
FAILED = "failed"

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
CERT_HINT = "if your network inspects TLS with its own CA, point SSL_CERT_FILE at a bundle that includes it"
# Anything a terminal could act on, and line breaks: a server's words must stay on one line.
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# What RFC 9110 allows in a header value, minus the whitespace a key never has.
HEADER_SAFE = re.compile(r"[\x21-\x7e]+\Z")


def redact(data: AnyStr, keys: Iterable[str]) -> AnyStr:
    """``data`` (text or bytes) with every non-empty key in ``keys`` replaced by ``<key>``: the one rule
    for keeping a key out of what is shown (check's messages) or relayed (the proxy's answers)."""
    for key in keys:
        if key:
            if isinstance(data, bytes):
                data = data.replace(key.encode(), b"<key>")
            else:
                data = data.replace(key, "<key>")
    return data


class Scrubber:
    """Makes outside text safe to keep: the secret replaced by ``mask``, one printable line, bounded
    length; with ``printable``, also every character a terminal could act on (render.printable)."""

    def __init__(self, secret: str, mask: str = "<key>", printable: bool = False) -> None:
        self._secret = secret
        self._mask = mask
        self._printable = printable

    def __repr__(self) -> str:
        return "Scrubber()"

    def __call__(self, text: str, limit: int = 300) -> str:
        if self._secret:
            text = text.replace(self._secret, self._mask)
        text = UNPRINTABLE.sub(" ", text).strip()
        if self._printable:
            text = printable(text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


class Answer(namedtuple("Answer", "url status body content_type latency_ms location scrub")):
    """One HTTP answer, whatever its status: ``url`` (scrubbed), ``status``, ``body`` (bytes, at most
    MAX_RESPONSE_BYTES), ``content_type``, ``latency_ms``, ``location`` (a redirect's, scrubbed) and the
    ``scrub`` that cleans the server's words."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Answer(url={self.url!r}, status={self.status!r})"

    def describe_body(self) -> str:
        kind = self.content_type or "no Content-Type"
        try:
            json.loads(self.body)
        except ValueError:
            return f"not JSON: {kind}, {len(self.body)} bytes"
        return f"JSON, {len(self.body)} bytes"

    def error_detail(self, prefix: str) -> str:
        """The server's own words from an OpenAI error body, scrubbed, or nothing."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            return ""
        error = payload.get("error") if isinstance(payload, dict) else None
        text = error.get("message") if isinstance(error, dict) else error
        if not isinstance(text, str) or not text.strip():
            text = payload.get("message") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            return ""
        return prefix + self.scrub(text, limit=160)


class TransportError(Exception):
    """No HTTP answer: ``status`` is UNREACHABLE, TIMEOUT or FAILED; ``message`` is already scrubbed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Wording(namedtuple("Wording", "timeout_tail refused_hint name_proxy")):
    """How ``describe_failure`` words what differs between its callers: what follows a timeout, the hint
    after a refused connection, and whether the proxy (rather than the host) is named when it is the
    one that could not be resolved or reached."""

    __slots__ = ()


CHECK_WORDING = Wording("", "is the endpoint up and the port right?", True)


def describe_failure(exc: BaseException, where: str, timeout: float, scrub: Scrubber, *, via: str = "", proxy: str = "",
                     wording: Wording = CHECK_WORDING) -> TransportError:
    """The one failure ladder: an exception from urllib (or the socket under it) -> one scrubbed line
    saying what failed where (``where``: host[:port]; ``via``: how a proxy is mentioned; ``proxy``: its
    host and port), never the exception's own text for a failure we do not know."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    named_proxy = bool(proxy) and wording.name_proxy
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return TransportError(TIMEOUT, f"{where} did not answer within {timeout:g} s{via}{wording.timeout_tail}")
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = reason.verify_message or str(reason)
        return TransportError(UNREACHABLE, f"TLS certificate of {where} not trusted ({scrub(why, 120)}); {CERT_HINT}")
    if isinstance(reason, ssl.SSLError):
        why = reason.reason or str(reason)
        return TransportError(UNREACHABLE, f"TLS handshake with {where} failed ({scrub(str(why), 120)}){via}")
    if isinstance(reason, socket.gaierror):
        target = proxy if named_proxy else where
        return TransportError(
            UNREACHABLE, f"cannot resolve {target} (DNS: {scrub(str(reason.strerror), 80)}); check the name and your network"
        )
    if isinstance(reason, http.client.HTTPException):
        return TransportError(FAILED, f"{where} closed the connection without a valid HTTP answer ({type(reason).__name__}){via}")
    if isinstance(reason, ConnectionRefusedError):
        target = f"the proxy {proxy}" if named_proxy else f"{where}{via}"
        return TransportError(UNREACHABLE, f"connection refused by {target}; {wording.refused_hint}")
    if isinstance(reason, OSError):
        why = reason.strerror or str(reason)
        return TransportError(UNREACHABLE, f"cannot reach {where}{via} ({scrub(why, 120)})")
    # Not a network failure (a bug, or urllib refusing the request): say what, never the text.
    return TransportError(FAILED, f"the request to {where} could not be made ({type(reason).__name__})")


class Client:
    """One opener for one base URL: verified TLS, the proxy settings, no redirects, every request
    together bounded by ``timeout`` seconds (a server that drips a byte every few seconds cannot keep
    it going)."""

    def __init__(self, base_url: str, api_key: str, timeout: float, scrub: Scrubber, user_agent: str = "metis-env-check") -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.scrub = scrub
        self.user_agent = user_agent
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.netloc = scrub(f"{self.host}:{parts.port}" if parts.port else self.host)
        self._opener, self.proxy = verified_opener(parts.scheme, self.host)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        url = f"{self.base_url}/{path}"
        shown = self.scrub(url)
        request = json_request(url, method, self._api_key, body, self.user_agent)
        start = time.perf_counter()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        outcome: list = []
        # urllib's timeout bounds each socket operation, not the request: a server sending a byte just
        # before each timeout (or a DNS lookup, which has no timeout) would keep it going. The request
        # runs in a daemon thread and is abandoned at the deadline.
        worker = threading.Thread(target=lambda: outcome.append(self._exchange(request, remaining)), daemon=True)
        worker.start()
        worker.join(remaining)
        if not outcome:
            raise self._timed_out()
        status, headers, payload, failure = outcome[0]
        if failure is not None:
            # Raised outside any except block so that nothing the key could hide in is chained.
            raise failure
        latency_ms = round((time.perf_counter() - start) * 1000)
        return Answer(
            url=shown,
            status=status,
            body=payload,
            content_type=self.scrub((headers.get("Content-Type") or "").split(";")[0], limit=60),
            latency_ms=latency_ms,
            location=self.scrub(headers.get("Location") or "", limit=160),
            scrub=self.scrub,
        )

    def _via(self) -> str:
        return f" through the proxy {self.proxy_shown}" if self.proxy else ""

    def _timed_out(self) -> TransportError:
        return TransportError(TIMEOUT, f"{self.netloc} did not answer within {self.timeout:g} s{self._via()}")

    def _exchange(self, request: urllib.request.Request, remaining: float) -> tuple:
        """(status, headers, body, None) or (None, None, None, the failure), never raising."""
        status = headers = payload = None
        failure: TransportError | None = None
        try:
            with self._opener.open(request, timeout=remaining) as response:
                payload = response.read(MAX_RESPONSE_BYTES)
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
            try:
                payload = exc.read(MAX_RESPONSE_BYTES)
            except (OSError, http.client.HTTPException):
                payload = b""
            finally:
                exc.close()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result, described below
            failure = describe_failure(exc, self.netloc, self.timeout, self.scrub, via=self._via(), proxy=self.proxy_shown)
        return status, headers, payload, failure

    @property
    def proxy_shown(self) -> str:
        """The proxy's host and port, without any user:password it carries."""
        if not self.proxy:
            return ""
        parts = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
        host = parts.hostname or "?"
        return self.scrub(f"{host}:{parts.port}" if parts.port else host)


def call_within(seconds: float, call: Callable[[], Any], late: Callable[[], BaseException]) -> Any:
    """``call()``'s value (or its exception), or ``late()`` raised once ``seconds`` have passed,
    whatever the call is doing: a per-read timeout does not bound a server that answers one byte at a
    time. The call runs in a daemon thread that is left behind at the deadline, its answer dropped.

    The thread keeps its socket open until the server stops or the process exits: urllib and requests
    open it inside the call, and closing it from here is not cheap (SECURITY.md, Limits)."""
    import threading

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=work, name="metis-env-deadline", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise late()
    if "error" in box:
        raise box["error"]
    return box["value"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status, which we report


def json_request(url: str, method: str, token: str, body: Any, user_agent: str) -> urllib.request.Request:
    """A JSON request with a bearer token, as check and the gateway's client send it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", user_agent)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    return request


def verified_opener(scheme: str, host: str) -> tuple[urllib.request.OpenerDirector, str | None]:
    """An opener for ``scheme://host`` that verifies TLS against the CAs loaded now (so SSL_CERT_FILE
    and SSL_CERT_DIR are honoured), uses the environment's proxy (never for loopback) and follows no
    redirect; and that proxy's URL."""
    proxy = proxy_for(scheme, host)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({scheme: proxy} if proxy else {}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _NoRedirect(),
    )
    return opener, proxy


def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL urllib would use for ``scheme://host``, honouring NO_PROXY; never for loopback."""
    if is_loopback(host):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def is_loopback(host: str) -> bool:
    return is_loopback_host(host) or host.lower().endswith(".localhost")
