"""What the gateway says of each model: ``GET {gateway_url}{cluster}/models`` (FIRST's model details).

The answer is a bare JSON list of the models this user may use, each ``{"id", "object": "model",
"cluster", "framework", ...}`` plus the keys the deployment allows (typically ``display_name``,
``description``, ``capabilities`` = ``{"schema_version": 1, "api_protocols", "context_window_tokens",
"input_modalities", "streaming", "reasoning": {"supported"}, "tool_calling": {"supported"}}``) and the
tokens-per-minute limits. Older deployments answer 404 for the route: then there is nothing to say,
and discovery goes on without it. Only what the contract names is kept (``CAPABILITY_KEYS``), each
value checked and bounded: the store never holds a deployment's free text beyond a display name.

    endpoints = with_capabilities(gateway_url, token, http.list_endpoints(gateway_url, token))
    endpoints[0].capabilities["gpt-oss-120b"]["context_window_tokens"]   # 131072
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import GatewayError, MetisEnvError
from ...text import shown
from . import http

CAPABILITY_KEYS = (
    "display_name", "context_window_tokens", "tool_calling", "reasoning", "streaming", "api_protocols",
    "input_modalities", "rate_limit_token_per_minute", "rate_limit_token_per_minute_per_user",
)
"""What ``extra.capabilities[model]`` may hold (BRIEF.md's contract), in this order."""
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}\Z")
_MAX_DISPLAY = 120
_MAX_COUNT = 10**9


def with_capabilities(gateway_url: str, token: str, endpoints: Sequence[http.GatewayEndpoint],
                      warn: Callable[[str], None] | None = None, timeout: float = http.DEFAULT_TIMEOUT) -> list[http.GatewayEndpoint]:
    """``endpoints`` with ``capabilities`` filled in from ``{cluster}/models`` where the gateway serves
    it; a cluster whose route answers 404 keeps None, one whose answer cannot be used keeps None with
    a warning (capabilities inform; they never stop a login)."""
    base = gateway_url if gateway_url.endswith("/") else gateway_url + "/"
    filled = []
    for endpoint in endpoints:
        try:
            capabilities = fetch(base, token, endpoint, timeout)
        except MetisEnvError as exc:
            if warn is not None:
                warn(f"model details of {endpoint.id} not read ({exc}); going on without them")
            capabilities = None
        filled.append(endpoint._replace(capabilities=capabilities))
    return filled


def fetch(gateway_url: str, token: str, endpoint: http.GatewayEndpoint, timeout: float = http.DEFAULT_TIMEOUT) -> dict[str, dict] | None:
    """``GET {gateway_url}{cluster}/models`` -> model -> its capabilities, or None where the route is
    not served (404). Raises the gateway client's errors for anything else that is not a list."""
    answer = http.request("GET", f"{gateway_url}{endpoint.id}/models", token, timeout=timeout)
    if answer.status == 404:
        return None
    error = http.classify(answer, f"{endpoint.id}/models")
    if error is not None:
        raise error
    payload = answer.json()
    if not isinstance(payload, list):
        raise GatewayError(f"{answer.url} answered {answer.status} but not with a JSON list ({answer.describe_body()})")
    return parse_models(payload, endpoint.models)


def parse_models(payload: list, models: Sequence[str]) -> dict[str, dict]:
    """The route's list -> {model as list-endpoints spells it: capabilities}, for listed models only
    (matched in any case, as the gateway matches names); entries of another shape are left out."""
    listed = {name.lower(): name for name in models}
    found: dict[str, dict] = {}
    for item in payload:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        name = listed.get(item["id"].lower())
        if name is not None and name not in found:
            found[name] = capabilities_of(item)
    return {name: found[name] for name in models if name in found}


def capabilities_of(item: dict[str, Any]) -> dict[str, Any]:
    """One model's details -> the contract's keys, each present only when the gateway said it plainly."""
    caps = item.get("capabilities") if isinstance(item.get("capabilities"), dict) else {}
    kept: dict[str, Any] = {}
    display = item.get("display_name")
    if isinstance(display, str) and display.strip():
        kept["display_name"] = _one_line(display)
    window = caps.get("context_window_tokens")
    if _count(window):
        kept["context_window_tokens"] = window
    for key in ("tool_calling", "reasoning"):
        value = caps.get(key)
        supported = value.get("supported") if isinstance(value, dict) else value
        if isinstance(supported, bool):
            kept[key] = supported
    if isinstance(caps.get("streaming"), bool):
        kept["streaming"] = caps["streaming"]
    for key in ("api_protocols", "input_modalities"):
        words = caps.get(key)
        if isinstance(words, list) and len(words) <= 16 and all(isinstance(w, str) and _WORD.match(w) for w in words):
            kept[key] = list(words)
    for key in ("rate_limit_token_per_minute", "rate_limit_token_per_minute_per_user"):
        if _count(item.get(key)):
            kept[key] = item[key]
    return kept


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_COUNT


def _one_line(text: str) -> str:
    return shown(" ".join(text.split()), _MAX_DISPLAY)
