"""metis_env.openai_client on a gateway endpoint, with the real gateway source and globus-sdk against
the loopback stand-in: a token about to expire is refreshed before a request, never sent dead."""

from __future__ import annotations

import ssl
import time

import httpx

import metis_env
from tests._gateway import gateway_env, login_headless, metadata
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

LIFETIME = 6  # seconds each access token lives
MARGIN = 3  # token_refresh_margin: read again when less than this is left


def test_a_long_running_client_refreshes_its_token_before_it_expires(globus, globus_env, monkeypatch):  # noqa: F811
    globus.access_lifetime = LIFETIME
    env = gateway_env(globus_env, METIS_ENV_TOKEN_REFRESH_MARGIN=str(MARGIN))
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    for name in ("METIS_ENV_STORE", "METIS_ENV_TOKEN_REFRESH_MARGIN"):
        monkeypatch.setenv(name, env[name])
    http = httpx.Client(verify=ssl.create_default_context(cafile=globus.ca_file))
    client = metis_env.openai_client("metis", http_client=http, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]

    replies = [client.chat.completions.create(model="gpt-oss-120b", messages=messages).choices[0].message.content]
    first_expiry = metadata(env)["gateway"]["expires"]
    refreshed = globus.grants("refresh_token")  # 0, or 1 if the login's token was already inside the margin
    time.sleep(LIFETIME + 0.5)  # the first token is dead now: a client that kept it would get 401
    replies.append(client.chat.completions.create(model="gpt-oss-120b", messages=messages).choices[0].message.content)
    replies.append(client.chat.completions.create(model="gpt-oss-120b", messages=messages).choices[0].message.content)

    assert (len(replies), len(set(replies)), globus.grants("refresh_token") - refreshed) == (3, 1, 1)
    assert metadata(env)["gateway"]["expires"] != first_expiry
    assert str(client.base_url) == globus.gateway_url + "metis/api/v1/"
