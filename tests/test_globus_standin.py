"""The Globus Auth half of the stand-in, proven faithful with the REAL clients: globus-sdk's
NativeAppAuthClient and UserApp (command-line and local-server flows) and the alcf-tokens CLI through
a pipe; and the stand-in's own promises (no token in its repr or log, plain http, threads).
The gateway half: tests/test_gateway_standin.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser

import globus_sdk
import jwt
import pytest
from globus_sdk.gare import GlobusAuthorizationParameters
from globus_sdk.login_flows import CommandLineLoginFlowManager
from globus_sdk.token_storage import MemoryTokenStorage

from metis_env.alcf import (
    ALCF_TOKENS_CLIENT_ID,
    AUTH_RESOURCE_SERVER,
    INFERENCE_RESOURCE_SERVER,
    INFERENCE_SCOPE,
    INFERENCE_SESSION_POLICY,
)
from metis_env.testing.globus_standin import GlobusStandIn, LoggedRequest
from tests._globus import ALCF_TOKENS, alcf_tokens_login, gateway_get, globus, globus_env  # noqa: F401  (fixtures)

IDENTITY = "11111111-2222-4333-8444-555555555555"


def native_client() -> globus_sdk.NativeAppAuthClient:
    return globus_sdk.NativeAppAuthClient(client_id=ALCF_TOKENS_CLIENT_ID)


def login(globus: GlobusStandIn, client: globus_sdk.NativeAppAuthClient, scopes=(INFERENCE_SCOPE, "openid")):
    client.oauth2_start_flow(requested_scopes=list(scopes), refresh_tokens=True)
    url = client.oauth2_get_authorize_url(session_required_policies=[INFERENCE_SESSION_POLICY], prompt="login")
    return client.oauth2_exchange_code_for_tokens(globus.approve(url))


def refusal(call) -> tuple[int, str]:
    with pytest.raises(globus_sdk.AuthAPIError) as caught:
        call()
    return caught.value.http_status, caught.value.raw_json["error"]


def trail(globus: GlobusStandIn) -> list[tuple[str, str | None, int]]:
    return [(r.path, r.grant_type, r.status) for r in globus.requests]


# -- Globus Auth through the real globus-sdk ---------------------------------------------------------


def test_native_app_flow_login_id_token_refresh_revoke(globus, globus_env) -> None:
    client = native_client()
    tokens = login(globus, client)

    query = dict(globus.authorizations[0])
    assert len(query.pop("code_challenge")) == 43
    assert query == {
        "client_id": ALCF_TOKENS_CLIENT_ID, "redirect_uri": globus.url + "v2/web/auth-code",
        "scope": f"{INFERENCE_SCOPE} openid", "state": "_default", "response_type": "code",
        "access_type": "offline", "code_challenge_method": "S256", "prompt": "login",
        "session_required_policies": INFERENCE_SESSION_POLICY,
    }
    by_rs = tokens.by_resource_server
    assert sorted(by_rs) == [INFERENCE_RESOURCE_SERVER, AUTH_RESOURCE_SERVER]
    assert ({rs: (d["scope"], d["token_type"]) for rs, d in by_rs.items()}
            == {INFERENCE_RESOURCE_SERVER: (INFERENCE_SCOPE, "Bearer"), AUTH_RESOURCE_SERVER: ("openid", "Bearer")})
    assert abs(by_rs[INFERENCE_RESOURCE_SERVER]["expires_at_seconds"] - (time.time() + 172800)) < 5

    claims = tokens.decode_id_token()
    assert (claims.pop("exp") - claims.pop("iat"), claims.pop("last_authentication") > 0) == (172800, True)
    assert claims == {
        "sub": IDENTITY, "aud": ALCF_TOKENS_CLIENT_ID, "iss": globus.url.rstrip("/"),
        "preferred_username": "demo@anl.gov", "name": "Demo User", "email": "demo@anl.gov",
        "organization": "Argonne National Laboratory",
        "identity_provider": "a7ef9a1d-1e8e-4a49-9a46-b6b7a1a8c8f0",
        "identity_provider_display_name": "Argonne National Laboratory",
    }

    inference = by_rs[INFERENCE_RESOURCE_SERVER]
    refreshed = client.oauth2_refresh_token(inference["refresh_token"])
    new = refreshed.by_resource_server[INFERENCE_RESOURCE_SERVER]
    assert (new["access_token"] != inference["access_token"], new["refresh_token"] == inference["refresh_token"],
            globus.token_status(new["access_token"]), globus.token_status(inference["access_token"])) == (
            True, True, "valid", "valid")

    client.oauth2_revoke_token(inference["refresh_token"])
    assert refusal(lambda: client.oauth2_refresh_token(inference["refresh_token"])) == (400, "invalid_grant")
    # Revoking the refresh token ends the access tokens it produced; the openid token lives on.
    assert ([globus.token_status(t) for t in (inference["access_token"], new["access_token"],
                                               by_rs[AUTH_RESOURCE_SERVER]["access_token"])]
            == ["revoked", "revoked", "valid"])
    assert trail(globus) == [
        ("/v2/oauth2/authorize", None, 302), ("/v2/web/auth-code", None, 200),
        ("/v2/oauth2/token", "authorization_code", 200),
        ("/.well-known/openid-configuration", None, 200), ("/jwk.json", None, 200),
        ("/v2/oauth2/token", "refresh_token", 200), ("/v2/oauth2/token/revoke", None, 200),
        ("/v2/oauth2/token", "refresh_token", 400),
    ]
    assert (globus.grants("authorization_code"), globus.grants("refresh_token")) == (1, 2)


def test_a_flow_without_openid_has_no_id_token_and_puts_the_inference_token_on_top(globus, globus_env) -> None:
    tokens = login(globus, native_client(), scopes=(INFERENCE_SCOPE,))
    assert (tokens["resource_server"], tokens["other_tokens"], "id_token" in tokens) == (INFERENCE_RESOURCE_SERVER, [], False)


def setup_revoked(globus, tokens):
    globus.revoke_all()


REFRESH_REFUSALS = {
    # name: (what happens to the stand-in or the tokens first, client id used) -> (status, error)
    "refresh_fails": (lambda g, t: setattr(g, "refresh_fails", True), ALCF_TOKENS_CLIENT_ID, (400, "invalid_grant")),
    "revoked": (setup_revoked, ALCF_TOKENS_CLIENT_ID, (400, "invalid_grant")),
    "expired (6 months idle)": (lambda g, t: setattr(g, "clock_offset", 200 * 86400), ALCF_TOKENS_CLIENT_ID, (400, "invalid_grant")),
    "unknown": (lambda g, t: t.update(refresh_token="not-a-token"), ALCF_TOKENS_CLIENT_ID, (400, "invalid_grant")),
    "another client's": (lambda g, t: None, "58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944", (401, "invalid_client")),
}


@pytest.mark.parametrize("case", sorted(REFRESH_REFUSALS))
def test_refresh_is_refused(globus, globus_env, case) -> None:
    setup, client_id, expected = REFRESH_REFUSALS[case]
    globus.refresh_lifetime = 180 * 86400
    tokens = globus.issue_tokens()
    setup(globus, tokens)
    client = globus_sdk.NativeAppAuthClient(client_id=client_id)
    assert refusal(lambda: client.oauth2_refresh_token(tokens["refresh_token"])) == expected


def test_rotation_gives_a_new_refresh_token_and_refuses_the_old_one(globus, globus_env) -> None:
    globus.rotate_refresh = True
    tokens = globus.issue_tokens()
    client = native_client()
    rotated = client.oauth2_refresh_token(tokens["refresh_token"])["refresh_token"]
    assert rotated != tokens["refresh_token"]
    assert refusal(lambda: client.oauth2_refresh_token(tokens["refresh_token"])) == (400, "invalid_grant")
    assert globus.token_status(client.oauth2_refresh_token(rotated)["access_token"]) == "valid"


def test_access_lifetime_knob_sets_expires_in(globus, globus_env) -> None:
    globus.access_lifetime = 90
    answer = native_client().oauth2_refresh_token(globus.issue_tokens()["refresh_token"])
    assert (answer["expires_in"], answer["other_tokens"], answer["resource_server"], answer["scope"]) == (
        90, [], INFERENCE_RESOURCE_SERVER, INFERENCE_SCOPE)


def exchange_with(globus, change) -> tuple[int, str]:
    client = native_client()
    client.oauth2_start_flow(requested_scopes=[INFERENCE_SCOPE], refresh_tokens=True)
    code = globus.approve(client.oauth2_get_authorize_url())
    change(client, globus)
    return refusal(lambda: client.oauth2_exchange_code_for_tokens(code))


CODE_REFUSALS = {
    "wrong PKCE verifier": lambda c, g: setattr(c.current_oauth2_flow_manager, "verifier", "x" * 43),
    "another redirect_uri": lambda c, g: setattr(c.current_oauth2_flow_manager, "redirect_uri", "http://localhost:1/"),
    "code older than 10 minutes": lambda c, g: setattr(g, "clock_offset", 601),
}


@pytest.mark.parametrize("case", sorted(CODE_REFUSALS))
def test_code_exchange_is_refused(globus, globus_env, case) -> None:
    assert exchange_with(globus, CODE_REFUSALS[case]) == (400, "invalid_grant")


def test_a_code_is_good_for_one_exchange(globus, globus_env) -> None:
    client = native_client()
    client.oauth2_start_flow(requested_scopes=[INFERENCE_SCOPE])
    code = globus.approve(client.oauth2_get_authorize_url())
    client.oauth2_exchange_code_for_tokens(code)
    assert refusal(lambda: client.oauth2_exchange_code_for_tokens(code)) == (400, "invalid_grant")


def test_authorize_refuses_an_unknown_client(globus, globus_env) -> None:
    client = globus_sdk.NativeAppAuthClient(client_id="58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944")
    client.oauth2_start_flow(requested_scopes=[INFERENCE_SCOPE])
    with pytest.raises(RuntimeError) as caught:
        globus.approve(client.oauth2_get_authorize_url())
    assert str(caught.value) == "authorize refused (400): Error unknown client_id"


def test_a_clock_skew_of_a_day_fails_id_token_validation(globus, globus_env) -> None:
    globus.clock_offset = 86400
    tokens = login(globus, native_client())
    with pytest.raises(jwt.ImmatureSignatureError):
        tokens.decode_id_token()


def test_slow_and_dead_answers_hit_the_sdks_timeout_and_the_stand_in_still_stops(globus, globus_env, monkeypatch) -> None:
    monkeypatch.setenv("GLOBUS_SDK_HTTP_TIMEOUT", "0.5")
    refresh = globus.issue_tokens()["refresh_token"]
    client = native_client()
    outcomes = {}
    for knob, value in (("refresh_delay", 1.5), ("dead", True)):
        setattr(globus, knob, value)
        started = time.monotonic()
        with client.retry_config.tune(max_retries=0), pytest.raises(globus_sdk.GlobusTimeoutError):
            client.oauth2_refresh_token(refresh)
        outcomes[knob] = time.monotonic() - started < 2
        setattr(globus, knob, {"refresh_delay": 0.0, "dead": False}[knob])
    assert outcomes == {"refresh_delay": True, "dead": True}
    deadline = time.monotonic() + 5
    while not globus.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    # The slow refresh is logged once its delay is over (the client has left); the dead one was never read.
    assert [(r.path, r.grant_type) for r in globus.requests] == [("/v2/oauth2/token", "refresh_token")]
    globus.dead = True
    started = time.monotonic()
    globus.stop()  # with a connection still held by `dead`
    assert (time.monotonic() - started < 2, globus.url) == (True, None)


class HeadlessLogin(CommandLineLoginFlowManager):
    """What a test or a GUI does instead of a terminal: take the URL, hand back the code."""

    standin: GlobusStandIn
    seen: list[str] = []

    def print_authorize_url(self, authorize_url: str) -> None:
        self.seen.append(authorize_url)

    def prompt_for_code(self) -> str:
        return self.standin.approve(self.seen[-1])


def test_user_app_login_and_refresh_through_a_headless_command_line_flow(globus, globus_env) -> None:
    flow = type("Flow", (HeadlessLogin,), {"standin": globus, "seen": []})
    storage = MemoryTokenStorage()

    def user_app() -> globus_sdk.UserApp:
        return globus_sdk.UserApp(
            "metis-env-test", client_id=ALCF_TOKENS_CLIENT_ID,
            scope_requirements={INFERENCE_RESOURCE_SERVER: [INFERENCE_SCOPE]},
            config=globus_sdk.GlobusAppConfig(login_flow_manager=flow, token_storage=storage, request_refresh_tokens=True),
        )

    app = user_app()
    app.login(auth_params=GlobusAuthorizationParameters(session_required_policies=[INFERENCE_SESSION_POLICY], prompt="login"), force=True)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(flow.seen[0]).query)
    # The SDK joins scopes from a set: their order varies from run to run.
    assert (sorted(query["scope"][0].split()), query["prompt"], query["session_required_policies"]) == (
        [INFERENCE_SCOPE, "openid"], ["login"], [INFERENCE_SESSION_POLICY])
    header = app.get_authorizer(INFERENCE_RESOURCE_SERVER).get_authorization_header()
    assert (gateway_get(globus, "whoami", header.split()[1])[0], globus.grants("refresh_token")) == (200, 0)

    # A stored token within the SDK's 60 s refresh margin is refreshed on use, through the stand-in.
    data = storage.get_token_data(INFERENCE_RESOURCE_SERVER)
    data.expires_at_seconds = int(time.time()) + 30
    storage.store_token_data_by_resource_server({INFERENCE_RESOURCE_SERVER: data})
    fresh = user_app().get_authorizer(INFERENCE_RESOURCE_SERVER).get_authorization_header()
    assert (fresh != header, globus.grants("refresh_token"), gateway_get(globus, "whoami", fresh.split()[1])[0]) == (True, 1, 200)


class StandInBrowser(webbrowser.BaseBrowser):
    """The user's browser for the local-server flow: logs in at the stand-in, lands on the SDK's server."""

    def __init__(self, standin: GlobusStandIn) -> None:
        super().__init__("standin-browser")
        self.standin, self.codes = standin, []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.codes.append(self.standin.approve(url))
        return True


def test_user_app_local_server_flow_with_a_browser_that_approves(globus, globus_env, monkeypatch) -> None:
    for name in ("SSH_TTY", "SSH_CONNECTION"):
        monkeypatch.delenv(name, raising=False)
    browser = StandInBrowser(globus)
    monkeypatch.setattr(webbrowser, "get", lambda using=None: browser)
    app = globus_sdk.UserApp(
        "metis-env-test", client_id=ALCF_TOKENS_CLIENT_ID,
        scope_requirements={INFERENCE_RESOURCE_SERVER: [INFERENCE_SCOPE]},
        config=globus_sdk.GlobusAppConfig(login_flow_manager="local-server", token_storage=MemoryTokenStorage(),
                                          request_refresh_tokens=True),
    )
    app.login(force=True)
    redirect = globus.authorizations[0]["redirect_uri"]
    token = app.get_authorizer(INFERENCE_RESOURCE_SERVER).get_authorization_header().split()[1]
    assert (redirect.startswith("http://127.0.0.1:"), len(browser.codes), gateway_get(globus, "whoami", token)[0]) == (True, 1, 200)


# -- the real alcf-tokens CLI, driven through a pipe (GATEWAY.md E5) -----------------------------


@pytest.mark.skipif(sys.version_info < (3, 10), reason="alcf-tokens needs Python 3.10+")
def test_alcf_tokens_login_through_a_pipe_then_get_token(globus, globus_env) -> None:
    cache = alcf_tokens_login(globus, globus_env)

    query = globus.authorizations[0]
    assert (sorted(query["scope"].split()), query["prompt"], query["session_required_policies"], query["client_id"]) == (
        [INFERENCE_SCOPE, "openid"], "login", INFERENCE_SESSION_POLICY, ALCF_TOKENS_CLIENT_ID)
    stored = json.loads(cache.read_text())["data"]["DEFAULT"]
    assert ({rs: (d["scope"], d["identity_id"]) for rs, d in stored.items()}
            == {INFERENCE_RESOURCE_SERVER: (INFERENCE_SCOPE, IDENTITY), AUTH_RESOURCE_SERVER: ("openid", IDENTITY)})

    got = subprocess.run([ALCF_TOKENS, "get-token", "inference"], capture_output=True, text=True, env=globus_env, timeout=60)
    token = stored[INFERENCE_RESOURCE_SERVER]["access_token"]
    assert (got.returncode, got.stdout, got.stderr, globus.token_status(token)) == (0, token + "\n", "", "valid")

    # A refresh token the stand-in refuses: alcf-tokens fails (with its traceback), as against Globus.
    globus.refresh_fails = True
    data = json.loads(cache.read_text())
    data["data"]["DEFAULT"][INFERENCE_RESOURCE_SERVER]["expires_at_seconds"] = int(time.time()) + 30
    cache.write_text(json.dumps(data))
    got = subprocess.run([ALCF_TOKENS, "get-token", "inference"], capture_output=True, text=True, env=globus_env, timeout=60)
    assert (got.returncode, got.stdout, "invalid_grant" in got.stderr, globus.grants("refresh_token")) == (1, "", True, 1)


# -- the stand-in itself -------------------------------------------------------------------------------


def test_env_repr_and_log_never_carry_a_token(globus, globus_env) -> None:
    tokens = login(globus, native_client())
    gateway_get(globus, "whoami", tokens.by_resource_server[INFERENCE_RESOURCE_SERVER]["access_token"])
    assert globus.env() == {
        "GLOBUS_SDK_SERVICE_URL_AUTH": globus.url, "METIS_ENV_GATEWAY_URL": globus.url + "resource_server/",
        "GLOBUS_SDK_VERIFY_SSL": globus.ca_file, "SSL_CERT_FILE": globus.ca_file}
    secrets = [d[k] for d in tokens.by_resource_server.values() for k in ("access_token", "refresh_token")] + [tokens["id_token"]]
    shown = repr(globus) + repr(globus.requests) + repr(globus.env())
    assert [s in shown for s in secrets] == [False] * len(secrets)
    assert globus.requests[-1] == LoggedRequest("GET", "/resource_server/whoami", None, True, 200)


def test_plain_http_and_knobs_from_many_threads() -> None:
    with GlobusStandIn() as standin:
        assert (standin.url.startswith("http://127.0.0.1:"), standin.ca_file, sorted(standin.env())) == (
            True, None, ["GLOBUS_SDK_SERVICE_URL_AUTH", "METIS_ENV_GATEWAY_URL"])
        tokens = [standin.issue_tokens()["access_token"] for _ in range(8)]
        results: list[int] = []

        def hit(token: str) -> None:
            req = urllib.request.Request(standin.gateway_url + "whoami", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as response:
                results.append(response.status)

        threads = [threading.Thread(target=hit, args=(t,)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [200] * 8
    assert standin.url is None
