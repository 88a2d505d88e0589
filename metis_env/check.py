"""Prove that a stored key works: ask the endpoint for its models, as any OpenAI client would.

``check_endpoint`` sends ``GET {base_url}/models`` with the key and returns a ``CheckResult``; it
never raises for what the network or the server does. ``raise_for_result`` turns a failed result into
the matching ``MetisEnvError`` so that the CLI can print the result first and exit with its code.

If ``/models`` answers 404 or 405 (not every deployment serves it), each model listed in the endpoint
file gets a one-token chat completion instead (``max_tokens: 1``): the files list one or two models,
and the point of ``check`` is to say which of them answer. A model answering 200 is served; 400, 404
or 422 means the endpoint refused that model; the check is ``ok`` when at least one model answered.

Standard library only; the requests go through the HTTP floor (``http.py``: verified TLS, the proxy
variables but never for loopback, no redirect followed: the key is sent only to the URL in the
endpoint file).

The key never appears in a result, a message or an exception: text that comes from the server or
from an exception is scrubbed of it before it is kept, and no exception is chained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .http import FAILED, HEADER_SAFE, TIMEOUT, UNREACHABLE, Answer, Client, Scrubber, TransportError, json_request, redact, verified_opener  # noqa: F401  (json_request, redact, verified_opener: re-exported)
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
USER_AGENT = "metis-env-check"

_SYNC_HINT = "the key may have rotated: run `metis-env sync`"


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
    scrub = Scrubber(api_key)
    shown_url = scrub(base_url)
    models = tuple(models)
    result = ResultFactory(endpoint=scrub(endpoint) if endpoint else shown_url, base_url=shown_url, models=models)

    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return result(FAILED, f"BASE_URL {shown_url!r} is not an http(s) URL; run `metis-env sync`")
    if not HEADER_SAFE.match(api_key):
        return result(
            FAILED,
            "the stored key is empty or holds characters an HTTP header cannot carry; run `metis-env sync`",
        )

    client = Client(base_url, api_key, timeout, scrub, USER_AGENT)
    try:
        answer = client.request("GET", "models")
    except TransportError as exc:
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


def _check_by_chat(client: Client, result: ResultFactory, models: tuple[str, ...], models_status: int) -> CheckResult:
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
    first_ok: Answer | None = None
    last: Answer | None = None
    for name in models:
        body = {"model": name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        try:
            answer = client.request("POST", "chat/completions", body)
        except TransportError as exc:
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


def _unauthorized_message(answer: Answer) -> str:
    return f"{answer.url} refused the stored key (HTTP {answer.status}{answer.error_detail(': ')}); {_SYNC_HINT}"


def _unexpected_message(answer: Answer) -> str:
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


class ResultFactory:
    """Builds results for one check, filling in what every outcome shares (the gateway's check uses it too)."""

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


