"""The gateway half of the stand-in (metis_env.testing.gateway_standin): the shapes of the real
gateway's routes and errors, every refusal a client must tell apart, and SSE read by the real openai client."""

from __future__ import annotations

import json
import ssl
import urllib.request

import httpx
import openai
import pytest

from metis_env.testing.gateway_standin import ALL_CLUSTERS, NOT_FOUND_PAGE, POLICY_MESSAGE, REPLY, model_details
from metis_env.testing.globus_standin import GlobusStandIn
from tests._globus import gateway_get, gateway_request, globus, globus_env, logged_when  # noqa: F401  (fixtures)

IDENTITY = "11111111-2222-4333-8444-555555555555"
NOT_ACTIVE = {"error": {"code": "unauthorized", "message": "Token is either not active or invalid", "info": {}}}
CACHED_NOT_ACTIVE = {"error": {"code": "unauthorized", "message": "Token introspection: Token is either not active or invalid", "info": {}}}
JSON = "application/json; charset=utf-8"


def chat(globus, token, model="gpt-oss-120b", path="metis/api/v1/chat/completions"):
    status, _, body = gateway_request(globus, "POST", path, token, {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    return status, body


def error(code, message):
    return {"error": {"code": code, "message": message, "info": {}}}


def test_gateway_read_routes_with_a_valid_token(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    globus.set_model_status("metis", "gemma-4-31B-it", "Queued")
    globus.set_model_status("metis", "Mistral-Large-3-675B-Instruct-2512", "Stopped")

    def job(model, status):
        return {"Models": model, "Framework": "api", "Cluster": "metis", "Model Status": status,
                "Description": f"{model} - served by the metis-env stand-in", "Model Version": "1"}

    assert gateway_get(globus, "whoami", token) == (200, {
        "id": IDENTITY, "name": "Demo User", "username": "demo@anl.gov", "user_group_uuids": [],
        "idp_id": "a7ef9a1d-1e8e-4a49-9a46-b6b7a1a8c8f0", "idp_name": "Argonne National Laboratory", "auth_service": "globus"})
    assert gateway_get(globus, "list-endpoints", token) == (200, {"clusters": {
        "metis": {"base_url": "/resource_server/metis", "frameworks": {"api": {
            "models": ["Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b"], "endpoints": ["/v1/chat/completions"]}}},
        "sophia": {"base_url": "/resource_server/sophia", "frameworks": {"vllm": {
            "models": ["meta-llama/Meta-Llama-3.1-8B-Instruct", "openai/gpt-oss-120b"], "endpoints": [
                "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/batches"]}}},
    }})
    assert gateway_get(globus, "metis/jobs", token) == (200, {
        "running": [job("gpt-oss-120b", "running")], "queued": [job("gemma-4-31B-it", "queued")],
        "stopped": [job("Mistral-Large-3-675B-Instruct-2512", "stopped")], "others": [],
        "private_batch_running": [], "private_batch_queued": [],
        "cluster_status": {"cluster": "metis", "total_models": 3, "live_models": 1, "stopped_models": 1},
    })
    assert gateway_get(globus, "sophia/models?model_id=openai/gpt-oss-120b", token) == (200, [
        model_details("sophia", "vllm", "openai/gpt-oss-120b", globus.clusters["sophia"]["routes"])])
    status, body = chat(globus, token)
    assert (status, body.pop("id").startswith("chatcmpl-"), isinstance(body.pop("created"), int), body) == (200, True, True, {
        "object": "chat.completion", "model": "gpt-oss-120b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7}})
    assert {r.bearer for r in globus.requests} == {True}


def expired(g):
    return g.issue_tokens(lifetime=-1)["access_token"]


def revoked(g):
    token = g.issue_tokens()["access_token"]
    g.revoke_all()
    return token


def skewed(g):
    token = g.issue_tokens(lifetime=3600)["access_token"]
    g.clock_offset = 86400  # the stand-in is a day ahead: a token with an hour left is long dead there
    return token


def policy_lapsed(g):
    g.policy_ok = False
    return g.issue_tokens()["access_token"]


def not_live(g):
    g.set_model_status("metis", "gpt-oss-120b", "Starting")
    return g.issue_tokens()["access_token"]


def maintenance(g):
    g.set_maintenance("metis", "Metis is down for maintenance until 18:00 CT.")
    return g.issue_tokens()["access_token"]


def valid(g):
    return g.issue_tokens()["access_token"]


GATEWAY_CASES = {
    # name: (token maker, chat path, model) -> (status, body)
    "expired": (expired, "metis/api/v1/chat/completions", "gpt-oss-120b", (401, NOT_ACTIVE)),
    "revoked": (revoked, "metis/api/v1/chat/completions", "gpt-oss-120b", (401, NOT_ACTIVE)),
    "unknown": (lambda g: "forged-token", "metis/api/v1/chat/completions", "gpt-oss-120b", (401, NOT_ACTIVE)),
    "openid token, not the inference one": (lambda g: g.issue_tokens(scope="openid")["access_token"],
                                            "metis/api/v1/chat/completions", "gpt-oss-120b", (401, NOT_ACTIVE)),
    "clock a day ahead": (skewed, "metis/api/v1/chat/completions", "gpt-oss-120b", (401, NOT_ACTIVE)),
    "no header": (lambda g: None, "metis/api/v1/chat/completions", "gpt-oss-120b", (401, {
        "detail": "Error: Missing ('Authorization': 'Bearer <your-access-token>') in request headers."})),
    "policy lapse": (policy_lapsed, "metis/api/v1/chat/completions", "gpt-oss-120b", (401, error("unauthorized", POLICY_MESSAGE))),
    "not live": (not_live, "metis/api/v1/chat/completions", "gpt-oss-120b", (503, error(
        "internal_endpoint_error", "'gpt-oss-120b' is not currently live on Metis."))),
    "maintenance": (maintenance, "metis/api/v1/chat/completions", "gpt-oss-120b", (503, error(
        "cluster_under_maintenance", "Metis is down for maintenance until 18:00 CT."))),
    "unknown model": (valid, "metis/api/v1/chat/completions", "gpt-4o", (404, error(
        "endpoint_not_found", "The requested endpoint 'metis-api-gpt-4o' does not exist."))),
    "unknown cluster": (valid, "polaris/vllm/v1/chat/completions", "gpt-oss-120b", (404, error(
        "cluster_not_found", "The requested cluster 'polaris' does not exist."))),
    "wrong framework": (valid, "metis/vllm/v1/chat/completions", "gpt-oss-120b", (400, error(
        "unsupported_framework", "framework vllm not available on cluster metis."))),
    "sophia model not live": (valid, "sophia/vllm/v1/chat/completions", "meta-llama/Meta-Llama-3.1-8B-Instruct", (503, error(
        "internal_endpoint_error", "'meta-llama/Meta-Llama-3.1-8B-Instruct' is not currently live on Sophia."))),
}


@pytest.mark.parametrize("case", sorted(GATEWAY_CASES))
def test_gateway_chat_refusals(globus, globus_env, case) -> None:
    make_token, path, model, expected = GATEWAY_CASES[case]
    assert chat(globus, make_token(globus), model, path) == expected


def test_maintenance_lists_every_model_as_stopped(globus, globus_env) -> None:
    token = maintenance(globus)
    assert gateway_get(globus, "metis/jobs", token) == (200, {
        "running": [], "queued": [], "others": [], "private_batch_running": [], "private_batch_queued": [],
        "stopped": [{"Models": m, "Framework": "api", "Cluster": "metis"}
                    for m in ("Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b")],
        "cluster_status": {}})
    globus.set_maintenance("metis", None)
    assert chat(globus, token)[0] == 200


FAULTS = {
    "html": (200, "text/html; charset=utf-8", "Argonne sign-in"),
    "5xx": (502, "text/html; charset=utf-8", "502 Bad Gateway"),
    "wrong_shape": (200, JSON, {"result": ["this is not the shape you expect"], "clusters": None}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_gateway_faults(globus, globus_env, fault) -> None:
    globus.gateway_fault = fault
    token = globus.issue_tokens()["access_token"]
    answers = [gateway_request(globus, "GET", path, token) for path in ("list-endpoints", "metis/jobs", "whoami")]
    answers.append(gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, {"model": "gpt-oss-120b", "messages": []}))
    status, ctype, expected = FAULTS[fault]
    assert [(s, c, b if isinstance(b, dict) else expected in b) for s, c, b in answers] == [
        (status, ctype, expected if isinstance(expected, dict) else True)] * 4


def test_html_and_5xx_pages_come_before_the_token_check_and_wrong_shape_after(globus, globus_env) -> None:
    answers = {}
    for fault in sorted(FAULTS):
        globus.gateway_fault = fault
        answers[fault] = gateway_request(globus, "GET", "whoami", "forged-token")[0]
    assert answers == {"5xx": 502, "html": 200, "wrong_shape": 401}


def test_hostile_model_names_reach_the_client_unchanged(tmp_path) -> None:
    hostile = ["$(touch pwned)", "a'b\"c", "line\nbreak", "`id`;rm -rf ~", "\u00e9t\u00e9/\u2603"]
    with GlobusStandIn(clusters={"metis": ("api", {name: "Live" for name in hostile})}) as standin:
        token = standin.issue_tokens()["access_token"]
        req = urllib.request.Request(standin.gateway_url + "list-endpoints", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as response:
            listed = json.load(response)
    assert listed == {"clusters": {"metis": {"base_url": "/resource_server/metis", "frameworks": {"api": {
        "models": sorted(hostile), "endpoints": ["/v1/chat/completions"]}}}}}


def test_unknown_routes_get_djangos_html_404_even_without_a_token(globus, globus_env) -> None:
    assert [gateway_request(globus, m, p) for m, p in (("GET", "metis/api/v1/models"), ("GET", "nope"))] == [
        (404, "text/html; charset=utf-8", NOT_FOUND_PAGE)] * 2


def test_the_real_openai_client_plain_and_streamed(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    http = httpx.Client(verify=ssl.create_default_context(cafile=globus.ca_file))
    client = openai.OpenAI(base_url=globus.gateway_url + "metis/api/v1", api_key=token, http_client=http, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    plain = client.chat.completions.create(model="gpt-oss-120b", messages=messages)
    stream = client.chat.completions.create(model="gpt-oss-120b", messages=messages, stream=True)
    pieces = [(c.choices[0].delta.content, c.choices[0].finish_reason) for c in stream]
    assert (plain.choices[0].message.content, "".join(p for p, _ in pieces if p), pieces[-1][1], len(pieces)) == (
        REPLY, REPLY, "stop", 8)

    globus.set_model_status("metis", "gpt-oss-120b", "Queued")
    with pytest.raises(openai.InternalServerError) as not_live:
        client.chat.completions.create(model="gpt-oss-120b", messages=messages, stream=True)
    globus.revoke_all()
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-oss-120b", messages=messages)
    assert (not_live.value.status_code, not_live.value.body, refused.value.body) == (
        503, error("internal_endpoint_error", "'gpt-oss-120b' is not currently live on Metis.")["error"], NOT_ACTIVE["error"])


# --- where the stand-in follows FIRST (argonne-lcf/FIRST 329c0cd) ---------------------------------


def test_health_and_status_answer_without_a_token(globus, globus_env) -> None:
    globus.set_maintenance("sophia", "down")
    assert [gateway_request(globus, "GET", path) for path in ("health", "status")] == [
        (200, JSON, {"status": "ok"}), (200, JSON, {"metis": True, "sophia": False})]
    assert {r.bearer for r in logged_when(globus, lambda log: len(log) >= 2)} == {None}


BEARER_ONLY = {"error": {"code": "unauthorized", "message": "Auth only allows header type Authorization: Bearer <token>.", "info": {}}}


@pytest.mark.parametrize("header, expected", [
    (None, {"detail": "Error: Missing ('Authorization': 'Bearer <your-access-token>') in request headers."}),
    ("Basic dXNlcjpwYXNz", {"error": {"code": "unauthorized", "info": {}, "message":
                                      "Something went wrong while reading headers. Authorization type should be Bearer."}}),
    ("Bearer", BEARER_ONLY),
    ("Bearer two words", BEARER_ONLY),
])
def test_authorization_headers_get_the_gateways_answers(globus, globus_env, header, expected) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert gateway_request(globus, "GET", "whoami", headers=headers) == (401, JSON, expected)


def test_an_inactive_token_is_refused_then_the_refusal_is_cached_for_a_minute(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    globus.revoke_all()
    assert [gateway_get(globus, "whoami", token) for _ in range(3)] == [
        (401, NOT_ACTIVE), (401, CACHED_NOT_ACTIVE), (401, CACHED_NOT_ACTIVE)]
    fresh = globus.issue_tokens()["access_token"]  # the cache is per token
    assert gateway_get(globus, "whoami", fresh)[0] == 200


BODIES = {
    # name: (body as sent) -> (status, answer)
    "not JSON": (b"{model: gpt-oss-120b", (400, {"detail": "Cannot parse request body"})),
    "empty": (b"", (422, {"detail": [{"type": "missing", "loc": ["body", "payload"], "msg": "Field required"}]})),
    "a list": (b"[]", (422, {"detail": [{"type": "dict_type", "loc": ["body", "payload"], "msg": "Input should be a valid dictionary"}]})),
    "no model": ({"messages": []}, (422, {"error": {"code": "invalid_request", "message": "Invalid FIRST control fields.", "info": {
        "errors": [{"field": "model", "message": "Field required", "type": "missing"}]}}})),
    "model not a string": ({"model": 7, "messages": []}, (422, {"error": {"code": "invalid_request", "message": "Invalid FIRST control fields.",
        "info": {"errors": [{"field": "model", "message": "Input should be a valid string", "type": "string_type"}]}}})),
    "a reserved field": ({"model": "gpt-oss-120b", "messages": [], "openai_endpoint": "x"}, (422, {"error": {
        "code": "invalid_request", "message": "FIRST-reserved request fields are not accepted.", "info": {"fields": ["openai_endpoint"]}}})),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_bad_bodies_get_the_gateways_answers(globus, globus_env, case) -> None:
    body, (status, answer) = BODIES[case]
    token = globus.issue_tokens()["access_token"]
    assert gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, body) == (status, JSON, answer)


def test_an_unknown_field_goes_on_to_the_backend(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    status, ctype, body = gateway_request(globus, "POST", "metis/api/v1/chat/completions", token,
                                          {"model": "gpt-oss-120b", "messages": [], "no_such_field": 1})
    assert (status, ctype, body["choices"][0]["message"]["content"]) == (200, JSON, REPLY)


def test_model_names_match_in_any_case_and_old_names_are_rerouted(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    globus.gateway.alias("metis", "api", "gpt-oss-120b-old", "gpt-oss-120b")
    answers = [chat(globus, token, model)[1].get("model") for model in ("GPT-OSS-120B", "Gemma-4-31b-IT", "gpt-oss-120b-old")]
    assert answers == ["gpt-oss-120b", "gemma-4-31B-it", "gpt-oss-120b"]
    assert chat(globus, token, "gpt-oss-20b") == (404, error(
        "endpoint_not_found", "The requested endpoint 'metis-api-gpt-oss-20b' does not exist."))


def test_cluster_models_route(globus, globus_env) -> None:
    token = globus.issue_tokens()["access_token"]
    routes = globus.clusters["metis"]["routes"]
    everything = [model_details("metis", "api", m, routes) for m in ("gemma-4-31B-it", "gpt-oss-120b", "Mistral-Large-3-675B-Instruct-2512")]
    assert gateway_request(globus, "GET", "metis/models", token) == (200, JSON, everything)
    assert everything[1] == {
        "id": "gpt-oss-120b", "object": "model", "cluster": "metis", "framework": "api", "display_name": "gpt-oss-120b",
        "description": "gpt-oss-120b served by the metis-env stand-in",
        "capabilities": {"schema_version": 1, "api_protocols": ["chat_completions"], "context_window_tokens": 131072,
                         "input_modalities": ["text"], "streaming": True, "reasoning": {"supported": True, "separate_output": True},
                         "tool_calling": {"supported": False}},
        "rate_limit_token_per_minute": 2000000, "rate_limit_token_per_minute_per_user": 200000}
    assert gateway_get(globus, "metis/models?model_id=gemma-4-31B-it", token) == (200, [everything[0]])
    assert [gateway_get(globus, f"{path}", token) for path in ("metis/models?model_id=GEMMA-4-31B-IT", "polaris/models")] == [
        (404, error("endpoint_not_found", "GEMMA-4-31B-IT model not found on cluster metis.")),
        (404, error("cluster_not_found", "The requested cluster 'polaris' does not exist."))]
    globus.gateway.details[("metis", "gpt-oss-120b")] = {"id": "gpt-oss-120b", "object": "model", "cluster": "metis", "framework": "api"}
    assert gateway_get(globus, "metis/models?model_id=gpt-oss-120b", token)[1] == [
        {"id": "gpt-oss-120b", "object": "model", "cluster": "metis", "framework": "api"}]
    globus.gateway.models_route = False  # an older deployment
    assert gateway_request(globus, "GET", "metis/models", token) == (404, "text/html; charset=utf-8", NOT_FOUND_PAGE)


def test_every_cluster_alcf_lists(tmp_path) -> None:
    with GlobusStandIn(clusters=ALL_CLUSTERS) as standin:
        token = standin.issue_tokens()["access_token"]
        req = urllib.request.Request(standin.gateway_url + "list-endpoints", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as response:
            listed = json.load(response)["clusters"]
    assert {name: (c["base_url"], {fw: d["endpoints"] for fw, d in c["frameworks"].items()}) for name, c in listed.items()} == {
        "metis": ("/resource_server/metis", {"api": ["/v1/chat/completions"]}),
        "sophia": ("/resource_server/sophia", {"vllm": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                                        "/v1/responses", "/v1/messages", "/v1/batches"]}),
        "minerva": ("/resource_server/minerva", {"api": ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions"]}),
        "tara": ("/resource_server/tara", {"api": ["/v1/chat/completions", "/v1/responses"]}),
    }
