"""Gateway endpoints through the real CLI against the Globus/gateway stand-in (TLS, a test CA): the
real `metis-env login --no-browser`, then `run --proxy` across token refreshes with the real openai
client as the child, `status`, `check` and the warning export gives from the status cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from metis_env.commands.demo_gateway import drive_login
from tests._globus import globus, globus_env, logged_when  # noqa: F401  (fixtures)
from tests.conftest import REPO

METIS = ("Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b")
REPLY = "Hello from the metis-env stand-in gateway."
REAUTH = (
    "the gateway's policy asks for a fresh Globus login (high-assurance re-authentication, about every 30 days); "
    "log out at https://app.globus.org/logout, then run `metis-env login --force`"
)


@pytest.fixture
def env(globus, globus_env, file_store):  # noqa: F811
    return {**os.environ, "PYTHONPATH": str(REPO)}


def cli(env, *args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "metis_env", *args], capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def login(globus, env):  # noqa: F811
    lines = []
    code = drive_login([sys.executable, "-m", "metis_env", "login", "--no-browser"], env, globus.approve, lines.append)
    assert code == 0, "\n".join(lines)


@pytest.fixture
def logged_in(globus, env):  # noqa: F811
    login(globus, env)
    return env


# --- run --proxy ---------------------------------------------------------------------------------

LONG_JOB = r"""
import json, os, sys, time, openai
client = openai.OpenAI(max_retries=0)
msgs = [{"role": "user", "content": "ping"}]
plain = streamed = 0
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    assert client.chat.completions.create(model="gpt-oss-120b", messages=msgs).choices[0].message.content == sys.argv[2]
    plain += 1
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(model="gpt-oss-120b", messages=msgs, stream=True) if c.choices)
    assert text == sys.argv[2], text
    streamed += 1
    time.sleep(0.2)
print(json.dumps({"plain": plain > 5, "streamed": plain == streamed, "key": os.environ["OPENAI_API_KEY"][:16],
                  "expires": "METIS_ENV_TOKEN_EXPIRES" in os.environ}))
"""


def test_run_proxy_keeps_a_long_job_working_across_token_refreshes(globus, env):  # noqa: F811
    globus.access_lifetime = 3  # every token the stand-in issues lives 3 s
    login(globus, env)
    refreshes_before = globus.grants("refresh_token")
    env = {**env, "METIS_ENV_TOKEN_REFRESH_MARGIN": "1"}
    code, out, err = cli(env, "run", "--proxy", "metis", "--", sys.executable, "-c", LONG_JOB, "10", REPLY)
    assert (code, json.loads(out or "null"), err) == (
        0, {"plain": True, "streamed": True, "key": "metis-env-local-", "expires": False}, ""
    )
    chats = [r for r in globus.requests if r.path.endswith("/chat/completions")]
    assert {(r.bearer, r.status) for r in chats} == {(True, 200)}  # never an expired token upstream
    assert globus.grants("refresh_token") - refreshes_before >= 3  # 10 s of 3 s tokens


def test_the_child_never_holds_the_token(globus, logged_in, env_setup):  # noqa: F811
    keys = json.loads((env_setup / "keys.json").read_text())["keys"]
    tokens = [v for k, v in keys.items() if k.startswith(("gateway/access/", "gateway/refresh/"))]
    assert len(tokens) == 2
    child = "import os, json; print(json.dumps(dict(os.environ)))"
    code, out, err = cli(logged_in, "run", "--proxy", "metis", "--", sys.executable, "-c", child)
    seen = json.loads(out)
    assert (code, err) == (0, "")
    assert [name for name, value in seen.items() if any(t in value for t in tokens)] == []
    assert seen["OPENAI_BASE_URL"].startswith("http://127.0.0.1:") and "SAMBANOVA_API_KEY" not in seen


def test_run_proxy_routes_by_model_across_clusters_and_serves_models(globus, logged_in):  # noqa: F811
    child = (
        "import json, openai\nc = openai.OpenAI(max_retries=0)\n"
        "print(json.dumps([c.chat.completions.create(model=m, messages=[]).choices[0].message.content for m in ('gpt-oss-120b', 'openai/gpt-oss-120b')]"
        " + [[m.id for m in c.models.list()]]))"
    )
    code, out, err = cli(logged_in, "run", "--proxy", "metis", "--", sys.executable, "-c", child)
    assert (code, json.loads(out), err) == (
        0, [REPLY, REPLY, [*METIS, "meta-llama/Meta-Llama-3.1-8B-Instruct", "openai/gpt-oss-120b"]], ""
    )
    chats = [r.path for r in globus.requests if r.path.endswith("/chat/completions")]
    assert chats == ["/resource_server/metis/api/v1/chat/completions", "/resource_server/sophia/vllm/v1/chat/completions"]


STATUS_CHILD = (
    "import openai, sys\ntry:\n    openai.OpenAI(max_retries=0).chat.completions.create(model=sys.argv[1], messages=[])\n"
    "except openai.APIStatusError as e:\n    print(e.status_code, e.body)"
)


def test_run_proxy_passes_not_live_and_a_policy_lapse_on_and_says_what_to_do(globus, logged_in):  # noqa: F811
    globus.set_model_status("metis", "gemma-4-31B-it", "Queued")
    code, out, err = cli(logged_in, "run", "--proxy", "metis", "--", sys.executable, "-c", STATUS_CHILD, "gemma-4-31B-it")
    assert (code, out, err) == (0, "503 {'code': 'internal_endpoint_error', 'message': \"'gemma-4-31B-it' is not currently live on Metis.\", 'info': {}}\n", "")
    globus.policy_ok = False
    code, out, err = cli(logged_in, "run", "--proxy", "metis", "--", sys.executable, "-c", STATUS_CHILD + "\n    print(1)", "gpt-oss-120b")
    assert (code, out.splitlines()[-1], err) == (0, "1", f"metis-env: warning: {REAUTH}\n")
    assert out.startswith("401 ")


# --- status and check ----------------------------------------------------------------------------


def test_status_of_gateway_endpoints(globus, logged_in):  # noqa: F811
    globus.set_model_status("metis", "gemma-4-31B-it", "Queued")
    globus.set_model_status("metis", "Mistral-Large-3-675B-Instruct-2512", "Starting")
    assert cli(logged_in, "status") == (0, (
        "ENDPOINT  MODEL                                  STATUS    CONTEXT  TOOLS  REASONING  TPM (USER/MODEL)\n"
        "metis     Mistral-Large-3-675B-Instruct-2512     starting  262144   no     no         200000/2000000\n"
        "metis     gemma-4-31B-it                         queued    131072   no     no         200000/2000000\n"
        "metis     gpt-oss-120b                           live      131072   no     yes        200000/2000000\n"
        "sophia    meta-llama/Meta-Llama-3.1-8B-Instruct  offline   131072   yes    no         200000/2000000\n"
        "sophia    openai/gpt-oss-120b                    live      131072   yes    yes        200000/2000000\n"
    ), "")
    code, out, err = cli(logged_in, "status", "metis", "--json")
    assert (code, err, [(e["endpoint"], e["status"], e["maintenance"], e["models"]) for e in json.loads(out)["endpoints"]]) == (
        0, "", [("metis", "ok", False, {"Mistral-Large-3-675B-Instruct-2512": "starting", "gemma-4-31B-it": "queued", "gpt-oss-120b": "live"})]
    )
    # export warns from what status saw, with no request to the gateway
    asked = len(globus.requests)
    code, out, err = cli(logged_in, "export", "metis", "--model", "gemma-4-31B-it")
    assert (code, re.sub(r"\(\d+ s ago\)", "(N s ago)", err)) == (0, (
        "metis-env: warning: model 'gemma-4-31B-it' of endpoint metis was queued at the last status (N s ago); "
        "requests may fail until it is live: metis-env status metis\n"
    ))
    assert cli(logged_in, "export", "metis", "--model", "gpt-oss-120b")[2] == ""
    assert len(globus.requests) == asked


def test_check_of_a_gateway_endpoint_tells_each_case_apart(globus, logged_in):  # noqa: F811
    from metis_env.testing.gateway_standin import Throttle

    # checks back to back: more requests in a second than FIRST's 10/s, which this test is not about
    globus.throttle = Throttle(every_route=False)
    code, out, err = cli(logged_in, "check", "metis")
    assert (code, re.sub(r"ok in \d+ ms", "ok in N ms", out), err) == (0, (
        "metis: ok in N ms: signed in as demo@anl.gov; Mistral-Large-3-675B-Instruct-2512 live, gemma-4-31B-it live, gpt-oss-120b live\n"
    ), "")
    assert not any(r.path.endswith("/v1/models") or r.path.endswith("/chat/completions") for r in globus.requests)  # no chat
    log = logged_when(globus, lambda log: sum(r.path.endswith("/metis/models") for r in log) == 2)  # login's, check's
    assert sorted(r.path for r in log if r.path.startswith("/resource_server/")) == [
        "/resource_server/list-endpoints", "/resource_server/metis/jobs", "/resource_server/metis/models",
        "/resource_server/metis/models", "/resource_server/sophia/models", "/resource_server/whoami"]

    globus.set_model_status("metis", "Mistral-Large-3-675B-Instruct-2512", "Queued")  # the model export picks
    code, out, err = cli(logged_in, "check", "metis")
    tail = "Mistral-Large-3-675B-Instruct-2512 (what export picks) is not live: see `metis-env status metis`"
    assert (code, out.endswith(f"{tail}\n"), err.endswith(f"{tail}\n")) == (21, True, True)
    pinned = {**logged_in, "METIS_ENV_DEFAULT_MODEL": "mistral-large-3-675b-instruct-2512"}  # any case
    assert cli(pinned, "check", "metis", "--json")[0] == 21
    # unpinned, export now takes the first model that check saw live, and so does check
    assert cli(logged_in, "check", "metis", "--json")[0] == 0

    globus.set_model_status("metis", "Mistral-Large-3-675B-Instruct-2512", "Live")
    globus.set_maintenance("metis")
    assert cli(logged_in, "check", "metis")[::2] == (21, (
        "metis-env: error: check of endpoint metis: signed in as demo@anl.gov; cluster metis is under maintenance "
        "(every model listed as stopped); try later\n"
    ))
    assert cli(logged_in, "status", "metis")[0] == 21
    globus.set_maintenance("metis", None)

    globus.policy_ok = False
    assert cli(logged_in, "check", "metis")[::2] == (19, f"metis-env: error: check of endpoint metis: {REAUTH}\n")
    globus.policy_ok = True

    globus.gateway_fault = "html"
    assert cli(logged_in, "check", "metis")[0] == 20
    globus.gateway_fault = None

    globus.revoke_all()  # a logout elsewhere: the token still looks valid here
    assert cli(logged_in, "check", "metis")[::2] == (12, (
        "metis-env: error: check of endpoint metis: the gateway refused the Globus token (whoami: HTTP 401: "
        "Token is either not active or invalid); run `metis-env login`\n"
    ))


EXPIRY_CHILD = r"""
import openai, time
c = openai.OpenAI(max_retries=0)
print(c.chat.completions.create(model="gpt-oss-120b", messages=[]).choices[0].message.content, flush=True)
time.sleep(10)  # the token expires meanwhile, and Globus refuses to refresh it
try:
    c.chat.completions.create(model="gpt-oss-120b", messages=[])
except openai.AuthenticationError as e:
    print(e.status_code, e.body["code"], e.body["message"])
"""


def test_run_proxy_when_the_refresh_is_refused_gives_the_child_metis_envs_line(globus, env):  # noqa: F811
    globus.access_lifetime = 10  # long enough for the first request, short for the second
    login(globus, env)
    globus.refresh_fails = True
    code, out, err = cli({**env, "METIS_ENV_TOKEN_REFRESH_MARGIN": "1"}, "run", "--proxy", "metis", "--", sys.executable, "-c", EXPIRY_CHILD)
    assert len(out.splitlines()) == 2, (code, out, err)
    first, second = out.splitlines()
    assert (code, first, second.split(" ", 2)[:2]) == (0, REPLY, ["401", "metis_env_error"])
    message = second.split(" ", 2)[2]
    assert message.startswith("metis-env proxy: ") and "metis-env login" in message
    assert f"metis-env: warning: proxy: {message[len('metis-env proxy: '):]}\n" in err


IDP = (
    "the gateway does not accept the identity provider of your Globus login (Demo User (demo@anl.gov)); it accepts "
    "anl.gov, alcf.anl.gov: log out at https://app.globus.org/logout, then run `metis-env login --force` and log in "
    "with an ALCF or Argonne identity"
)


def test_an_identity_provider_the_gateway_refuses_is_told_apart_everywhere(globus, logged_in):  # noqa: F811
    """FIRST's 401 "Permission denied. Must authenticate with ..." (about 330 characters, its advice at
    the end): exit 24 and one line of advice from check, status, sync --gateway and login; a warning
    from run --proxy, whose child sees the gateway's own 401."""
    globus.idp_ok = False
    assert cli(logged_in, "check", "metis")[::2] == (24, f"metis-env: error: check of endpoint metis: {IDP}\n")
    assert cli(logged_in, "sync", "--gateway") == (24, "", f"metis-env: error: {IDP}\n")
    code, out, err = cli(logged_in, "status", "metis", "--json")
    assert (code, [(e["status"], e["message"]) for e in json.loads(out)["endpoints"]]) == (24, [("identity_not_authorized", IDP)])
    code, out, err = cli(logged_in, "run", "--proxy", "metis", "--", sys.executable, "-c", STATUS_CHILD, "gpt-oss-120b")
    assert (code, out[:4], err) == (0, "401 ", f"metis-env: warning: {IDP}\n")
    lines = []
    code = drive_login([sys.executable, "-m", "metis_env", "login", "--no-browser", "--force"], logged_in, globus.approve, lines.append)
    assert (code, lines[-1]) == (24, f"metis-env: error: {IDP}")
