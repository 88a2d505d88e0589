"""A Globus service account (issue 16 item 4): `login --service-account CLIENT_ID`, its secret from
stdin or a hidden prompt, tokens minted with the real globus-sdk's client-credentials grant against the
stand-in, minted again inside the margin, refused by Globus or by the gateway's allow-list, forgotten
at logout."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys

from tests._gateway import exported_json, gateway_env, keys_file, metadata  # noqa: F401
from tests._globus import gateway_get, globus, globus_env  # noqa: F401
from tests.conftest import REPO, metis

CLIENT = "0f6b2c1e-5d4a-4b3c-9e8f-7a6b5c4d3e2f"
SECRET = "sa-secret-Yk3pQ9rT"  # what Globus shows once when the secret is made
MARGIN_ALL = {"METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}
ADVICE = (
    "the ALCF gateway accepts a Globus service account only once ALCF has allow-listed it: ask ALCF support "
    f"(support@alcf.anl.gov) to allow {CLIENT}@clients.auth.globus.org for the Inference Service"
)


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def sa_login(env: dict, secret: str = SECRET, *extra: str) -> subprocess.CompletedProcess:
    return metis("login", "--service-account", CLIENT, "--secret-stdin", *extra, input=(secret + "\n").encode(), env=env)


def test_a_service_account_logs_in_without_a_browser_and_its_token_works(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    globus.add_service_account(CLIENT, SECRET)
    proc = sa_login(env)
    section = metadata(env)["gateway"]
    assert result(proc) == (0, "", (
        f"metis-env: logged in to the ALCF gateway as service account {CLIENT}; token valid until {section['expires']}, "
        "minted again when needed\nendpoint metis: new\nendpoint sophia: new\n"
    ))
    assert (globus.grants("client_credentials"), globus.grants("authorization_code"), globus.authorizations) == (1, 0, [])
    assert (section["client_id"], section["identity"], "refresh" in section) == (CLIENT, f"{CLIENT}@clients.auth.globus.org", False)
    # the secret is kept in the store like a key: keys.json (0600), never endpoints.yaml
    assert keys_file(env)[section["secret"]] == SECRET and SECRET not in json.dumps(metadata(env))
    token = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    assert (globus.token_client(token), gateway_get(globus, "whoami", token)[0]) == (CLIENT, 200)
    assert result(sa_login(env)) == (0, "", (
        f"metis-env: already logged in to the ALCF gateway as service account {CLIENT} (token valid until "
        f"{section['expires']}); `metis-env login --service-account {CLIENT} --force` logs in again\n"
    ))
    assert globus.grants("client_credentials") == 1


def test_a_new_secret_or_another_service_account_logs_in_again(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    other, rotated = "1a2b3c4d-0000-4000-8000-000000000002", "sa-secret-rotated-Q7"
    globus.add_service_account(CLIENT, SECRET)
    globus.add_service_account(other, SECRET)
    assert sa_login(env).returncode == 0
    globus.add_service_account(CLIENT, rotated)  # the secret is rotated at app.globus.org
    assert (sa_login(env, rotated).returncode, keys_file(env)[metadata(env)["gateway"]["secret"]]) == (0, rotated)
    proc = metis("login", "--service-account", other, "--secret-stdin", input=(SECRET + "\n").encode(), env=env)
    section = metadata(env)["gateway"]
    assert (proc.returncode, section["client_id"], section["identity"], globus.grants("client_credentials")) == (
        0, other, f"{other}@clients.auth.globus.org", 3)


def test_inside_the_margin_export_run_and_the_proxy_mint_a_new_token_with_no_reauth_warning(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env, METIS_ENV_REAUTH_AFTER_DAYS="0.000001")
    globus.add_service_account(CLIENT, SECRET)
    assert sa_login(env).returncode == 0
    old = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    proc = metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL})
    new = exported_json(proc)["OPENAI_API_KEY"]
    assert (proc.stderr, new != old, globus.token_status(new), globus.grants("client_credentials"), globus.grants("refresh_token")) == (
        b"", True, "valid", 2, 0)
    child = "import os; print(os.environ['OPENAI_API_KEY'])"
    ran = metis("run", "metis", "--", sys.executable, "-c", child, env={**env, **MARGIN_ALL})
    assert (ran.returncode, ran.stderr, globus.token_status(ran.stdout.decode().strip())) == (0, b"", "valid")
    chat = ("import openai; print(openai.OpenAI(max_retries=0).chat.completions.create(model='gpt-oss-120b', "
            "messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message.content)")
    proxied = metis("run", "--proxy", "metis", "--", sys.executable, "-c", chat, env={**env, **MARGIN_ALL})
    assert result(proxied) == (0, "Hello from the metis-env stand-in gateway.\n", "")


def test_a_wrong_secret_is_exit_25_and_stores_nothing(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    globus.add_service_account(CLIENT, SECRET)
    assert result(sa_login(env, "not-the-secret")) == (25, "", (
        "metis-env: error: Globus refused the service account's client id or secret for the service account's token "
        "(invalid_client); check them (app.globus.org, Settings, Developers), then "
        "`metis-env login --service-account CLIENT_ID --force`\n"
    ))
    assert (os.path.exists(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml")) and "gateway" in metadata(env), keys_file(env)) == (False, {})


def test_an_account_the_gateway_has_not_allow_listed_is_exit_25_and_doctor_explains(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    globus.add_service_account(CLIENT, SECRET, allow_listed=False)
    assert result(sa_login(env)) == (25, "", f"metis-env: error: the gateway refused the service account {CLIENT}: {ADVICE}\n")
    assert keys_file(env) == {}
    globus.add_service_account(CLIENT, SECRET, allow_listed=True)
    assert sa_login(env).returncode == 0
    globus.add_service_account(CLIENT, SECRET, allow_listed=False)  # ALCF took it off the list
    doctor = metis("doctor", env=env)
    lines = [line for line in doctor.stdout.decode().splitlines() if "service account" in line]
    assert (doctor.returncode, lines) == (17, [
        "ok       gateway re-authentication: a service account: tokens are minted again when needed, no 30-day re-login",
        f"problem  gateway service account: the gateway refuses service account {CLIENT} (HTTP 401); fix: {ADVICE}",
    ])


def test_logout_forgets_the_secret_and_revokes_the_token(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    globus.add_service_account(CLIENT, SECRET)
    assert sa_login(env).returncode == 0
    token = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    assert metis("logout", env=env).returncode == 0
    assert (keys_file(env), "gateway" in metadata(env), globus.token_status(token)) == ({}, False, "revoked")


def test_the_secret_is_read_from_a_hidden_prompt_or_refused_without_a_terminal(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    globus.add_service_account(CLIENT, SECRET)
    no_tty = subprocess.run([sys.executable, "-m", "metis_env", "login", "--service-account", CLIENT], input=SECRET.encode(),
                            capture_output=True, env={"PYTHONPATH": str(REPO), **env}, timeout=60, start_new_session=True)
    assert result(no_tty) == (2, "", "metis-env: error: no terminal to ask for the client secret on; pipe it with --secret-stdin\n")
    # at a terminal: the prompt, and the secret typed is not echoed (with --secret-stdin too: stdin is the terminal)
    for extra in ([], ["--secret-stdin"]):
        code, seen = login_at_a_terminal(env, extra)
        assert (code, SECRET.encode() in seen, b"Globus client secret of" in seen,
                b"logged in to the ALCF gateway as service account" in seen) == (0, False, True, True), (extra, seen)
        assert keys_file(env)[metadata(env)["gateway"]["secret"]] == SECRET
        assert metis("logout", env=env).returncode == 0


def login_at_a_terminal(env: dict, extra: list[str]) -> tuple[int, bytes]:
    """``login --service-account`` in a session whose controlling terminal (and stdin) is a real pty;
    the secret is typed once the prompt shows. -> (exit code, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session whose controlling terminal is the pty
        os.execve(sys.executable, [sys.executable, "-m", "metis_env", "login", "--service-account", CLIENT, *extra],
                  {"PYTHONPATH": str(REPO), **env})
    seen = b""
    while b"Globus client secret of" not in seen:
        if not select.select([fd], [], [], 60)[0]:  # waiting for the prompt (a state), bounded
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"no prompt for the secret; the terminal showed {seen!r}")
        chunk = os.read(fd, 1024)
        assert chunk, seen  # it ended without asking
        seen += chunk
    os.write(fd, SECRET.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen
