"""The ALCF Inference Service gateway half of ``GlobusStandIn``: the routes under ``/resource_server/``.

Shapes and checks follow the gateway's source (auroraGPT-ANL/inference-gateway, GATEWAY.md 3): the
route is matched first (unknown paths get Django's HTML 404), then the bearer token (issued by the
stand-in's auth half, for the inference resource server, live by the stand-in's clock), then the
high-assurance policy, then cluster, maintenance, framework, endpoint and model, in that order.
Errors are ``{"error": {"code", "message", "info"}}``. ``{cluster}/models`` is not in the gateway
snapshot read: its shape here is this stand-in's own guess.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metis_env.sources.gateway.constants import INFERENCE_RESOURCE_SERVER

if TYPE_CHECKING:
    from metis_env.testing.globus_standin import GlobusStandIn, _Handler

DEFAULT_CLUSTERS: dict[str, tuple[str, dict[str, str]]] = {
    "metis": ("api", {"gpt-oss-120b": "Live", "Mistral-Large-3-675B-Instruct-2512": "Live", "gemma-4-31B-it": "Live"}),
    "sophia": ("vllm", {"openai/gpt-oss-120b": "Live", "meta-llama/Meta-Llama-3.1-8B-Instruct": "Offline"}),
}
REPLY = "Hello from the metis-env stand-in gateway."
POLICY_MESSAGE = (
    "Error: Permission denied from internal policies. This is likely due to a high-assurance timeout. "
    "Please logout by visiting https://app.globus.org/logout, and re-authenticate with the following command: "
    "'python3 inference_auth_token.py authenticate --force'. "
    "Make sure you authenticate with an authorized identity provider: anl.gov, alcf.anl.gov."
)
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


def make_clusters(clusters: Mapping[str, tuple[str, Mapping[str, str]]] | None) -> dict[str, dict[str, Any]]:
    """``{name: (framework, {model: status})}`` -> the stand-in's mutable cluster table."""
    source = DEFAULT_CLUSTERS if clusters is None else clusters
    return {name: {"framework": fw, "models": dict(models)} for name, (fw, models) in source.items()}


def _error(h: _Handler, status: int, code: str, message: str, info: Mapping[str, Any] | None = None) -> int:
    return h.send_json(status, {"error": {"code": code, "message": message, "info": dict(info or {})}})


def _slug(text: str) -> str:
    # Django's slugify, as the gateway names its endpoints: "metis api gpt-oss-120b" -> "metis-api-gpt-oss-120b".
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


def route(standin: GlobusStandIn, h: _Handler, method: str, path: str, query: dict[str, str]) -> int:
    """Answer one request for ``/resource_server/<path>``; returns the status sent (0 if none)."""
    parts = path.rstrip("/").split("/")
    if method == "GET" and parts in (["whoami"], ["list-endpoints"]):
        handler = _whoami if parts == ["whoami"] else _list_endpoints
    elif method == "GET" and len(parts) == 2 and parts[1] in ("jobs", "models"):
        handler = _jobs if parts[1] == "jobs" else _models
    elif method == "POST" and len(parts) >= 4 and parts[2] == "v1":
        handler = _inference
    else:
        return h.send_html(404, NOT_FOUND_PAGE)
    if method == "POST":
        h.body()  # read it before answering, so that the connection stays usable
    fault = standin.gateway_fault
    if fault in FAULT_PAGES:  # what a proxy or an SSO page in front of the gateway answers, token or not
        return h.send_html(*FAULT_PAGES[fault])
    refused = _authenticate(standin, h)
    if refused:
        return refused
    if fault == "wrong_shape":  # a gateway that changed its schema
        return h.send_json(200, {"result": ["this is not the shape you expect"], "clusters": None})
    with standin._lock:
        clusters = {name: {"framework": c["framework"], "models": dict(c["models"])} for name, c in standin.clusters.items()}
        maintenance = dict(standin.maintenance)
    return handler(standin, h, parts, query, clusters, maintenance)


def _authenticate(standin: GlobusStandIn, h: _Handler) -> int:
    header = h.headers.get("Authorization")
    if not header:
        return _error(h, 401, "unauthorized", "Missing ('Authorization': 'Bearer <your-access-token>') in request headers.")
    token = h.bearer()
    if token is None:
        return _error(h, 401, "unauthorized", "Auth only allows header type Authorization: Bearer <token>.")
    # Globus introspection says active: false alike for unknown, revoked, expired and foreign tokens.
    h.bearer_ok = (standin.token_status(token) == "valid"
                   and standin.token_resource_server(token) == INFERENCE_RESOURCE_SERVER)
    if not h.bearer_ok:
        return _error(h, 401, "unauthorized", "Token introspection: Token is either not active or invalid")
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


def _whoami(standin: GlobusStandIn, h: _Handler, *_: Any) -> int:
    identity = standin.identity
    return h.send_json(200, {
        "id": identity["sub"], "name": identity["name"], "username": identity["preferred_username"],
        "user_group_uuids": [], "idp_id": identity["identity_provider"],
        "idp_name": identity["identity_provider_display_name"], "auth_service": "globus",
    })


def _list_endpoints(standin: GlobusStandIn, h: _Handler, _parts: Any, _query: Any, clusters: dict[str, Any], _m: Any) -> int:
    return h.send_json(200, {"clusters": {
        name: {"base_url": f"/resource_server/{name}", "frameworks": {
            c["framework"]: {"models": sorted(c["models"]), "endpoints": ["/v1/chat/completions"]}}}
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
        return h.send_json(200, {**answer, "cluster_status": {}})
    for model, status in models.items():
        key = "running" if status == "Live" else "stopped" if status == "Stopped" else "queued"
        answer[key].append(_job(name, framework, model, status))
    answer["cluster_status"] = {
        "cluster": name, "total_models": len(models), "live_models": len(answer["running"]),
        "stopped_models": len(answer["stopped"]),
    }
    return h.send_json(200, answer)


def _models(standin: GlobusStandIn, h: _Handler, parts: list[str], query: dict[str, str], clusters: dict[str, Any], _m: Any) -> int:
    name = parts[0]
    if name not in clusters:
        return _error(h, 404, "cluster_not_found", f"The requested cluster {name!r} does not exist.")
    framework, models = clusters[name]["framework"], clusters[name]["models"]
    wanted = query.get("model_id")
    if wanted is not None and wanted not in models:
        return _error(h, 404, "endpoint_not_found",
                      f"The requested endpoint {_slug(f'{name} {framework} {wanted}')!r} does not exist.")
    return h.send_json(200, {"models": [
        {"model_id": m, "framework": framework, "cluster": name, "status": s, "endpoints": ["/v1/chat/completions"]}
        for m, s in sorted(models.items()) if wanted in (None, m)
    ]})


def _inference(standin: GlobusStandIn, h: _Handler, parts: list[str], _q: Any, clusters: dict[str, Any], maintenance: dict[str, str]) -> int:
    name, framework, endpoint = parts[0], parts[1], "/".join(parts[3:])
    if name not in clusters:
        return _error(h, 404, "cluster_not_found", f"The requested cluster {name!r} does not exist.")
    if name in maintenance:
        return _error(h, 503, "cluster_under_maintenance", maintenance[name])
    if framework != clusters[name]["framework"]:
        return _error(h, 400, "unsupported_framework", f"framework {framework} not available on cluster {name}.")
    if endpoint != "chat/completions":
        return _error(h, 400, "unsupported_endpoint", f"{endpoint!r} not available on cluster {name!r}")
    try:
        body = json.loads(h.body() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error(h, 400, "bad_request", "The request body must be a JSON object with a 'model'.")
    model, models = body["model"], clusters[name]["models"]
    if model not in models:
        return _error(h, 404, "endpoint_not_found", f"The requested endpoint {_slug(f'{name} {framework} {model}')!r} does not exist.")
    if models[model] != "Live":
        return _error(h, 503, "internal_endpoint_error", f"{model!r} is not currently live on {name.capitalize()}.")
    reply, max_tokens = REPLY, body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        reply = " ".join(reply.split(" ")[:max_tokens])
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.get("stream"):
        return _stream(h, completion_id, created, model, reply)
    words = len(reply.split())
    return h.send_json(200, {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                     "finish_reason": "stop" if reply == REPLY else "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": 1 + words},
    })


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
