"""FIRST's introspection cache in the gateway stand-in: a token the gateway has checked stays
accepted for min(600 s, its life left) after it is revoked (at a logout), as
argonne-lcf/FIRST's auth.introspect_token caches a good answer; GatewayState.checked_ttl plays it."""

from __future__ import annotations

import pytest

from metis_env.testing.gateway_standin import ALL_CLUSTERS
from metis_env.testing.globus_standin import GlobusStandIn
from tests._gateway import gateway_env, login_headless
from tests._globus import gateway_get, gateway_request, globus, globus_env  # noqa: F401  (fixtures)
from tests._tls import make_test_ca
from tests.conftest import metis

NOT_ACTIVE = (401, {"error": {"code": "unauthorized", "message": "Token is either not active or invalid", "info": {}}})
EXPIRED = (401, {"error": {"code": "unauthorized", "message": "Access token expired.", "info": {}}})
ASK = {"model": "openai/gpt-oss-120b", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(tmp_path):
    ca, cert, key = make_test_ca(tmp_path)
    with GlobusStandIn(cert_file=str(cert), key_file=str(key), ca_file=str(ca), clusters=ALL_CLUSTERS) as standin:
        yield standin


def whoami(standin, token):
    status, body = gateway_get(standin, "whoami", token)
    return (status, body) if status != 200 else (200, body["username"])


@pytest.mark.parametrize("ttl, after_revocation", [(600.0, (200, "demo@anl.gov")), (0.0, NOT_ACTIVE)])
def test_a_checked_token_stays_accepted_after_its_revocation_while_the_check_is_cached(gateway, ttl, after_revocation):
    gateway.gateway.checked_ttl = ttl
    checked, unchecked = gateway.issue_tokens()["access_token"], gateway.issue_tokens()["access_token"]
    assert whoami(gateway, checked) == (200, "demo@anl.gov")
    gateway.revoke_all()
    assert [whoami(gateway, checked), gateway_request(gateway, "POST", "minerva/api/v1/messages", checked, ASK)[0]] == [
        after_revocation, after_revocation[0]]
    assert whoami(gateway, unchecked) == NOT_ACTIVE  # never checked: Globus is asked, and says inactive


def test_a_cached_check_does_not_outlive_the_tokens_expiry(gateway):
    gateway.gateway.checked_ttl = 600.0
    token = gateway.issue_tokens(lifetime=3600)["access_token"]
    assert whoami(gateway, token)[0] == 200
    gateway.clock_offset = 7200  # the token's exp is past by the gateway's clock, its check still cached
    assert whoami(gateway, token) == EXPIRED


def test_after_logout_the_old_token_still_works_at_the_gateway_for_a_while(globus, globus_env):  # noqa: F811
    """What `metis-env logout` tells the user: it revokes the tokens at Globus, but the gateway may
    accept the old token until its cached check ends (up to 10 minutes)."""
    globus.gateway.checked_ttl = 600.0
    env = gateway_env(globus_env)
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0, err
    token = metis("get", "key", "metis", env=env).stdout.decode().strip()
    chat = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": "hi"}]}
    assert gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, chat)[0] == 200
    assert metis("logout", env=env).returncode == 0
    assert (globus.token_status(token), gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, chat)[0]) == ("revoked", 200)
