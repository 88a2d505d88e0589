"""Prove that a stored key works: ask the endpoint for its models, as any OpenAI client would.

``check_endpoint`` sends ``GET {base_url}/models`` with the key and returns a ``CheckResult``; it
never raises for what the network or the server does. ``raise_for_result`` turns a failed result into
the matching ``MetisEnvError`` so that the CLI can print the result first and exit with its code.

If ``/models`` answers 404 or 405 (not every deployment serves it), each model listed in the endpoint
file gets a one-token chat completion instead (``max_tokens: 1``): the files list one or two models,
and the point of ``check`` is to say which of them answer. A model answering 200 is served; 400, 404
or 422 means the endpoint refused that model; the check is ``ok`` when at least one model answered.

Standard library only. TLS is always verified, against the CAs ``ssl.create_default_context`` loads
when each check starts, so ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured. The usual proxy
variables (``HTTPS_PROXY``, ``NO_PROXY``, ...) are honoured through urllib, except that a loopback
host is never sent through a proxy (a proxy's loopback is not ours). Redirects are not followed: the
key is sent only to the URL in the endpoint file.

The key never appears in a result, a message or an exception: text that comes from the server or
from an exception is scrubbed of it before it is kept, and no exception is chained.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, AnyStr
from urllib.parse import urlsplit

from .endpoint import is_loopback_host
from .errors import (
    CheckFailedError,
    CheckTimeoutError,
    CheckUnauthorizedError,
    CheckUnreachableError,
    GatewayError,
    IdentityNotAuthorizedError,
    MetisEnvError,
    NotLiveError,
    RateLimitedError,
    ReauthRequiredError,
)

OK = "ok"
UNAUTHORIZED = "unauthorized"
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
FAILED = "failed"
# Only gateway endpoints (sources/gateway/check.py) end in these:
REAUTH_REQUIRED = "reauth_required"
IDENTITY_NOT_AUTHORIZED = "identity_not_authorized"
NOT_LIVE = "not_live"
MAINTENANCE = "maintenance"
GATEWAY_ERROR = "gateway_error"
RATE_LIMITED = "rate_limited"

ERRORS: dict[str, type[MetisEnvError]] = {
    UNAUTHORIZED: CheckUnauthorizedError,
    UNREACHABLE: CheckUnreachableError,
    TIMEOUT: CheckTimeoutError,
    FAILED: CheckFailedError,
    REAUTH_REQUIRED: ReauthRequiredError,
    IDENTITY_NOT_AUTHORIZED: IdentityNotAuthorizedError,
    NOT_LIVE: NotLiveError,
    MAINTENANCE: NotLiveError,
    GATEWAY_ERROR: GatewayError,
    RATE_LIMITED: RateLimitedError,
}
"""Status -> the error ``raise_for_result`` raises (and so the exit code)."""

PROBE_MODELS = "GET /models"
PROBE_CHAT = "POST /chat/completions"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
USER_AGENT = "metis-env-check"

_SYNC_HINT = "the key may have rotated: run `metis-env sync`"
_CERT_HINT = "if your network inspects TLS with its own CA, point SSL_CERT_FILE at a bundle that includes it"
# Anything a terminal could act on, and line breaks: a server's words must stay on one line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# What RFC 9110 allows in a header value, minus the whitespace a key never has.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+\Z")


@dataclass(frozen=True)
class CheckResult:
    """What one check found. Holds no key; ``to_dict()`` is the ``--json`` form."""

    endpoint: str
    base_url: str
    status: str
    message: str
    http_status: int | None = None
    latency_ms: int | None = None
    probe: str | None = None
    models: dict[str, bool | None] = field(default_factory=dict)
    model_status: dict[str, str] = field(default_factory=dict)
    """Per model: live, starting, queued, offline (the gateway's jobs) or unknown; for an endpoint
    file, live when served and offline when not. Not in ``to_dict``: ``status --json`` has it."""
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per model, what the gateway's ``{cluster}/models`` said of it when the endpoint was stored
    (``extra.capabilities``); empty for endpoint files and older gateways. ``status`` shows it."""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        """Stable keys, in this order, whatever the outcome (absent values are ``None``)."""
        return {
            "endpoint": self.endpoint,
            "base_url": self.base_url,
            "status": self.status,
            "http_status": self.http_status,
            "latency_ms": self.latency_ms,
            "probe": self.probe,
            "models": dict(self.models),
            "message": self.message,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def summary(self) -> str:
        """One line for a person: ``1: ok in 84 ms: DeepSeek-R1 served``."""
        head = f"{self.endpoint}: {self.status}"
        if self.ok and self.latency_ms is not None:
            head += f" in {self.latency_ms} ms"
        return f"{head}: {self.message}"


def raise_for_result(result: CheckResult, what: str = "check") -> None:
    """Raise the ``MetisEnvError`` matching a failed check; return quietly when it is ok."""
    if result.ok:
        return
    error = ERRORS.get(result.status, CheckFailedError)
    raise error(f"{what} of endpoint {result.endpoint}: {result.message}")


def check_endpoint(
    base_url: str,
    api_key: str,
    models: Sequence[str],
    timeout: float = 10.0,
    *,
    endpoint: str | None = None,
) -> CheckResult:
    """Check ``base_url`` with ``api_key``; ``models`` are the ones the endpoint file lists.

    ``timeout`` bounds the whole check, in seconds: every connect, read and fallback request together
    (a server that drips a byte every few seconds cannot keep it going). ``endpoint`` names the endpoint in
    the result (its id); the base URL by default.
    """
    scrub = _Scrubber(api_key)
    shown_url = scrub(base_url)
    models = tuple(models)
    result = _ResultFactory(endpoint=scrub(endpoint) if endpoint else shown_url, base_url=shown_url, models=models)

    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return result(FAILED, f"BASE_URL {shown_url!r} is not an http(s) URL; run `metis-env sync`")
    if not _HEADER_SAFE.match(api_key):
        return result(
            FAILED,
            "the stored key is empty or holds characters an HTTP header cannot carry; run `metis-env sync`",
        )

    client = _Client(base_url, api_key, timeout, scrub)
    try:
        answer = client.request("GET", "models")
    except _TransportError as exc:
        return result(exc.status, exc.message, probe=PROBE_MODELS)

    if answer.status in (404, 405):
        return _check_by_chat(client, result, models, answer.status)
    if answer.status in (401, 403):
        return result(UNAUTHORIZED, _unauthorized_message(answer), http_status=answer.status, probe=PROBE_MODELS)
    if answer.status != 200:
        return result(FAILED, _unexpected_message(answer), http_status=answer.status, probe=PROBE_MODELS)

    served_ids = _model_ids(answer.body)
    if served_ids is None:
        return result(
            FAILED,
            f"{answer.url} answered 200 but not with an OpenAI model list ({answer.describe_body()}); "
            "is BASE_URL right?",
            http_status=200,
            probe=PROBE_MODELS,
        )
    served = {name: name in served_ids for name in models}
    words = [f"{name} {'served' if ok else 'not listed by /models'}" for name, ok in served.items()]
    return result(
        OK,
        ", ".join(words) or "key accepted; the endpoint file lists no models",
        http_status=200,
        latency_ms=answer.latency_ms,
        probe=PROBE_MODELS,
        models=served,
    )


def _check_by_chat(client: _Client, result: _ResultFactory, models: tuple[str, ...], models_status: int) -> CheckResult:
    why = f"/models answered {models_status}"
    if not models:
        return result(
            FAILED,
            f"{why} and the endpoint file lists no model to try a chat completion with; is BASE_URL right?",
            http_status=models_status,
            probe=PROBE_MODELS,
        )
    served: dict[str, bool | None] = {name: None for name in models}
    words: list[str] = []
    first_ok: _Answer | None = None
    last: _Answer | None = None
    for name in models:
        body = {"model": name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        try:
            answer = client.request("POST", "chat/completions", body)
        except _TransportError as exc:
            return result(exc.status, exc.message, probe=PROBE_CHAT, models=served)
        if answer.status in (401, 403):
            return result(
                UNAUTHORIZED, _unauthorized_message(answer), http_status=answer.status, probe=PROBE_CHAT, models=served
            )
        last = answer
        if answer.status == 200 and _is_completion(answer.body):
            served[name] = True
            words.append(f"{name} answered")
            first_ok = first_ok or answer
        elif answer.status in (400, 404, 422):
            served[name] = False
            words.append(f"{name} refused (HTTP {answer.status}{answer.error_detail(', ')})")
        else:
            words.append(f"{name}: {_unexpected_message(answer)}")
    detail = f"{'; '.join(words)} ({why}, so each model was tried with a 1-token chat completion)"
    if first_ok is None:
        assert last is not None
        return result(FAILED, f"no model answered: {detail}", http_status=last.status, probe=PROBE_CHAT, models=served)
    return result(
        OK, detail, http_status=first_ok.status, latency_ms=first_ok.latency_ms, probe=PROBE_CHAT, models=served
    )


def _unauthorized_message(answer: _Answer) -> str:
    return f"{answer.url} refused the stored key (HTTP {answer.status}{answer.error_detail(': ')}); {_SYNC_HINT}"


def _unexpected_message(answer: _Answer) -> str:
    if 300 <= answer.status < 400:
        where = f" to {answer.location}" if answer.location else ""
        return f"{answer.url} redirected{where} (HTTP {answer.status}), not followed; is BASE_URL up to date? run `metis-env sync`"
    return f"{answer.url} answered HTTP {answer.status}{answer.error_detail(': ')} ({answer.describe_body()})"


def _model_ids(body: bytes) -> set[str] | None:
    """The ids in an OpenAI ``{"data": [{"id": ...}]}`` list, or None if the body is not one."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    return {item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)}


def _is_completion(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("choices"), list)


class _ResultFactory:
    """Builds results for one check, filling in what every outcome shares."""

    def __init__(self, endpoint: str, base_url: str, models: tuple[str, ...]) -> None:
        self.endpoint = endpoint
        self.base_url = base_url
        self.models = models

    def __call__(
        self,
        status: str,
        message: str,
        *,
        http_status: int | None = None,
        latency_ms: int | None = None,
        probe: str | None = None,
        models: dict[str, bool | None] | None = None,
    ) -> CheckResult:
        served = dict(models) if models is not None else {name: None for name in self.models}
        return CheckResult(
            endpoint=self.endpoint,
            base_url=self.base_url,
            status=status,
            message=message,
            http_status=http_status,
            latency_ms=latency_ms,
            probe=probe,
            models=served,
            model_status={name: WORDS[ok] for name, ok in served.items()},
        )


WORDS = {True: "live", False: "offline", None: "unknown"}


class _Scrubber:
    """Makes outside text safe to keep: the key replaced, one printable line, bounded length."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __repr__(self) -> str:
        return "_Scrubber()"

    def __call__(self, text: str, limit: int = 300) -> str:
        text = redact(text, (self._api_key,))
        text = _UNPRINTABLE.sub(" ", text).strip()
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


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


@dataclass(frozen=True)
class _Answer:
    url: str
    status: int
    body: bytes
    content_type: str
    latency_ms: int
    location: str
    scrub: _Scrubber = field(repr=False)

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


class _TransportError(Exception):
    """No HTTP answer: ``status`` is UNREACHABLE, TIMEOUT or FAILED; ``message`` is already scrubbed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status, which we report


class _Client:
    """One opener for one check: verified TLS, the proxy settings, no redirects."""

    def __init__(self, base_url: str, api_key: str, timeout: float, scrub: _Scrubber) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.scrub = scrub
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.netloc = scrub(f"{self.host}:{parts.port}" if parts.port else self.host)
        self._opener, self.proxy = verified_opener(parts.scheme, self.host)

    def __repr__(self) -> str:
        return f"_Client({self.base_url!r})"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> _Answer:
        url = f"{self.base_url}/{path}"
        shown = self.scrub(url)
        request = json_request(url, method, self._api_key, body, USER_AGENT)
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
        return _Answer(
            url=shown,
            status=status,
            body=payload,
            content_type=self.scrub((headers.get("Content-Type") or "").split(";")[0], limit=60),
            latency_ms=latency_ms,
            location=self.scrub(headers.get("Location") or "", limit=160),
            scrub=self.scrub,
        )

    def _timed_out(self) -> _TransportError:
        via = f" through the proxy {self.proxy_shown}" if self.proxy else ""
        return _TransportError(TIMEOUT, f"{self.netloc} did not answer within {self.timeout:g} s{via}")

    def _exchange(self, request: urllib.request.Request, remaining: float) -> tuple:
        """(status, headers, body, None) or (None, None, None, the failure), never raising."""
        status = headers = payload = None
        failure: _TransportError | None = None
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
            failure = self._describe_failure(exc)
        return status, headers, payload, failure

    def _describe_failure(self, exc: BaseException) -> _TransportError:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        where = self.netloc
        via = f" through the proxy {self.proxy_shown}" if self.proxy else ""
        if isinstance(reason, TimeoutError):
            return _TransportError(TIMEOUT, f"{where} did not answer within {self.timeout:g} s{via}")
        if isinstance(reason, ssl.SSLCertVerificationError):
            why = reason.verify_message or str(reason)
            return _TransportError(
                UNREACHABLE, f"TLS certificate of {where} not trusted ({self.scrub(why, 120)}); {_CERT_HINT}"
            )
        if isinstance(reason, ssl.SSLError):
            why = reason.reason or str(reason)
            return _TransportError(UNREACHABLE, f"TLS handshake with {where} failed ({self.scrub(str(why), 120)}){via}")
        if isinstance(reason, socket.gaierror):
            target = self.proxy_shown if self.proxy else where
            return _TransportError(
                UNREACHABLE, f"cannot resolve {target} (DNS: {self.scrub(str(reason.strerror), 80)}); check the name and your network"
            )
        if isinstance(reason, http.client.HTTPException):
            return _TransportError(
                FAILED, f"{where} closed the connection without a valid HTTP answer ({type(reason).__name__}){via}"
            )
        if isinstance(reason, ConnectionRefusedError):
            target = f"the proxy {self.proxy_shown}" if self.proxy else where
            return _TransportError(UNREACHABLE, f"connection refused by {target}; is the endpoint up and the port right?")
        if isinstance(reason, OSError):
            why = reason.strerror or str(reason)
            return _TransportError(UNREACHABLE, f"cannot reach {where}{via} ({self.scrub(why, 120)})")
        # Not a network failure (a bug, or urllib refusing the request): say what, never the text.
        return _TransportError(FAILED, f"the request to {where} could not be made ({type(reason).__name__})")

    @property
    def proxy_shown(self) -> str:
        """The proxy's host and port, without any user:password it carries."""
        if not self.proxy:
            return ""
        parts = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
        host = parts.hostname or "?"
        return self.scrub(f"{host}:{parts.port}" if parts.port else host)


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
    redirect; and that proxy's URL. The gateway's client (sources/gateway/http.py) uses it too."""
    proxy = _proxy_for(scheme, host)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({scheme: proxy} if proxy else {}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _NoRedirect(),
    )
    return opener, proxy


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL urllib would use for ``scheme://host``, honouring NO_PROXY; never for loopback."""
    if _is_loopback(host):
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def _is_loopback(host: str) -> bool:
    return is_loopback_host(host) or host.lower().endswith(".localhost")
