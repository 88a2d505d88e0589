"""The ALCF Inference Service gateway half of ``GlobusStandIn``: the routes under ``/resource_server/``.

Shapes and checks follow the gateway's source, argonne-lcf/FIRST at 329c0cd (GATEWAY.md 6):

- the route is matched first (unknown paths get Django's HTML 404); ``health`` and ``status`` need no
  token; every other route wants ``Authorization: Bearer <token>``: no header at all is django-ninja's
  ``{"detail": "Error: Missing (...)"}``, another scheme or a malformed header the gateway's own
  ``{"error": {"code": "unauthorized", ...}}`` (``auth.validate_access_token``);
- a token Globus calls inactive is refused with "Token is either not active or invalid", and that
  refusal is cached for 60 s per token (``auth.introspect_token``): meanwhile the answer is
  "Token introspection: Token is either not active or invalid"; a good check is cached too, for
  ``min(600, the token's life left)`` when ``GatewayState.checked_ttl`` is 600 (a token revoked
  meanwhile, at a logout, is still accepted);
- a POST body that is not JSON is 400 ``{"detail": "Cannot parse request body"}``, JSON that is not an
  object 422 ``{"detail": [...]}`` (django-ninja's validation); a chat body without a string ``model``
  or ``messages`` is 422 ``invalid_request`` "Invalid FIRST control fields." (FIRST #279: unknown
  fields are passed on to the backend, FIRST's reserved ones are refused);
- then cluster, maintenance, framework, route (the cluster's ``openai_endpoints``), endpoint and
  model, in that order. Model names match in any case (endpoint slugs are
  ``slugify(f"{cluster} {framework} {model.lower()}")``) and ``GatewayState.alias`` reroutes an old
  name to a new one, as ``LEGACY_ENDPOINT_SLUG_MAPPING`` does; the answer names the model as served;
- ``GET {cluster}/models[?model_id=]`` is a bare JSON list of model details (``id``, ``object``,
  ``cluster``, ``framework``, the allow-listed ``display_name``, ``description``, ``capabilities``,
  and the tokens-per-minute limits), sorted by name in any case; ``model_id`` matches exactly, an
  unknown one is 404 ``endpoint_not_found``; ``GatewayState.models_route = False`` plays an older
  deployment, which answers Django's 404 page for the route;
- ``POST {cluster}/{framework}/v1/messages`` is Anthropic's Messages API (gateway_messages.py: its
  schema, the streamed events, what each request carried in ``GatewayState.messages``);
- JSON answers carry ``application/json; charset=utf-8``; errors are ``{"error": {"code", "message", "info"}}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metis_env.alcf import INFERENCE_RESOURCE_SERVER
from metis_env.testing import gateway_messages

if TYPE_CHECKING:
    from metis_env.testing.globus_standin import GlobusStandIn, Handler as _Handler

# The routes each cluster serves (its ``openai_endpoints``), as ALCF's docs list them.
DEFAULT_ROUTES = ("chat/completions",)
ROUTES = {
    "metis": ("chat/completions",),
    "sophia": ("chat/completions", "completions", "embeddings", "responses", "messages", "batches"),
    "minerva": ("chat/completions", "responses", "messages", "completions"),
    "tara": ("chat/completions", "responses"),
}
DEFAULT_CLUSTERS: dict[str, tuple[str, dict[str, str]]] = {
    "metis": ("api", {"gpt-oss-120b": "Live", "Mistral-Large-3-675B-Instruct-2512": "Live", "gemma-4-31B-it": "Live"}),
    "sophia": ("vllm", {"openai/gpt-oss-120b": "Live", "meta-llama/Meta-Llama-3.1-8B-Instruct": "Offline"}),
}
ALL_CLUSTERS: dict[str, tuple[str, dict[str, str]]] = {
    **DEFAULT_CLUSTERS,
    "minerva": ("api", {"openai/gpt-oss-120b": "Live", "Qwen/Qwen3-32B": "Live"}),
    "tara": ("api", {"meta-llama/Llama-3.3-70B-Instruct": "Live"}),
}
"""Every cluster ALCF's gateway lists today (``tara`` through the bridge to its next version)."""
# What FIRST's endpoint routes accept (views/openai.py, views/anthropic.py); any other path is a 404 page.
INFERENCE_ROUTES = ("chat/completions", "completions", "embeddings", "responses", "messages")
RESERVED_FIELDS = ("api_port", "cache_salt", "openai_endpoint", "stream_task_id", "stream_task_token")
JSON_TYPE = "application/json; charset=utf-8"
FAILED_INTROSPECTION_TTL = 60.0
REPLY = "Hello from the metis-env stand-in gateway."
POLICY_MESSAGE = (
    "Error: Permission denied from internal policies. This is likely due to a high-assurance timeout. "
    "Please logout by visiting https://app.globus.org/logout, and re-authenticate with the following command: "
    "'python3 inference_auth_token.py authenticate --force'. "
    "Make sure you authenticate with an authorized identity provider: anl.gov, alcf.anl.gov."
)
MISSING_HEADER = "Error: Missing ('Authorization': 'Bearer <your-access-token>') in request headers."
NOT_ACTIVE = "Token is either not active or invalid"
AUTHORIZED_IDP_DOMAINS = "anl.gov, alcf.anl.gov"


def idp_message(user: str) -> str:
    """FIRST's auth.check_session_info refusal, word for word (argonne-lcf/FIRST 329c0cd); ``user`` is
    ``"Name (username)"``, or ``"Unknown (no active session found)"`` for a token with no session (a
    service account the gateway has not allow-listed)."""
    return (
        f"Error: Permission denied. Must authenticate with {AUTHORIZED_IDP_DOMAINS}. "
        f"Currently authenticated as {user}. "
        "If you are passing an access token directly to this API, "
        "please logout from Globus by visiting https://app.globus.org/logout "
        "and re-authenticate with the following command: "
        "'python3 inference_auth_token.py authenticate --force'."
    )


NOT_FOUND_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    "  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)
FAULT_PAGES = {
    "html": (200, "<html><head><title>Sign in</title></head><body><h1>Argonne sign-in</h1></body></html>"),
    "5xx": (502, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
                 "</center><hr><center>nginx</center></body></html>"),
}


class GatewayState:
    """The gateway's own state beside the clusters: model details, aliases, the introspection cache.

    ``details[(cluster, model)]`` overrides a model's details in ``{cluster}/models`` (default: a
    display name, a description and capabilities guessed from the name, plus tokens-per-minute
    limits); ``models_route = False``: an older deployment without ``{cluster}/models``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.models_route = True
        self.details: dict[tuple[str, str], dict[str, Any]] = {}
        self.legacy: dict[str, str] = {}  # endpoint slug -> endpoint slug
        self.failed: dict[str, float] = {}  # sha256 of a token -> until when its refusal is cached
        self.checked: dict[str, float] = {}  # sha256 of a token -> until when its good check is cached
        self.checked_ttl = 0.0
        """Seconds FIRST keeps a good introspection (``min(600, the token's life left)``, auth.introspect_token):
        meanwhile a revoked token is still accepted. 600 plays FIRST; 0, the default, checks every request,
        so that a test that revokes a token sees it refused at once."""
        self.messages: list[gateway_messages.MessagesRequest] = []  # what reached /v1/messages past authentication

    def alias(self, cluster: str, framework: str, old: str, new: str) -> None:
        """Reroute requests for model ``old`` to model ``new`` (LEGACY_ENDPOINT_SLUG_MAPPING)."""
        with self.lock:
            self.legacy[endpoint_slug(cluster, framework, old)] = endpoint_slug(cluster, framework, new)


def make_clusters(clusters: Mapping[str, tuple[Any, ...]] | None) -> dict[str, dict[str, Any]]:
    """``{name: (framework, {model: status}[, routes])}`` -> the stand-in's mutable cluster table;
    ``routes`` (e.g. ``("chat/completions", "responses")``) defaults to what ALCF lists for the name."""
    source = DEFAULT_CLUSTERS if clusters is None else clusters
    table = {}
    for name, (fw, models, *routes) in source.items():
        served = tuple(routes[0]) if routes else ROUTES.get(name, DEFAULT_ROUTES)
        table[name] = {"framework": fw, "models": dict(models), "routes": served}
    return table


def endpoint_slug(cluster: str, framework: str, model: str) -> str:
    """Django's slugify of ``f"{cluster} {framework} {model.lower()}"``, as the gateway names endpoints."""
    text = re.sub(r"[^\w\s-]", "", f"{cluster} {framework} {model.lower()}".lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


def model_details(cluster: str, framework: str, model: str, routes: tuple[str, ...]) -> dict[str, Any]:
    """What a deployment's allow-listed config says of a model, guessed from its name and cluster."""
    lowered = model.lower()
    protocols = [p for p, r in (("chat_completions", "chat/completions"), ("responses", "responses"),
                                ("completions", "completions"), ("anthropic_messages", "messages")) if r in routes]
    return {
        "id": model, "object": "model", "cluster": cluster, "framework": framework,
        "display_name": model.rsplit("/", 1)[-1], "description": f"{model} served by the metis-env stand-in",
        "capabilities": {
            "schema_version": 1, "api_protocols": protocols,
            "context_window_tokens": 262144 if "mistral-large" in lowered else 131072,
            "input_modalities": ["text", "image"] if "gemma" in lowered else ["text"], "streaming": True,
            "reasoning": {"supported": "gpt-oss" in lowered or "qwen3" in lowered, "separate_output": "gpt-oss" in lowered},
            "tool_calling": {"supported": cluster != "metis"},
        },
        "rate_limit_token_per_minute": 2000000,
        "rate_limit_token_per_minute_per_user": 200000,
    }


def _send(h: _Handler, status: int, payload: Any) -> int:
    return h.send_bytes(status, json.dumps(payload).encode(), JSON_TYPE)


def _error(h: _Handler, status: int, code: str, message: str, info: Mapping[str, Any] | None = None) -> int:
    return _send(h, status, {"error": {"code": code, "message": message, "info": dict(info or {})}})


def _state(standin: GlobusStandIn) -> GatewayState:
    return standin.gateway


def route(standin: GlobusStandIn, h: _Handler, method: str, path: str, query: dict[str, str]) -> int:
    """Answer one request for ``/resource_server/<path>``; returns the status sent (0 if none)."""
    parts = path.rstrip("/").split("/")
    public = method == "GET" and parts in (["health"], ["status"])
    if public or (method == "GET" and parts in (["whoami"], ["list-endpoints"])):
        handler = {"health": _health, "status": _status, "whoami": _whoami, "list-endpoints": _list_endpoints}[parts[0]]
    elif method == "GET" and len(parts) == 2 and parts[1] == "jobs":
        handler = _jobs
    elif method == "GET" and len(parts) == 2 and parts[1] == "models" and _state(standin).models_route:
        handler = _models
    elif method == "POST" and len(parts) >= 4 and parts[2] == "v1" and "/".join(parts[3:]) in INFERENCE_ROUTES:
        handler = _inference
    else:
        return h.send_html(404, NOT_FOUND_PAGE)
    if method == "POST":
        h.body()  # read it before answering, so that the connection stays usable
    fault = standin.gateway_fault
    if fault in FAULT_PAGES:  # what a proxy or an SSO page in front of the gateway answers, token or not
        return h.send_html(*FAULT_PAGES[fault])
    if not public:
        refused = _authenticate(standin, h)
        if refused:
            return refused
    # FIRST's AuthRateThrottle (per user) and AnonRateThrottle (10/s), django-ninja's: no Retry-After
    throttle = throttle_of(standin)
    counted = throttle.every_route or handler is _inference
    if counted and not throttle.allow_request("anonymous" if public else standin.identity["sub"]):
        return _send(h, 429, {"detail": "Too many requests."})
    if fault == "wrong_shape":  # a gateway that changed its schema
        return _send(h, 200, {"result": ["this is not the shape you expect"], "clusters": None})
    with standin._lock:
        clusters = {name: {**c, "models": dict(c["models"])} for name, c in standin.clusters.items()}
        maintenance = dict(standin.maintenance)
    return handler(standin, h, parts, query, clusters, maintenance)


def _authenticate(standin: GlobusStandIn, h: _Handler) -> int:
    header = h.headers.get("Authorization")
    if not header:  # GlobalAuth.__call__ raises django-ninja's HttpError
        return _send(h, 401, {"detail": MISSING_HEADER})
    words = header.split()
    if len(words) != 2:
        return _error(h, 401, "unauthorized", "Auth only allows header type Authorization: Bearer <token>.")
    if words[0] != "Bearer":  # raised inside the gateway's own try block, and re-raised by its `except Exception`
        return _error(h, 401, "unauthorized", "Something went wrong while reading headers. Authorization type should be Bearer.")
    token = words[1]
    state, key, now = _state(standin), hashlib.sha256(token.encode()).hexdigest(), time.monotonic()
    with state.lock:
        cached = state.failed.get(key, 0.0) > now
        checked = state.checked.get(key, 0.0) > now
    if cached:
        h.bearer_ok = False
        return _error(h, 401, "unauthorized", f"Token introspection: {NOT_ACTIVE}")
    if checked:  # FIRST asks Globus nothing: a token revoked since passes, one past its exp does not
        h.bearer_ok = True
        if (standin.token_expires_at(token) or 0.0) <= standin.now():
            return _error(h, 401, "unauthorized", "Access token expired.")
    else:
        # Globus introspection says active: false alike for unknown, revoked, expired and foreign tokens.
        h.bearer_ok = (standin.token_status(token) == "valid"
                       and standin.token_resource_server(token) == INFERENCE_RESOURCE_SERVER)
        if not h.bearer_ok:
            with state.lock:
                state.failed[key] = now + FAILED_INTROSPECTION_TTL
            return _error(h, 401, "unauthorized", NOT_ACTIVE)
        left = (standin.token_expires_at(token) or 0.0) - standin.now()
        with state.lock:
            if state.checked_ttl > 0 and left > 0:
                state.checked[key] = now + min(state.checked_ttl, left)
    client = standin.token_client(token)
    if client in standin.service_accounts:  # FIRST: an allow-listed service account skips the IdP and policy checks
        if client in standin.allow_listed:
            return 0
        return _error(h, 401, "unauthorized", idp_message("Unknown (no active session found)"))
    if not standin.idp_ok:  # FIRST checks the session's identity provider before the policies
        return _error(h, 401, "unauthorized", idp_message(f"{standin.identity['name']} ({standin.identity['preferred_username']})"))
    if not standin.policy_ok:
        return _error(h, 401, "unauthorized", POLICY_MESSAGE)
    return 0


def _health(standin: GlobusStandIn, h: _Handler, *_: Any) -> int:
    return _send(h, 200, {"status": "ok"})


def _status(standin: GlobusStandIn, h: _Handler, _p: Any, _q: Any, clusters: dict[str, Any], maintenance: dict[str, str]) -> int:
    return _send(h, 200, {name: name not in maintenance for name in clusters})


def _whoami(standin: GlobusStandIn, h: _Handler, *_: Any) -> int:
    identity = standin.identity
    return _send(h, 200, {
        "id": identity["sub"], "name": identity["name"], "username": identity["preferred_username"],
        "user_group_uuids": [], "idp_id": identity["identity_provider"],
        "idp_name": identity["identity_provider_display_name"], "auth_service": "globus",
    })


def _list_endpoints(standin: GlobusStandIn, h: _Handler, _parts: Any, _query: Any, clusters: dict[str, Any], _m: Any) -> int:
    return _send(h, 200, {"clusters": {
        name: {"base_url": f"/resource_server/{name}", "frameworks": {
            c["framework"]: {"models": sorted(c["models"]), "endpoints": [f"/v1/{r}" for r in c["routes"]]}}}
        for name, c in clusters.items()
    }})


def _job(cluster: str, framework: str, model: str, status: str) -> dict[str, str]:
    return {
        "Models": model, "Framework": framework, "Cluster": cluster,
        "Model Status": "running" if status == "Live" else status.lower(),
        "Description": f"{model} - served by the metis-env stand-in", "Model Version": "1",
    }


def _jobs(standin: GlobusStandIn, h: _Handler, parts: list[str], _q: Any, clusters: dict[str, Any], maintenance: dict[str, str]) -> int:
    name = parts[0]
    if name not in clusters:
        return _error(h, 404, "cluster_not_found", f"The requested cluster {name!r} does not exist.")
    framework, models = clusters[name]["framework"], clusters[name]["models"]
    answer: dict[str, Any] = {key: [] for key in ("running", "queued", "stopped", "others",
                                                   "private_batch_running", "private_batch_queued")}
    if name in maintenance:  # the gateway lists every model as stopped, with no cluster_status
        answer["stopped"] = [{"Models": m, "Framework": framework, "Cluster": name} for m in sorted(models)]
        return _send(h, 200, {**answer, "cluster_status": {}})
    for model, status in models.items():
        key = "running" if status == "Live" else "stopped" if status == "Stopped" else "queued"
        answer[key].append(_job(name, framework, model, status))
    answer["cluster_status"] = {
        "cluster": name, "total_models": len(models), "live_models": len(answer["running"]),
        "stopped_models": len(answer["stopped"]),
    }
    return _send(h, 200, answer)


def _models(standin: GlobusStandIn, h: _Handler, parts: list[str], query: dict[str, str], clusters: dict[str, Any], _m: Any) -> int:
    name = parts[0]
    if name not in clusters:
        return _error(h, 404, "cluster_not_found", f"The requested cluster {name!r} does not exist.")
    framework, routes = clusters[name]["framework"], clusters[name]["routes"]
    state = _state(standin)
    with state.lock:
        overrides = dict(state.details)
    details = [overrides.get((name, m)) or model_details(name, framework, m, routes)
               for m in sorted(clusters[name]["models"], key=str.lower)]
    wanted = query.get("model_id")
    if wanted is None:
        return _send(h, 200, details)
    chosen = [d for d in details if d["id"] == wanted]  # views/core.py: `endpoint.model == model_id`
    if not chosen:
        return _error(h, 404, "endpoint_not_found", f"{wanted} model not found on cluster {name}.")
    return _send(h, 200, chosen)


def _served_model(standin: GlobusStandIn, cluster: str, framework: str, models: Mapping[str, str], asked: str) -> str | None:
    """The model a request for ``asked`` reaches (any case; an old name through the alias table)."""
    state = _state(standin)
    slug = endpoint_slug(cluster, framework, asked)
    with state.lock:
        slug = state.legacy.get(slug, slug)
    by_slug = {endpoint_slug(cluster, framework, m): m for m in models}
    return by_slug.get(slug)


def _inference(standin: GlobusStandIn, h: _Handler, parts: list[str], _q: Any, clusters: dict[str, Any], maintenance: dict[str, str]) -> int:
    status = _answer_inference(standin, h, parts, clusters, maintenance)
    if "/".join(parts[3:]) == gateway_messages.ROUTE:  # what reached the Messages route, for tests to read
        try:
            body = json.loads(h.body())
        except ValueError:
            body = None
        if isinstance(body, dict):
            cluster = clusters.get(parts[0])
            asked = body.get("model")
            model = (_served_model(standin, parts[0], parts[1], cluster["models"], asked)
                     if cluster and isinstance(asked, str) and asked else None)
            with _state(standin).lock:
                _state(standin).messages.append(gateway_messages.record_for(parts[0], h.headers, body, model, status))
    return status


def _answer_inference(standin: GlobusStandIn, h: _Handler, parts: list[str], clusters: dict[str, Any], maintenance: dict[str, str]) -> int:
    name, framework, endpoint = parts[0], parts[1], "/".join(parts[3:])
    raw = h.body()
    if not raw:
        return _send(h, 422, {"detail": [{"type": "missing", "loc": ["body", "payload"], "msg": "Field required"}]})
    try:
        body = json.loads(raw)
    except ValueError:
        return _send(h, 400, {"detail": "Cannot parse request body"})
    if not isinstance(body, dict):
        return _send(h, 422, {"detail": [{"type": "dict_type", "loc": ["body", "payload"], "msg": "Input should be a valid dictionary"}]})
    if endpoint == gateway_messages.ROUTE:  # a pydantic schema of its own (extra fields allowed): django-ninja's 422
        problems = gateway_messages.validation_errors(body)
        if problems:
            return _send(h, 422, {"detail": problems})
    else:
        reserved = sorted(set(RESERVED_FIELDS).intersection(body))
        if reserved:
            return _error(h, 422, "invalid_request", "FIRST-reserved request fields are not accepted.", {"fields": reserved})
        problems = _control_errors(body, endpoint)
        if problems:
            return _error(h, 422, "invalid_request", "Invalid FIRST control fields.", {"errors": problems})
    if name not in clusters:
        return _error(h, 404, "cluster_not_found", f"The requested cluster {name!r} does not exist.")
    if name in maintenance:
        return _error(h, 503, "cluster_under_maintenance", maintenance[name])
    if framework != clusters[name]["framework"]:
        return _error(h, 400, "unsupported_framework", f"framework {framework} not available on cluster {name}.")
    if endpoint not in clusters[name]["routes"] or endpoint not in ("chat/completions", gateway_messages.ROUTE):
        return _error(h, 400, "unsupported_endpoint", f"{endpoint!r} not available on cluster {name!r}")  # the stand-in chats and messages only
    models = clusters[name]["models"]
    model = _served_model(standin, name, framework, models, body["model"])
    if model is None:
        return _error(h, 404, "endpoint_not_found",
                      f"The requested endpoint {endpoint_slug(name, framework, body['model'])!r} does not exist.")
    if endpoint == gateway_messages.ROUTE and body.get("stream") is True and name in gateway_messages.GLOBUS_COMPUTE_CLUSTERS:
        return _error(h, 400, "unsupported_endpoint", gateway_messages.STREAMING_REFUSED)
    if models[model] != "Live":
        return _error(h, 503, "internal_endpoint_error", f"{model!r} is not currently live on {name.capitalize()}.")
    limits, user = throttle_of(standin), standin.identity["sub"]
    usage = limits.token_usage(f"{name}/{model}", user)
    if usage is not None:
        return _error(h, 429, "too_many_requests", "Tokens/minute limit exceeded",
                      {"global_model_usage": usage[0], "user_model_usage": usage[1]})
    if endpoint == gateway_messages.ROUTE:
        limits.record_tokens(f"{name}/{model}", user, 1 + len(gateway_messages.reply_and_stop(REPLY, body["max_tokens"])[0].split()))
        return gateway_messages.send(h, body, model, REPLY)
    reply, max_tokens = REPLY, body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        reply = " ".join(reply.split(" ")[:max_tokens])
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    limits.record_tokens(f"{name}/{model}", user, 1 + len(reply.split()))
    if body.get("stream"):
        return _stream(h, completion_id, created, model, reply)
    words = len(reply.split())
    return _send(h, 200, {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                     "finish_reason": "stop" if reply == REPLY else "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": 1 + words},
    })


def _control_errors(body: dict[str, Any], endpoint: str) -> list[dict[str, str]]:
    """What FIRST's strict control model (schemas/openai_control.py) says of the fields it reads."""
    errors = []
    model = body.get("model")
    if "model" not in body:
        errors.append({"field": "model", "message": "Field required", "type": "missing"})
    elif not isinstance(model, str):
        errors.append({"field": "model", "message": "Input should be a valid string", "type": "string_type"})
    elif not model:
        errors.append({"field": "model", "message": "String should have at least 1 character", "type": "string_too_short"})
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        errors.append({"field": "stream", "message": "Input should be a valid boolean", "type": "bool_type"})
    if endpoint in ("chat/completions", "messages"):
        if "messages" not in body:
            errors.append({"field": "messages", "message": "Field required", "type": "missing"})
        elif not isinstance(body["messages"], list) or not all(isinstance(m, dict) for m in body["messages"]):
            errors.append({"field": "messages", "message": "Input should be a valid list", "type": "list_type"})
    return errors


def _stream(h: _Handler, completion_id: str, created: int, model: str, reply: str) -> int:
    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        event = b"data: " + json.dumps(data).encode() + b"\n\n"
        return b"%x\r\n%s\r\n" % (len(event), event)

    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Cache-Control", "no-cache")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    words = reply.split(" ")
    h.wfile.write(chunk({"role": "assistant", "content": ""}, None))
    for i, word in enumerate(words):
        h.wfile.write(chunk({"content": word if i == 0 else " " + word}, None))
        h.wfile.flush()
    h.wfile.write(chunk({}, "stop" if reply == REPLY else "length"))
    h.wfile.write(b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n"))
    h.wfile.flush()
    return 200


# --- rate limits, as FIRST applies them ------------------------------------------------------------------


class Throttle:
    """FIRST's two limits (resource_server_async/api.py and endpoints/endpoint.py, read at 329c0cd).

    ``per_second`` (default 10, FIRST's RATE_LIMIT_PER_SEC_PER_USER): django-ninja's AuthRateThrottle,
    a sliding window of one second over the requests it allowed (a refused request is not counted),
    per user, on every route of the API (``api.throttle``: inference, list-endpoints, models; and
    AnonRateThrottle's 10/s where there is no user); over it, 429 ``{"detail": "Too many requests."}``.
    ``tokens_per_minute``: ``{"cluster/model": (per model, per user)}`` (0: no limit), counters that
    start at a model's first use and expire 60 s later; at or over either, 429 with
    ``{"error": {"code": "too_many_requests", "message": "Tokens/minute limit exceeded", "info": ...}}``.
    Neither answer has ``Retry-After``. ``refused`` counts the 429s sent, ``allowed`` the requests let through.
    ``every_route=False`` counts inference requests only (FIRST counts every route).
    """

    def __init__(self, per_second: float | None = 10, clock=time.monotonic, every_route: bool = True) -> None:
        self.per_second = per_second
        self.every_route = every_route
        self.tokens_per_minute: dict[str, tuple[int, int]] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._history: dict[str, list[float]] = {}
        self._tokens: dict[str, tuple[float, int]] = {}
        self.allowed = 0
        self.refused = 0

    def allow_request(self, user: str) -> bool:
        with self._lock:
            if not self.per_second:
                self.allowed += 1
                return True
            now = self._clock()
            history = self._history.setdefault(user, [])
            while history and history[-1] <= now - 1.0:
                history.pop()
            if len(history) >= self.per_second:
                self.refused += 1
                return False
            history.insert(0, now)
            self.allowed += 1
            return True

    def token_usage(self, model: str, user: str) -> tuple[int, int] | None:
        """None when ``user`` may use ``model`` now; else (the model's usage, the user's) this minute."""
        with self._lock:
            limit_model, limit_user = self.tokens_per_minute.get(model, (0, 0))
            used_model, used_user = self._used(model), self._used(f"{model}:{user}")
            if (limit_model and used_model >= limit_model) or (limit_user and used_user >= limit_user):
                self.refused += 1
                return used_model, used_user
            return None

    def record_tokens(self, model: str, user: str, tokens: int) -> None:
        with self._lock:
            now = self._clock()
            for key in (model, f"{model}:{user}"):
                started, used = self._tokens.get(key, (now, 0))
                if now - started >= 60.0:
                    started, used = now, 0
                self._tokens[key] = (started, used + tokens)

    def _used(self, key: str) -> int:
        started, used = self._tokens.get(key, (0.0, 0))
        return used if self._clock() - started < 60.0 else 0


_THROTTLE_LOCK = threading.Lock()


def throttle_of(standin: GlobusStandIn) -> Throttle:
    """The stand-in's throttle: ``standin.throttle``, set here on first use unless a test set its own."""
    with _THROTTLE_LOCK:
        if getattr(standin, "throttle", None) is None:
            standin.throttle = Throttle()
        return standin.throttle
