"""`check`/`status` of a gateway endpoint against the Globus/gateway stand-in (whoami + {cluster}/jobs),
the jobs parser against the gateway's own shapes, and the status cache export warns from."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from metis_env import status_cache
from metis_env.check import CheckResult, raise_for_result
from metis_env.errors import CheckUnauthorizedError, GatewayError, NotLiveError, RateLimitedError, ReauthRequiredError
from metis_env.sources.gateway.check import check_gateway, gateway_paths, model_states
from metis_env.commands.status import format_table, to_json
from metis_env.store import StoredEndpoint
from metis_env.testing.globus_standin import GlobusStandIn
from tests._globus import logged_when
from tests._http import Canned, CannedServer, SilentServer, closed_port

METIS_MODELS = ("Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b")
REAUTH = (
    "the gateway's policy asks for a fresh Globus login (high-assurance re-authentication, about every 30 days); "
    "log out at https://app.globus.org/logout, then run `metis-env login --force`"
)


def gateway_endpoint(base_url: str, cluster: str = "metis", models=METIS_MODELS) -> StoredEndpoint:
    return StoredEndpoint(cluster, base_url, tuple(models), "", "gateway", "2026-12-02T00:00:00+00:00", "", "", "", "")


@pytest.fixture
def standin():
    with GlobusStandIn() as globus:
        yield globus


@pytest.fixture
def metis(standin):
    return gateway_endpoint(standin.gateway_url + "metis/api/v1/")


@pytest.fixture
def token(standin):
    return standin.issue_tokens()["access_token"]


def outcome(result: CheckResult) -> tuple:
    return result.status, result.http_status, result.probe, result.model_status, result.message


def test_all_live(metis, token):
    assert outcome(check_gateway(metis, token, wanted="gpt-oss-120b")) == (
        "ok", 200, "GET /metis/jobs",
        {m: "live" for m in METIS_MODELS},
        "signed in as demo@anl.gov; Mistral-Large-3-675B-Instruct-2512 live, gemma-4-31B-it live, gpt-oss-120b live",
    )


@pytest.mark.parametrize(
    "metis_status, word",
    [("Queued", "queued"), ("Starting", "starting"), ("Stopped", "offline"), ("Offline", "offline"), ("Loading", "queued")],
)
def test_a_model_that_is_not_live_is_told_apart(standin, metis, token, metis_status, word):
    standin.set_model_status("metis", "gemma-4-31B-it", metis_status)
    states = {**{m: "live" for m in METIS_MODELS}, "gemma-4-31B-it": word}
    words = f"Mistral-Large-3-675B-Instruct-2512 live, gemma-4-31B-it {word}, gpt-oss-120b live"
    assert outcome(check_gateway(metis, token, wanted="gemma-4-31B-it")) == (
        "not_live", 200, "GET /metis/jobs", states,
        f"signed in as demo@anl.gov; {words}; gemma-4-31B-it (what export picks) is not live: see `metis-env status metis`",
    )
    # status (no wanted model) reports the same words and is ok
    assert outcome(check_gateway(metis, token))[:4] == ("ok", 200, "GET /metis/jobs", states)


def test_maintenance(standin, metis, token):
    standin.set_maintenance("metis")
    assert outcome(check_gateway(metis, token, wanted="gpt-oss-120b")) == (
        "maintenance", 200, "GET /metis/jobs", {m: "offline" for m in METIS_MODELS},
        "signed in as demo@anl.gov; cluster metis is under maintenance (every model listed as stopped); try later",
    )


def test_policy_lapse_unauthorized_and_bad_answers(standin, metis, token):
    standin.policy_ok = False
    assert outcome(check_gateway(metis, token))[:3] + (outcome(check_gateway(metis, token))[4],) == (
        "reauth_required", 401, "GET /whoami", REAUTH
    )
    standin.policy_ok = True
    assert outcome(check_gateway(metis, "not-a-token-of-this-standin"))[:3] == ("unauthorized", 401, "GET /whoami")
    assert check_gateway(metis, "not-a-token-of-this-standin").message == (
        "the gateway refused the Globus token (whoami: HTTP 401: Token introspection: Token is either not active or "
        "invalid); run `metis-env login`"
    )
    expired = standin.issue_tokens(-10)["access_token"]
    assert check_gateway(metis, expired).status == "unauthorized"
    standin.gateway_fault = "html"
    html = check_gateway(metis, token)
    assert (html.status, html.message) == (
        "gateway_error",
        f"{standin.gateway_url}whoami answered 200 but not with the gateway's user record (not JSON: text/html, 85 bytes); is gateway_url right?",
    )
    standin.gateway_fault = "5xx"
    assert outcome(check_gateway(metis, token))[:3] == ("gateway_error", 502, "GET /whoami")
    standin.gateway_fault = "wrong_shape"
    assert check_gateway(metis, token).status == "gateway_error"


@pytest.mark.parametrize(
    "status, error, code",
    [("reauth_required", ReauthRequiredError, 19), ("unauthorized", CheckUnauthorizedError, 12), ("not_live", NotLiveError, 21),
     ("maintenance", NotLiveError, 21), ("gateway_error", GatewayError, 20), ("rate_limited", RateLimitedError, 23)],
)
def test_each_status_has_its_exit_code(status, error, code):
    result = CheckResult("metis", "https://x/resource_server/metis/api/v1/", status, "what happened")
    with pytest.raises(error) as raised:
        raise_for_result(result)
    assert (raised.value.exit_code, str(raised.value)) == (code, "check of endpoint metis: what happened")


def test_an_unknown_cluster_is_a_gateway_error(standin, token):
    nowhere = gateway_endpoint(standin.gateway_url + "minerva/api/v1/", "minerva", ("m",))
    result = check_gateway(nowhere, token)
    assert (result.status, result.http_status, result.probe) == ("gateway_error", 404, "GET /minerva/jobs")


def test_unreachable_and_silent_gateways(token):
    port = closed_port()
    result = check_gateway(gateway_endpoint(f"http://127.0.0.1:{port}/resource_server/metis/api/v1/"), token, timeout=2)
    assert (result.status, result.message) == (
        "unreachable", f"connection refused by 127.0.0.1:{port}; is the endpoint up and the port right?"
    )
    with SilentServer() as silent:
        result = check_gateway(gateway_endpoint(f"http://127.0.0.1:{silent.port}/resource_server/metis/api/v1/"), token, timeout=0.5)
    assert (result.status, result.message) == ("timeout", f"127.0.0.1:{silent.port} did not answer within 0.5 s")


def test_the_token_never_appears_in_a_result(standin, metis, token):
    standin.gateway_fault = "5xx"
    for result in (check_gateway(metis, token), check_gateway(gateway_endpoint(f"http://127.0.0.1:{closed_port()}/rs/metis/api/v1/"), token)):
        assert token not in repr(result) and token not in result.to_json()


@pytest.mark.parametrize(
    "base_url, paths",
    [
        ("https://inference-api.alcf.anl.gov/resource_server/metis/api/v1/", ("https://inference-api.alcf.anl.gov/resource_server/", "metis")),
        ("https://inference-api.alcf.anl.gov/resource_server/sophia/vllm/v1", ("https://inference-api.alcf.anl.gov/resource_server/", "sophia")),
        ("https://metis.alcf.anl.gov/v1/", None),
    ],
)
def test_gateway_paths(base_url, paths):
    assert gateway_paths(base_url) == paths


def job(models, status=None, framework="vllm"):
    entry = {"Models": models, "Framework": framework, "Cluster": "sophia"}
    return entry if status is None else {**entry, "Model Status": status}


@pytest.mark.parametrize(
    "payload, states, maintenance",
    [
        # Sophia (qstat): running/starting in "running", queued, others; several models in one job
        ({"running": [job("a,b", "running"), job("c", "starting")], "queued": [job("d", "queued")], "others": [job("e", "other")]},
         {"a": "live", "b": "live", "c": "starting", "d": "queued", "e": "offline", "f": "offline"}, False),
        # a model in two jobs takes its best word; "disconnected" (managers lost) is offline
        ({"running": [job("a", "disconnected"), job("a", "running"), job("b", "disconnected")]},
         {"a": "live", "b": "offline", "c": "offline", "d": "offline", "e": "offline", "f": "offline"}, False),
        # nothing runs: every stored model offline, not maintenance
        ({"running": [], "queued": [], "stopped": [], "others": []}, {m: "offline" for m in "abcdef"}, False),
        # maintenance: everything under "stopped" with no "Model Status"
        ({"stopped": [job("a"), job("b")], "cluster_status": {}}, {m: "offline" for m in "abcdef"}, True),
        # a model the gateway lists that is not stored is reported too, after the stored ones
        ({"running": [job("z", "running")]}, {**{m: "offline" for m in "abcdef"}, "z": "live"}, False),
    ],
)
def test_model_states(payload, states, maintenance):
    assert model_states(payload, "abcdef") == (states, maintenance)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "not with a JSON object"),
        ({"running": {}}, "its 'running' is not a list"),
        ({"queued": ["gpt"]}, "an entry of 'queued' is not a job with \"Models\""),
        ({"running": [{"Models": ["a"]}]}, "an entry of 'running' is not a job with \"Models\""),
    ],
)
def test_model_states_refuses_wrong_shapes(payload, message):
    with pytest.raises(ValueError) as refused:
        model_states(payload, ["a"])
    assert str(refused.value) == message


# --- status output and the cache -----------------------------------------------------------------


def test_status_table_and_json(standin, metis, token):
    standin.set_model_status("metis", "gemma-4-31B-it", "Queued")
    ok = check_gateway(metis, token)
    failed = CheckResult("sophia", "https://x/resource_server/sophia/vllm/v1/", "unauthorized", "refused", model_status={"m": "unknown"})
    maint = dataclasses.replace(ok, endpoint="minerva", status="maintenance", model_status={"x": "offline"})
    assert format_table([ok, failed, maint]) == (
        "ENDPOINT  MODEL                               STATUS\n"
        "metis     Mistral-Large-3-675B-Instruct-2512  live\n"
        "metis     gemma-4-31B-it                      queued\n"
        "metis     gpt-oss-120b                        live\n"
        "sophia    m                                   unknown (unauthorized)\n"
        "minerva   x                                   offline (maintenance)\n"
    )
    data = json.loads(to_json([ok]))
    assert (sorted(data), data["version"], data["endpoints"]) == (
        ["checked_at", "endpoints", "version"], 1,
        [{"endpoint": "metis", "base_url": metis.base_url, "status": "ok", "maintenance": False,
          "models": {"Mistral-Large-3-675B-Instruct-2512": "live", "gemma-4-31B-it": "queued", "gpt-oss-120b": "live"},
          "message": ok.message}],
    )


def test_the_cache_warns_only_for_a_recent_look_at_a_model_that_was_not_live(env_setup):
    config = str(env_setup)
    now = time.time()
    status_cache.record(config, {
        "metis": status_cache.entry("status", {"gpt-oss-120b": "live", "gemma-4-31B-it": "queued"}, now=now - 240),
        "sophia": status_cache.entry("check", {"m": "offline"}, maintenance=True, now=now - 30),
        "1": status_cache.entry("status", {"old": "offline"}, now=now - 3600),
    })
    assert status_cache.warnings_for(config, "metis", "gpt-oss-120b", now) == ()
    assert status_cache.warnings_for(config, "metis", "gemma-4-31B-it", now) == (
        "model 'gemma-4-31B-it' of endpoint metis was queued at the last status (4 min ago); requests may fail until "
        "it is live: metis-env status metis",
    )
    assert status_cache.warnings_for(config, "sophia", "m", now) == (
        "endpoint sophia was under maintenance at the last check (30 s ago); requests may fail until it is back: "
        "metis-env status sophia",
    )
    assert status_cache.warnings_for(config, "1", "old", now) == ()  # older than MAX_AGE_SECONDS: says nothing
    assert status_cache.warnings_for(config, "2", "x", now) == ()
    path = env_setup / "status.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("{damaged")
    assert status_cache.warnings_for(config, "metis", "gemma-4-31B-it", now) == ()


# --- 429s and names from the gateway ---------------------------------------------------------------

WHOAMI = b'{"id": "u", "username": "demo@anl.gov"}'
THROTTLED = b'{"detail": "Too many requests."}'
TPM = b'{"error": {"code": "too_many_requests", "message": "Tokens/minute limit exceeded", "info": {"tpm_user": 10}}}'


@pytest.mark.parametrize("whoami, jobs, probe, said", [
    (Canned(429, THROTTLED), None, "GET /whoami", "whoami: HTTP 429: Too many requests."),
    (Canned(200, WHOAMI), Canned(429, TPM), "GET /metis/jobs", "metis/jobs: HTTP 429: Tokens/minute limit exceeded"),
    (Canned(429, b"", ()), None, "GET /whoami", "whoami: HTTP 429"),
])
def test_a_429_of_either_shape_is_rate_limited_not_a_gateway_error(whoami, jobs, probe, said):
    with CannedServer(lambda h: whoami if h.path.endswith("/whoami") else jobs) as server:
        result = check_gateway(gateway_endpoint(f"http://127.0.0.1:{server.port}/resource_server/metis/api/v1"), "tok")
    assert outcome(result)[:3] + (result.message,) == ("rate_limited", 429, probe, (
        f"rate-limited by the gateway ({said}); this user's requests per second or tokens per minute are used up "
        "for now: wait a minute, or send fewer requests at once"))
    assert format_table([result]) == (
        "ENDPOINT  MODEL                               STATUS\n"
        "metis     Mistral-Large-3-675B-Instruct-2512  unknown (rate_limited)\n"
        "metis     gemma-4-31B-it                      unknown (rate_limited)\n"
        "metis     gpt-oss-120b                        unknown (rate_limited)\n"
    )
    with pytest.raises(RateLimitedError) as raised:
        raise_for_result(result)
    assert raised.value.exit_code == 23


HOSTILE = {"m\x1b]0;owned\x07": "Live", "x\nmetis     fake-model  live": "Live", "r\u202eevil": "Queued"}


def test_model_names_from_jobs_reach_the_terminal_escaped():
    with GlobusStandIn(clusters={"metis": ("api", HOSTILE)}) as standin:
        token = standin.issue_tokens()["access_token"]
        result = check_gateway(gateway_endpoint(standin.gateway_url + "metis/api/v1", models=()), token, wanted="r\u202eevil")
    assert (result.status, result.message) == ("not_live", (
        "signed in as demo@anl.gov; m\\x1b]0;owned\\x07 live, x\\nmetis     fake-model  live live, r\\u202eevil queued; "
        "r\\u202eevil (what export picks) is not live: see `metis-env status metis`"))
    assert format_table([result]) == (
        "ENDPOINT  MODEL                          STATUS\n"
        "metis     m\\x1b]0;owned\\x07              live\n"
        "metis     x\\nmetis     fake-model  live  live\n"
        "metis     r\\u202eevil                    queued\n"
    )


def test_status_shows_what_the_gateway_said_of_each_model(standin, token):
    caps = {
        "gpt-oss-120b": {"context_window_tokens": 131072, "tool_calling": False, "reasoning": True,
                         "rate_limit_token_per_minute": 2000000, "rate_limit_token_per_minute_per_user": 200000},
        "gemma-4-31B-it": {"tool_calling": True},
    }
    stored = gateway_endpoint(standin.gateway_url + "metis/api/v1")._replace(extra={"framework": "api", "capabilities": caps})
    result = check_gateway(stored, token)
    assert (result.status, result.capabilities) == ("ok", caps)
    assert format_table([result]) == (
        "ENDPOINT  MODEL                               STATUS  CONTEXT  TOOLS  REASONING  TPM (USER/MODEL)\n"
        "metis     Mistral-Large-3-675B-Instruct-2512  live    -        -      -          -\n"
        "metis     gemma-4-31B-it                      live    -        yes    -          -\n"
        "metis     gpt-oss-120b                        live    131072   no     yes        200000/2000000\n"
    )
    assert json.loads(to_json([result]))["endpoints"][0]["capabilities"] == caps
    older = check_gateway(gateway_endpoint(standin.gateway_url + "metis/api/v1")._replace(extra={"framework": "api"}), token)
    assert ("capabilities" in json.loads(to_json([older]))["endpoints"][0], format_table([older]).splitlines()[0]) == (
        False, "ENDPOINT  MODEL                               STATUS")


def test_check_asks_the_models_route_whether_this_identity_may_use_the_model(standin, metis, token):
    from metis_env.testing.gateway_standin import Throttle

    # five checks back to back: more requests in a second than FIRST's 10/s, which this test is not about
    standin.throttle = Throttle(every_route=False)
    assert check_gateway(metis, token, wanted="gpt-oss-120b").status == "ok"
    standin.gateway.details[("metis", "gpt-oss-120b")] = {"id": "renamed", "object": "model"}
    gone = check_gateway(metis, token, wanted="gpt-oss-120b")
    assert outcome(gone)[:3] + (gone.message,) == ("failed", 404, "GET /metis/models", (
        "signed in as demo@anl.gov; Mistral-Large-3-675B-Instruct-2512 live, gemma-4-31B-it live, gpt-oss-120b live; "
        "gpt-oss-120b (what export picks) is not a model metis/models offers this identity: pick another with --model, "
        "or run `metis-env sync --gateway`"))
    unlisted = check_gateway(metis, token, wanted="gpt-oss-120b-old")
    assert (unlisted.status, unlisted.message.split("; ")[-1]) == ("failed", (
        "gpt-oss-120b-old (what export picks) is not a model metis/models offers this identity (an old name the gateway "
        "reroutes cannot be told from here): pick another with --model, or run `metis-env sync --gateway`"))
    standin.gateway.models_route = False  # an older gateway: jobs alone decide
    assert check_gateway(metis, token, wanted="gpt-oss-120b").status == "ok"
    # three checks of three requests each before this one; the log's order is the order of answers
    assert sorted(r.path for r in logged(standin, 12)[9:]) == [
        "/resource_server/metis/jobs", "/resource_server/metis/models", "/resource_server/whoami"]
    assert check_gateway(metis, token).status == "ok"  # status asks nothing more
    assert sorted(r.path for r in logged(standin, 14)[12:]) == ["/resource_server/metis/jobs", "/resource_server/whoami"]


def logged(standin, count):
    return logged_when(standin, lambda log: len(log) >= count)
