"""``check`` and ``status`` of a gateway endpoint: ``GET whoami``, then ``GET {cluster}/jobs``, and for
``check`` ``GET {cluster}/models?model_id=`` (the model export would pick).

The gateway has no ``GET …/v1/models``; its ``{cluster}/jobs`` says, per model, whether it is live,
and ``{cluster}/models`` which models this identity may use (an older gateway without that route is
asked nothing more). No chat request is ever sent: a check uses no allocation.
``check_gateway`` returns a ``check.CheckResult`` (never raises for what the network or the gateway
does) whose ``status`` tells apart what the user must do differently:

| answer | status | exit |
|---|---|---|
| whoami 200 and jobs 200, the model export picks is live | ok | 0 |
| … that model is starting, queued or offline | not_live | 21 |
| ``{cluster}/models?model_id=`` answers 404 ``endpoint_not_found`` for that model | failed | 15 |
| jobs 503 ``cluster_under_maintenance``, or every model listed as stopped with no status | maintenance | 21 |
| 401 "Permission denied from internal policies" (high-assurance re-authentication) | reauth_required | 19 |
| 401 "Permission denied. Must authenticate with ..." (an identity provider the gateway does not accept) | identity_not_authorized | 24 |
| any other 401, or 403 | unauthorized | 12 |
| 429, either of the gateway's shapes (requests per second, tokens per minute) | rate_limited | 23 |
| HTML, 5xx, a JSON of the wrong shape, a redirect | gateway_error | 20 |
| no answer | unreachable / timeout | 13 / 14 |

Model words (the gateway's own source, ``clusters/metis.py`` and the qstat function): a JobInfo's
``"Model Status"`` ``running`` -> live, ``starting`` -> starting, ``queued`` (and Metis's other
statuses, which it files under ``queued``) -> queued; ``stopped``, ``disconnected``, ``other`` and a
model no job lists -> offline. A model in several jobs takes its best word. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...check import (
    FAILED,
    GATEWAY_ERROR,
    IDENTITY_NOT_AUTHORIZED,
    MAINTENANCE,
    NOT_LIVE,
    OK,
    RATE_LIMITED,
    REAUTH_REQUIRED,
    UNAUTHORIZED,
    CheckResult,
    _Client,
    _ResultFactory,
    _Scrubber,
    _TransportError,
)
from ...errors import IdentityNotAuthorizedError, LoginRequiredError, NotLiveError, ReauthRequiredError
from ...text import shown
from .http import Answer, classify

PROBE_WHOAMI = "GET /whoami"
LIVE, STARTING, QUEUED, OFFLINE = "live", "starting", "queued", "offline"
_RANK = {LIVE: 0, STARTING: 1, QUEUED: 2, OFFLINE: 3}
_BUCKETS = ("running", "queued", "stopped", "others")  # private batch jobs serve no one else
_WORDS = {"running": LIVE, "starting": STARTING, "queued": QUEUED, "stopped": OFFLINE, "disconnected": OFFLINE, "offline": OFFLINE, "other": OFFLINE}


def gateway_paths(base_url: str) -> tuple[str, str] | None:
    """``{gateway_url}{cluster}/{framework}/v1/`` -> (``{gateway_url}``, ``{cluster}``), else None."""
    parts = base_url.rstrip("/").split("/")
    if len(parts) < 6 or parts[-1] != "v1" or not parts[-2] or not parts[-3]:
        return None
    return "/".join(parts[:-3]) + "/", parts[-3]


def check_gateway(stored: Any, token: str, timeout: float = 10.0, wanted: str | None = None) -> CheckResult:
    """Check gateway endpoint ``stored`` (a StoredEndpoint) with access token ``token``.

    ``wanted`` is the model export would pick: check is ``not_live`` when it is not live; None
    (``status``) only reports. The result carries the capabilities discovery stored, for ``status``.
    """
    import dataclasses

    result = _check(stored, token, timeout, wanted)
    capabilities = stored_capabilities(stored)
    return dataclasses.replace(result, capabilities=capabilities) if capabilities else result


def stored_capabilities(stored: Any) -> dict[str, dict]:
    """``extra.capabilities`` of a stored gateway endpoint, or {} (older stores and gateways)."""
    extra = stored.extra if isinstance(stored.extra, dict) else {}
    capabilities = extra.get("capabilities")
    if not isinstance(capabilities, dict):
        return {}
    return {name: caps for name, caps in capabilities.items() if isinstance(name, str) and isinstance(caps, dict)}


def _check(stored: Any, token: str, timeout: float, wanted: str | None) -> CheckResult:
    scrub = _Scrubber(token)
    models = tuple(stored.models)
    result = _ResultFactory(endpoint=stored.id, base_url=scrub(stored.base_url), models=models)
    paths = gateway_paths(stored.base_url)
    if paths is None:
        return result(GATEWAY_ERROR, f"{scrub(stored.base_url)!r} is not a gateway URL ({{gateway_url}}CLUSTER/FRAMEWORK/v1/); run `metis-env sync --gateway`")
    root, cluster = paths
    client = _Client(root, token, timeout, scrub)

    try:
        who = client.request("GET", "whoami")
    except _TransportError as exc:
        return result(exc.status, exc.message, probe=PROBE_WHOAMI)
    refused = _refusal(who, "whoami")
    if refused is not None:
        return result(*refused, http_status=who.status, probe=PROBE_WHOAMI)
    identity = _identity(who.body)
    if identity is None:
        return result(GATEWAY_ERROR, f"{who.url} answered 200 but not with the gateway's user record ({who.describe_body()}); is gateway_url right?", http_status=200, probe=PROBE_WHOAMI)

    try:
        jobs = client.request("GET", f"{cluster}/jobs")
    except _TransportError as exc:
        return result(exc.status, exc.message, probe=f"GET /{cluster}/jobs")
    refused = _refusal(jobs, f"{cluster}/jobs")
    if refused is not None:
        status, message = refused
        offline = {name: OFFLINE for name in models} if status == MAINTENANCE else None
        return _with_states(result(status, message, http_status=jobs.status, probe=f"GET /{cluster}/jobs"), offline)
    try:
        states, maintenance = model_states(_as_json(jobs.body), models)
    except ValueError as exc:
        return result(GATEWAY_ERROR, f"{jobs.url} answered 200 but {exc}; is gateway_url right?", http_status=200, probe=f"GET /{cluster}/jobs")

    # Names of {cluster}/jobs are the gateway's words: escaped, so that none can drive the terminal or forge a line.
    words = ", ".join(f"{shown(name)} {state}" for name, state in states.items()) or "no models listed"
    head = f"signed in as {identity}; "
    offered = None if maintenance or wanted is None else _offered(client, cluster, wanted)
    if offered is False:
        old_name = "" if wanted in models else " (an old name the gateway reroutes cannot be told from here)"
        return _with_states(result(
            FAILED,
            f"{head}{words}; {shown(wanted)} (what export picks) is not a model {cluster}/models offers this identity"
            f"{old_name}: pick another with --model, or run `metis-env sync --gateway`",
            http_status=404, probe=f"GET /{cluster}/models",
        ), states)
    if maintenance:
        status, message = MAINTENANCE, f"{head}cluster {cluster} is under maintenance (every model listed as stopped); try later"
    elif wanted is not None and states.get(wanted, OFFLINE) != LIVE:
        status = NOT_LIVE
        message = f"{head}{words}; {shown(wanted)} (what export picks) is not live: see `metis-env status {stored.id}`"
    else:
        status, message = OK, f"{head}{words}"
    served = {name: state == LIVE for name, state in states.items()}
    return _with_states(
        result(status, message, http_status=200, latency_ms=who.latency_ms + jobs.latency_ms, probe=f"GET /{cluster}/jobs", models=served),
        states,
    )


def _offered(client: Any, cluster: str, model: str) -> bool | None:
    """Does ``{cluster}/models?model_id=`` offer ``model`` to this identity? None when it cannot say
    (an older gateway without the route, or any other answer): the jobs' answer stands then."""
    from urllib.parse import quote

    try:
        answer = client.request("GET", f"{cluster}/models?model_id={quote(model, safe='')}")
    except _TransportError:
        return None
    payload = _as_json(answer.body)
    if answer.status == 200 and isinstance(payload, list):
        return any(isinstance(item, dict) and item.get("id") == model for item in payload)
    if answer.status == 404 and isinstance(payload, dict):
        code = Answer(answer.url, answer.status, answer.body, answer.content_type, answer.location).error_fields()[0]
        return False if code == "endpoint_not_found" else None
    return None


def model_states(payload: Any, models: Sequence[str]) -> tuple[dict[str, str], bool]:
    """A ``{cluster}/jobs`` answer -> ({model: word} for the stored models, then any other listed
    model; whether the cluster is under maintenance). ValueError names what is wrong with its shape."""
    if not isinstance(payload, dict):
        raise ValueError("not with a JSON object")
    best: dict[str, str] = {}
    described = False
    for bucket in _BUCKETS:
        jobs = payload.get(bucket, [])
        if not isinstance(jobs, list):
            raise ValueError(f"its {bucket!r} is not a list")
        for job in jobs:
            if not isinstance(job, dict) or not isinstance(job.get("Models"), str):
                raise ValueError(f"an entry of {bucket!r} is not a job with \"Models\"")
            word = job.get("Model Status")
            described = described or word is not None
            state = _WORDS.get(str(word).lower(), _bucket_state(bucket)) if word is not None else _bucket_state(bucket)
            for name in (n.strip() for n in job["Models"].split(",")):
                if name and (name not in best or _RANK[state] < _RANK[best[name]]):
                    best[name] = state
    # During maintenance the gateway lists every model under "stopped" with no "Model Status" and
    # nothing else (views/core.py get_jobs).
    stopped = payload.get("stopped") or []
    others = any(payload.get(b) for b in _BUCKETS if b != "stopped")
    maintenance = bool(stopped) and not described and not others
    states = {name: best.get(name, OFFLINE) for name in models}
    states.update((name, state) for name, state in best.items() if name not in states)
    return states, maintenance


def _bucket_state(bucket: str) -> str:
    return {"running": LIVE, "queued": QUEUED}.get(bucket, OFFLINE)


def _refusal(answer: Any, what: str) -> tuple[str, str] | None:
    """(status, message) for an answer that is not a 2xx, worded by the gateway client's classifier."""
    if 200 <= answer.status < 300:
        return None
    if answer.status == 429:  # {"detail": "Too many requests."} or {"error": {"code": "too_many_requests", ...}}
        said = Answer(answer.url, answer.status, answer.body, answer.content_type, answer.location).error_fields()[1]
        return RATE_LIMITED, (
            f"rate-limited by the gateway ({what}: HTTP 429{': ' + said if said else ''}); this user's requests per "
            "second or tokens per minute are used up for now: wait a minute, or send fewer requests at once"
        )
    error = classify(Answer(answer.url, answer.status, answer.body, answer.content_type, answer.location), what)
    if isinstance(error, ReauthRequiredError):
        return REAUTH_REQUIRED, str(error)
    if isinstance(error, IdentityNotAuthorizedError):
        return IDENTITY_NOT_AUTHORIZED, str(error)
    if isinstance(error, LoginRequiredError):
        return UNAUTHORIZED, str(error)
    if answer.status == 403:
        return UNAUTHORIZED, f"{str(error)}; the gateway does not let this Globus identity use it (ask ALCF support)"
    if isinstance(error, NotLiveError):
        code = Answer(answer.url, answer.status, answer.body, answer.content_type, answer.location).error_fields()[0]
        return (MAINTENANCE if code == "cluster_under_maintenance" else NOT_LIVE), str(error)
    return GATEWAY_ERROR, str(error)


def _identity(body: bytes) -> str | None:
    payload = _as_json(body)
    if not isinstance(payload, dict):
        return None
    for name in ("username", "name", "id"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return _Scrubber("")(value, 80)
    return None


def _as_json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


def _with_states(result: CheckResult, states: dict[str, str] | None) -> CheckResult:
    import dataclasses

    return dataclasses.replace(result, model_status=dict(states)) if states is not None else result
