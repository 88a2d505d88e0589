"""Model details from the gateway's ``{cluster}/models`` (sources/gateway/models.py), against the
Globus/gateway stand-in and against the shapes a deployment may answer."""

from __future__ import annotations

import pytest

from metis_env.sources.gateway import http
from metis_env.sources.gateway.models import capabilities_of, parse_models, with_capabilities
from metis_env.sources.gateway.tokens import gateway_extra
from metis_env.testing.globus_standin import GlobusStandIn
from tests._globus import logged_when
from tests._http import Canned, CannedServer

GPT = {
    "display_name": "gpt-oss-120b", "context_window_tokens": 131072, "tool_calling": False, "reasoning": True,
    "streaming": True, "api_protocols": ["chat_completions"], "input_modalities": ["text"],
    "rate_limit_token_per_minute": 2000000, "rate_limit_token_per_minute_per_user": 200000,
}


@pytest.fixture
def standin():
    with GlobusStandIn() as globus:
        yield globus


def discover(standin):
    token = standin.issue_tokens()["access_token"]
    warnings = []
    endpoints = with_capabilities(standin.gateway_url, token, http.list_endpoints(standin.gateway_url, token), warnings.append)
    return endpoints, warnings


def test_every_listed_model_gets_its_capabilities(standin):
    endpoints, warnings = discover(standin)
    metis = endpoints[0]
    assert (warnings, metis.id, list(metis.capabilities), metis.capabilities["gpt-oss-120b"]) == (
        [], "metis", ["Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b"], GPT)
    assert gateway_extra(metis) == {"framework": "api", "routes": ["/v1/chat/completions"], "capabilities": metis.capabilities}
    assert sorted(r.path for r in logged_when(standin, lambda log: len(log) >= 3)) == [
        "/resource_server/list-endpoints", "/resource_server/metis/models", "/resource_server/sophia/models"]


def test_an_older_gateway_without_the_route_is_no_error(standin):
    standin.gateway.models_route = False
    endpoints, warnings = discover(standin)
    assert ([e.capabilities for e in endpoints], warnings) == ([None, None], [])
    assert gateway_extra(endpoints[0]) == {"framework": "api", "routes": ["/v1/chat/completions"]}


def test_an_unusable_answer_is_a_warning_not_a_failed_login():
    listing = b'{"clusters": {"metis": {"base_url": "/resource_server/metis", "frameworks": {"api": {"models": ["m"]}}}}}'
    answers = {"/resource_server/list-endpoints": Canned(200, listing), "/resource_server/metis/models": Canned(200, b'{"models": []}')}
    with CannedServer(lambda h: answers[h.path]) as server:
        base = f"http://127.0.0.1:{server.port}/resource_server/"
        warnings = []
        endpoints = with_capabilities(base, "tok", http.list_endpoints(base, "tok"), warnings.append)
    assert ([e.capabilities for e in endpoints], warnings) == ([None], [
        f"model details of metis not read ({base}metis/models answered 200 but not with a JSON list (JSON, 14 bytes)); "
        "going on without them"])


def test_names_match_in_any_case_and_unlisted_or_odd_entries_are_left_out():
    payload = [
        {"id": "GPT-OSS-120B", "capabilities": {"context_window_tokens": 8192}},
        {"id": "not-listed", "capabilities": {"context_window_tokens": 1}},
        "not an object", {"no": "id"},
        {"id": "gpt-oss-120b", "capabilities": {"context_window_tokens": 4}},  # a second spelling: the first wins
    ]
    assert parse_models(payload, ("gpt-oss-120b", "other")) == {"gpt-oss-120b": {"context_window_tokens": 8192}}


@pytest.mark.parametrize("item, kept", [
    ({"id": "m"}, {}),
    ({"id": "m", "display_name": "Big\x1b[31m\nModel", "capabilities": {"tool_calling": {"supported": True}, "reasoning": False}},
     {"display_name": "Big\\x1b[31m Model", "tool_calling": True, "reasoning": False}),
    ({"id": "m", "capabilities": {"context_window_tokens": True, "streaming": "yes", "tool_calling": {"supported": "no"}}}, {}),
    ({"id": "m", "capabilities": {"context_window_tokens": -1, "api_protocols": ["chat", "$(id)"], "input_modalities": ["text", "image"]}},
     {"input_modalities": ["text", "image"]}),
    ({"id": "m", "capabilities": "x", "rate_limit_token_per_minute": 10**12, "rate_limit_token_per_minute_per_user": 5000},
     {"rate_limit_token_per_minute_per_user": 5000}),
])
def test_only_plain_values_of_the_contracts_keys_are_kept(item, kept):
    assert capabilities_of(item) == kept
