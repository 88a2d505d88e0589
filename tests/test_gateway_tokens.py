"""The gateway source end to end, with the real globus-sdk against the loopback stand-in: login,
export of Globus tokens, refresh (once, under the lock), offline, logout, and coexistence with
endpoint files. Nothing here reaches Globus or ALCF."""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest

from metis_env.alcf import INFERENCE_SCOPE, INFERENCE_SESSION_POLICY
from tests._gateway import (  # noqa: F401  (fixture)
    concurrent_exports, exported_json, gateway_env, keys_file, logged_in, login_headless, metadata, slow_refresh_pending,
)
from tests._globus import globus, globus_env  # noqa: F401
from tests._trust import start_metis, wait_for_line
from tests.conftest import REPO, metis

MARGIN_ALL = {"METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}  # every token is "inside the margin"
METIS_MODELS = ["Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b"]


def gateway_export(base: str, token: str, model: str, endpoint: str, expires: str) -> dict:
    """Every variable export sets for a gateway endpoint: no SAMBANOVA_* names, the token also as
    ALCF_AI_TOKEN (the name ALCF's docs use), the expiry added."""
    return {
        "OPENAI_BASE_URL": base,
        "OPENAI_API_BASE": base,
        "OPENAI_API_KEY": token,
        "MODEL_NAME": model,
        "ALCF_AI_TOKEN": token,
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "METIS_ENV_ENDPOINT": endpoint,
        "METIS_ENV_TOKEN_EXPIRES": expires,
    }


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def export_metis(env: dict, **extra: str) -> subprocess.CompletedProcess:
    return metis("export", "metis", "--shell", "json", env={**env, **extra})


# --- login -----------------------------------------------------------------------------------------


def test_login_headless_asks_for_the_inference_scope_and_policy_and_stores_the_endpoints(globus, globus_env):
    env = gateway_env(globus_env)
    code, out, err, url = login_headless(env, globus)
    assert (code, out) == (0, b"")
    assert err.splitlines() == [
        "metis-env: log in to Globus (ALCF) in a browser on any machine at this URL:",
        url,
        "metis-env: then paste the authorization code it shows here and press Enter:",
        f"metis-env: logged in to the ALCF gateway; token valid until {metadata(env)['gateway']['expires']}",
        "endpoint metis: new",
        "endpoint sophia: new",
    ]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert (sorted(query["scope"][0].split()), query["prompt"], query["session_required_policies"]) == (
        sorted([INFERENCE_SCOPE, "openid"]), ["login"], [INFERENCE_SESSION_POLICY]
    )
    assert globus.grants("authorization_code") == 1
    section = metadata(env)["gateway"]
    # the metadata says when and who, never a token; the tokens sit in the store under their entry names
    assert sorted(section) == ["access", "backend", "client_id", "expires", "expires_at", "fingerprint", "gateway_url",
                               "identity", "login_at", "refresh", "refreshed_at", "scope", "store"]
    assert (section["identity"], section["scope"], section["store"]) == (globus.identity["sub"], INFERENCE_SCOPE, "file")
    stored = keys_file(env)
    assert sorted(stored) == sorted([section["access"], section["refresh"]])
    assert globus.token_status(stored[section["access"]]) == "valid"


def test_export_of_a_gateway_endpoint(logged_in):
    env, globus = logged_in
    section = metadata(env)["gateway"]
    token = keys_file(env)[section["access"]]
    base = globus.gateway_url + "metis/api/v1"  # no trailing slash, as ALCF's docs write it
    assert exported_json(export_metis(env)) == gateway_export(base, token, METIS_MODELS[0], "metis", section["expires"])
    assert result(metis("get", "key", "metis", env=env)) == (0, token + "\n", "")
    assert result(metis("get", "url", "sophia", env=env)) == (0, globus.gateway_url + "sophia/vllm/v1\n", "")
    ran = metis("run", "metis", "-m", "gpt-oss-120b", "--", sys.executable, "-c",
                "import os; print(os.environ['MODEL_NAME'], 'SAMBANOVA_API_KEY' in os.environ)", env=env)
    assert result(ran) == (0, "gpt-oss-120b False\n", "")
    assert globus.grants("refresh_token") == 0


def test_the_exported_token_works_at_the_gateway(logged_in):
    env, globus = logged_in
    script = (
        "import json, os, ssl, urllib.request\n"
        "req = urllib.request.Request(os.environ['OPENAI_BASE_URL'] + '/chat/completions', method='POST',\n"
        "    data=json.dumps({'model': os.environ['MODEL_NAME'], 'messages': [{'role': 'user', 'content': 'hi'}]}).encode(),\n"
        "    headers={'Authorization': 'Bearer ' + os.environ['OPENAI_API_KEY'], 'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(req, context=ssl.create_default_context()).status)\n"
    )
    assert result(metis("run", "metis", "-m", "gpt-oss-120b", "--", sys.executable, "-c", script, env=env)) == (0, "200\n", "")


def test_a_second_login_says_so_unless_forced(logged_in):
    env, globus = logged_in
    section = metadata(env)["gateway"]
    proc = metis("login", "--no-browser", env=env, input=b"")
    assert result(proc) == (0, "", (
        f"metis-env: already logged in to the ALCF gateway as {section['identity']} (token valid until "
        f"{section['expires']}, login 0 days ago); `metis-env login --force` logs in again\n"
    ))
    old = dict(keys_file(env))
    code, _out, _err, _url = login_headless(env, globus, "--force")
    assert (code, globus.grants("authorization_code")) == (0, 2)
    assert set(keys_file(env)).isdisjoint(old)  # the old tokens are gone from the store


def test_login_without_a_code_stores_nothing(globus, globus_env):
    env = gateway_env(globus_env)
    proc = metis("login", "--no-browser", env=env, input=b"")
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines()[-1] == (
        "metis-env: error: no authorization code was read (end of input); paste the code, or run `metis-env login` in a terminal"
    )
    assert not os.path.exists(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml"))


def test_export_without_a_login_says_metis_env_login(globus_env, file_store, endpoint_files):
    assert result(metis("export", "metis")) == (
        3, "false\n",
        "metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE\n",
    )


# --- the token on the hot path ---------------------------------------------------------------------


def test_a_fresh_token_is_exported_offline(logged_in):
    env, globus = logged_in
    before = exported_json(export_metis(env))
    globus.stop()
    assert exported_json(export_metis(env)) == before


def test_inside_the_margin_one_refresh_and_the_new_token_is_exported(logged_in):
    env, globus = logged_in
    old = exported_json(export_metis(env))["OPENAI_API_KEY"]
    proc = export_metis(env, **MARGIN_ALL)
    new = exported_json(proc)["OPENAI_API_KEY"]
    assert (proc.stderr, globus.grants("refresh_token"), new != old, globus.token_status(new)) == (b"", 1, True, "valid")
    # the old access token is deleted from the store once nothing points at it; the refresh token stays
    section = metadata(env)["gateway"]
    assert sorted(keys_file(env)) == sorted([section["access"], section["refresh"]])
    assert keys_file(env)[section["access"]] == new


def test_inside_the_margin_and_offline_the_valid_token_is_exported_with_a_warning(logged_in):
    env, globus = logged_in
    before = exported_json(export_metis(env))
    globus.stop()
    proc = export_metis(env, **MARGIN_ALL)
    assert (proc.returncode, exported_json(proc)) == (0, before)
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("metis-env: warning: the Globus token could not be refreshed (Globus Auth could not be reached for the refresh")
    assert lines[0].endswith("; using the current token, valid for 48 h more")


def test_an_expired_token_offline_fails_with_the_login_line(globus, globus_env):
    env = gateway_env(globus_env)
    globus.access_lifetime = 1
    assert login_headless(env, globus)[0] == 0
    time.sleep(1.2)
    globus.stop()
    proc = metis("export", "metis", env=env)
    assert (proc.returncode, proc.stdout) == (18, b"false\n")
    assert proc.stderr.decode().startswith("metis-env: error: the Globus access token expired and the Globus token could not be refreshed (")
    assert proc.stderr.decode().endswith("; run `metis-env login`\n") and proc.stderr.count(b"\n") == 1


def test_a_refused_refresh_while_the_token_works_hands_it_out_with_a_warning(logged_in):
    env, globus = logged_in
    old = exported_json(export_metis(env))
    globus.refresh_fails = True
    proc = export_metis(env, **MARGIN_ALL)
    assert (proc.returncode, exported_json(proc), proc.stderr.decode()) == (0, old, (
        "metis-env: warning: Globus refused the refresh (invalid_grant: the login expired or was revoked); "
        "run `metis-env login` before it expires; using the current token, valid for 48 h more\n"
    ))


def test_a_refused_refresh_of_an_expired_token_is_the_login_line(globus, globus_env):
    env = gateway_env(globus_env)
    globus.access_lifetime = 1
    assert login_headless(env, globus)[0] == 0
    wait_until(lambda: time.time() > metadata(env)["gateway"]["expires_at"], "the stored token's expiry")
    globus.refresh_fails = True
    assert result(metis("export", "metis", env=env)) == (18, "false\n", (
        "metis-env: error: Globus refused the refresh (invalid_grant: the login expired or was revoked); run `metis-env login`\n"
    ))


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    """Poll a state (not a time): fail naming ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_a_globus_answering_one_byte_every_5_s_holds_the_lock_no_longer_than_the_refresh_deadline(logged_in):
    from metis_env.sources.gateway.tokens import REFRESH_TIMEOUT

    env, globus = logged_in
    old = exported_json(export_metis(env))["OPENAI_API_KEY"]
    globus.token_drip = 5.0  # the status line alone would take a minute; the whole answer half an hour
    first = start_metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL})
    wait_until(lambda: globus.drips_started == 1, "the first exporter's refresh reached the slow Globus")
    second = start_metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL})  # waits for the lock
    out, err = first.communicate(timeout=120)
    # it left at its deadline: a few bytes of the status line (17 bytes, 85 s), the answer unfinished
    assert (globus.drips_finished, globus.drip_bytes < 10) == (0, True), globus.drip_bytes
    out2, err2 = second.communicate(timeout=120)
    assert (first.returncode, json.loads(out)["OPENAI_API_KEY"], second.returncode, json.loads(out2)["OPENAI_API_KEY"]) == (
        0, old, 0, old)
    assert err.decode() == (
        "metis-env: warning: the Globus token could not be refreshed (Globus Auth did not finish the refresh within "
        f"{REFRESH_TIMEOUT:g} s; check your network and try again); using the current token, valid for 48 h more\n"
    )
    assert re.fullmatch(
        r"metis-env: warning: the Globus token could not be refreshed \(Globus Auth did not finish the refresh within "
        r"10 s; check your network and try again\) \d+ s ago; the next try is after 60 s; using the current token, "
        r"valid for 48 h more\n", err2.decode()), err2
    assert (globus.drips_started, globus.drips_finished) == (1, 0)  # the second did not spend another deadline there


def test_fifty_concurrent_exports_inside_the_margin_refresh_once(logged_in):
    env, globus = logged_in
    slow_refresh_pending(globus, env)
    runs = concurrent_exports(env, 50, timeout=120)
    tokens = {exported_json(r)["OPENAI_API_KEY"] for r in runs}
    assert [(r.returncode, r.stderr) for r in runs] == [(0, b"")] * 50
    assert globus.grants("refresh_token") == 2  # the one above, and exactly one for the fifty
    assert len(tokens) == 1 and globus.token_status(tokens.pop()) == "valid"


@pytest.mark.parametrize("step", ["before-secrets", "before-metadata", "after-metadata", "after-cleanup"])
def test_a_refresh_killed_at_any_step_leaves_a_usable_token(logged_in, step):
    env, globus = logged_in
    old = exported_json(export_metis(env))["OPENAI_API_KEY"]
    process = start_metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL, "METIS_ENV_TEST_PAUSE_AT": step})
    wait_for_line(process.stderr, f"metis-env: paused at {step}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    now = exported_json(export_metis(env))["OPENAI_API_KEY"]  # no refresh: the token is fresh
    assert (now == old) == (step in ("before-secrets", "before-metadata"))
    assert globus.token_status(now) == "valid"
    # the next refresh cleans whatever the killed one left: exactly the two referenced tokens remain
    exported_json(export_metis(env, **MARGIN_ALL))
    section = metadata(env)["gateway"]
    assert sorted(keys_file(env)) == sorted([section["access"], section["refresh"]])


def test_login_age_near_the_reauth_age_warns_offline(logged_in):
    env, globus = logged_in
    globus.stop()
    proc = export_metis(env, METIS_ENV_REAUTH_AFTER_DAYS="0.000001")
    assert proc.returncode == 0
    assert proc.stderr.decode() == (
        "metis-env: warning: your Globus login is 0 days old; ALCF asks for a new one every 30 days: "
        "run `metis-env login --force` before the gateway refuses the token\n"
    )


def test_a_clock_a_day_off_at_login_is_one_line_naming_the_clock(globus, globus_env):
    """Expiry is computed from expires_in on this machine's clock, so skew cannot make a token look
    fresh or expired; but the login's id_token is then not yet valid here: said in one line."""
    env = gateway_env(globus_env)
    globus.clock_offset = 86400
    code, out, err, _url = login_headless(env, globus)
    assert (code, out, err.splitlines()[-1]) == (20, b"", (
        "metis-env: error: Globus's identity token for the login is not valid at this machine's time: "
        "this clock is off (check it, e.g. timedatectl), then try again"
    ))
    assert not os.path.exists(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml"))


def test_a_server_clock_a_day_ahead_after_login_changes_nothing_here(logged_in):
    env, globus = logged_in
    globus.clock_offset = 86400
    proc = export_metis(env)
    expires = exported_json(proc)["METIS_ENV_TOKEN_EXPIRES"]
    assert (proc.stderr, globus.grants("refresh_token"), expires) == (b"", 0, metadata(env)["gateway"]["expires"])


# --- logout, sync --gateway, and the two sources side by side --------------------------------------


def test_logout_revokes_and_forgets_but_keeps_endpoint_files(logged_in, endpoint_files):
    env, globus = logged_in
    assert metis("import", *map(str, endpoint_files), env=env).returncode == 0
    token = exported_json(export_metis(env))["OPENAI_API_KEY"]
    assert result(metis("logout", env=env)) == (0, "", (
        "metis-env: logged out: the tokens are revoked at Globus and forgotten here\n"
        "metis-env: the gateway may accept the old access token for up to 10 minutes more (it caches token checks)\n"
        "endpoint metis: removed\nendpoint sophia: removed\n"
    ))
    assert globus.token_status(token) == "revoked"
    assert ("gateway" in metadata(env), list(metadata(env)["endpoints"])) == (False, ["1", "2"])
    assert all(not k.startswith("gateway/") for k in keys_file(env))
    assert metis("export", "1", env=env).returncode == 0
    assert result(metis("logout", env=env)) == (0, "", "metis-env: not logged in to the ALCF gateway; nothing to do\n")


def test_logout_offline_forgets_anyway_with_a_warning(logged_in):
    env, globus = logged_in
    expires = metadata(env)["gateway"]["expires"]
    globus.stop()
    proc = metis("logout", env=env)
    assert proc.returncode == 0
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("metis-env: warning: the tokens are forgotten here, but Globus could not revoke them (")
    assert lines[0].endswith(f"); a copy of the access token elsewhere keeps working until it expires ({expires})")
    assert lines[1:] == ["endpoint metis: removed", "endpoint sophia: removed"]
    assert keys_file(env) == {}


def test_import_and_login_leave_each_others_records_alone(logged_in, endpoint_files):
    env, globus = logged_in
    assert metis("import", *map(str, endpoint_files), env=env).returncode == 0
    assert list(metadata(env)["endpoints"]) == ["1", "2", "metis", "sophia"]
    assert login_headless(env, globus, "--force")[0] == 0
    assert list(metadata(env)["endpoints"]) == ["1", "2", "metis", "sophia"]
    assert metis("export", "2", env=env).returncode == 0


def test_replace_all_keeps_the_gateway_records(logged_in, endpoint_files, monkeypatch):
    """sync replaces the endpoint files' records whole, and only them."""
    from metis_env.endpoint import parse_endpoint_file
    from metis_env.settings import load_settings
    from metis_env.store import open_store

    env, globus = logged_in
    for name in ("METIS_ENV_CONFIG_DIR", "METIS_ENV_STORE"):
        monkeypatch.setenv(name, env[name])
    store = open_store(load_settings())
    store.merge([parse_endpoint_file(p.read_bytes(), p.name) for p in endpoint_files], source="import")
    changes = store.replace_all([parse_endpoint_file(endpoint_files[1].read_bytes(), endpoint_files[1].name)], source="sync")
    assert [(c.id, c.status) for c in changes] == [("1", "removed"), ("2", "unchanged")]
    assert list(store.endpoints()) == ["2", "metis", "sophia"]
    assert exported_json(export_metis(env))["METIS_ENV_ENDPOINT"] == "metis"


def test_sync_gateway_refreshes_the_model_list(logged_in):
    env, globus = logged_in
    globus.set_model_status("metis", "new-model-1", "Live")
    assert result(metis("sync", "--gateway", env=env)) == (0, "", (
        "endpoint metis: models changed (+new-model-1)\nendpoint sophia: unchanged\n"
    ))
    assert "new-model-1" in metadata(env)["endpoints"]["metis"]["models"]


def test_sync_gateway_with_a_lapsed_policy_says_log_out_of_globus(logged_in):
    env, globus = logged_in
    globus.policy_ok = False
    assert result(metis("sync", "--gateway", env=env)) == (19, "", (
        "metis-env: error: the gateway's policy asks for a fresh Globus login (high-assurance re-authentication, "
        "about every 30 days); log out at https://app.globus.org/logout, then run `metis-env login --force`\n"
    ))


# --- the OS keyring: a real gnome-keyring ----------------------------------------------------------


def test_tokens_in_a_real_gnome_keyring_and_refreshed_there(globus, globus_env, tmp_path):
    import subprocess as sp

    from tests._secret_service import SecretServiceSession, require_tools

    require_tools()
    service = SecretServiceSession(tmp_path / "secret-service")
    try:
        service.start_keyring("the-right-password")
        env = {**globus_env, **service.env, **globus.env(), "METIS_ENV_CONFIG_DIR": globus_env["METIS_ENV_CONFIG_DIR"]}
        env.pop("PYTHON_KEYRING_BACKEND", None)
        env.pop("METIS_ENV_STORE", None)
        code, _out, err, _url = login_headless(env, globus)
        assert code == 0, err
        section = metadata(env)["gateway"]
        assert (section["store"], section["backend"]) == ("keyring", "keyring.backends.SecretService.Keyring")
        assert not os.path.exists(os.path.join(env["METIS_ENV_CONFIG_DIR"], "keys.json"))  # nothing in plaintext

        def lookup(ref: str) -> bytes:
            return sp.run(["secret-tool", "lookup", "service", "metis-env", "username", ref], env=env, capture_output=True).stdout

        def export(**extra: str) -> subprocess.CompletedProcess:  # not conftest's metis(): it keeps the fail backend
            return sp.run([sys.executable, "-m", "metis_env", "export", "metis", "--shell", "json"],
                          env={"PYTHONPATH": str(REPO), **env, **extra}, capture_output=True, timeout=60)

        token = exported_json(export())["OPENAI_API_KEY"]
        assert (lookup(section["access"]).decode(), globus.token_status(token)) == (token, "valid")
        assert lookup(section["refresh"]) != b""
        refreshed = exported_json(export(**MARGIN_ALL))["OPENAI_API_KEY"]
        new = metadata(env)["gateway"]
        assert (refreshed != token, lookup(new["access"]).decode(), lookup(section["access"])) == (True, refreshed, b"")
    finally:
        service.stop()


# --- doctor, list, completion, defaults and direnv for gateway endpoints ---------------------------


def gateway_findings(env: dict) -> list[tuple[str, str, str]]:
    import json

    report = json.loads(metis("doctor", "--json", env=env).stdout)
    return [(f["name"], f["status"], f["message"]) for f in report["findings"] if f["name"].startswith("gateway")]


def test_doctor_tells_the_gateway_login(logged_in, globus_env):
    env, globus = logged_in
    section = metadata(env)["gateway"]
    assert gateway_findings(env) == [
        ("gateway_url", "ok", globus.gateway_url),
        ("gateway login", "ok", f"logged in as {section['identity']} (file store); access token valid until "
                                f"{section['expires']}; a refresh token is stored"),
        ("gateway re-authentication", "ok", "the Globus login is 0 days old"),
    ]
    old = gateway_findings({**env, "METIS_ENV_REAUTH_AFTER_DAYS": "0.000001"})[2]
    assert old[:2] == ("gateway re-authentication", "warn")
    metis("logout", env=env)
    assert gateway_findings(env)[1] == ("gateway login", "ok", "not logged in (optional: metis-env login, for the ALCF gateway)")


def test_defaults_list_and_completion_take_gateway_endpoints(logged_in, endpoint_files):
    import json

    env, globus = logged_in
    assert metis("import", *map(str, endpoint_files), env=env).returncode == 0
    defaults = {**env, "METIS_ENV_DEFAULT_ENDPOINT": "sophia", "METIS_ENV_DEFAULT_MODEL": "openai/gpt-oss-120b"}
    assert exported_json(metis("export", "--shell", "json", env=defaults))["MODEL_NAME"] == "openai/gpt-oss-120b"
    unlisted = metis("export", "metis", "--model", "gpt-oss-12b", "--shell", "json", env=env)  # passed on, not refused
    assert (exported_json(unlisted)["MODEL_NAME"], unlisted.stderr.decode()) == ("gpt-oss-12b", (
        "metis-env: warning: model 'gpt-oss-12b' is not among the models the gateway listed for endpoint metis "
        f"({', '.join(METIS_MODELS)}); passing it on as it is (the gateway may serve it under an old name): "
        "metis-env sync --gateway asks for the list again\n"
    ))
    rows = json.loads(metis("list", "--json", env=env).stdout)["endpoints"]
    assert [(r["id"], r["source"], r["store"]) for r in rows] == [
        ("1", "import", "file"), ("2", "import", "file"), ("metis", "gateway", "file"), ("sophia", "gateway", "file")
    ]
    token = keys_file(env)[metadata(env)["gateway"]["access"]]
    assert token not in metis("list", env=env).stdout.decode()
    completion = metis(env={**env, "_METIS_ENV_COMPLETE": "bash_complete", "COMP_WORDS": "metis-env export so", "COMP_CWORD": "2"})
    assert "sophia" in completion.stdout.decode()


def test_direnv_use_metis_takes_a_gateway_endpoint(logged_in, tmp_path):
    from tests._shells import need, shell_env, write_metis_wrapper

    env, globus = logged_in
    direnv = need("direnv")
    bin_dir = tmp_path / "bin"
    write_metis_wrapper(bin_dir)
    lib = tmp_path / "xdg" / "direnv" / "lib"
    lib.mkdir(parents=True)
    (lib / "metis-env.sh").write_text(metis("hook", "direnv", env=env).stdout.decode())
    project = tmp_path / "project"
    project.mkdir()
    (project / ".envrc").write_text("use metis metis --model gpt-oss-120b\n")
    full = {**shell_env(bin_dir), **{k: v for k, v in env.items() if k.startswith(("METIS_ENV_", "GLOBUS_", "SSL_"))},
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": env["HOME"]}
    subprocess.run([direnv, "allow", str(project)], env=full, check=True, capture_output=True)
    ran = subprocess.run([direnv, "exec", str(project), "sh", "-c", 'printf "%s %s" "$MODEL_NAME" "${SAMBANOVA_API_KEY-unset}"'],
                         env=full, capture_output=True, timeout=60)
    assert (ran.returncode, ran.stdout) == (0, b"gpt-oss-120b unset"), ran.stderr


def test_login_opens_a_browser_where_there_is_one_and_not_over_ssh(globus, globus_env, tmp_path):
    """$BROWSER is a script that does what a browser does: log in at the stand-in and land on the
    local listener of globus-sdk's local-server flow. Over SSH the URL is printed instead."""
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import os, ssl, sys, urllib.error, urllib.request\n"
        "class NoRedirect(urllib.request.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *a, **k): return None\n"
        "context = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE'])\n"
        "opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())\n"
        "try:\n"
        "    opener.open(sys.argv[1], timeout=10)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    urllib.request.urlopen(exc.headers['Location'], timeout=10).read()\n"
    )
    env = {k: v for k, v in gateway_env(globus_env).items() if k not in ("SSH_CONNECTION", "SSH_TTY")}
    env["BROWSER"] = f"{sys.executable} {browser} %s"
    proc = metis("login", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().splitlines()[0] == (
        "metis-env: opening a browser for the Globus login (metis-env login --no-browser prints a URL instead)"
    )
    assert globus.authorizations[0]["redirect_uri"].startswith("http://")
    assert list(metadata(env)["endpoints"]) == ["metis", "sophia"]
    over_ssh = gateway_env(globus_env, SSH_CONNECTION="10.0.0.1 5000 10.0.0.2 22", BROWSER=env["BROWSER"])
    code, _out, err, url = login_headless(over_ssh, globus, "--force", no_browser=False)
    assert (code, err.splitlines()[:2]) == (0, ["metis-env: log in to Globus (ALCF) in a browser on any machine at this URL:", url])


def test_sync_gateway_and_login_refresh_the_tool_configs_configure_wrote(logged_in):
    env, globus = logged_in
    assert metis("configure", "pi", "metis", env=env).returncode == 0
    globus.set_model_status("metis", "new-model-1", "Live")
    proc = metis("sync", "--gateway", env=env)
    assert (proc.returncode, proc.stderr.decode().splitlines()[-1]) == (
        0, "configure: pi: refreshed ~/.pi/agent/models.json for endpoint metis",
    )
    globus.set_model_status("metis", "new-model-2", "Live")
    code, _out, err, _url = login_headless(env, globus, "--force")
    assert (code, err.splitlines()[-1]) == (0, "configure: pi: refreshed ~/.pi/agent/models.json for endpoint metis")


# --- --min-ttl and min_ttl (issue 17 item 4) ---------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("12h", 43200), ("2d", 172800), ("45s", 45), ("3600", 3600), (" 1.5H ", 5400)])
def test_durations(text, seconds):
    from metis_env.settings import parse_duration

    assert parse_duration(text, "--min-ttl") == seconds


@pytest.mark.parametrize("text", ["0", "-1h", "soon", "1w", "", "h", "inf", "nanm"])
def test_bad_durations_are_one_line(text):
    from metis_env.errors import UsageError
    from metis_env.settings import parse_duration

    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--min-ttl")
    assert str(caught.value) == "--min-ttl must be a duration such as 90m, 12h or 2d (or seconds)"


def age_the_token(env: dict, seconds: int) -> None:
    """The stored login as it will be ``seconds`` from now: granted and expiring that much earlier."""
    data = metadata(env)
    section = data["gateway"]
    granted = calendar.timegm(time.strptime(section["refreshed_at"], "%Y-%m-%dT%H:%M:%S+00:00")) - seconds
    section.update(expires_at=section["expires_at"] - seconds,
                   refreshed_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(granted)))
    with open(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml"), "w") as handle:
        json.dump(data, handle)


def test_min_ttl_refreshes_unless_that_much_life_is_left(globus, globus_env):
    env = gateway_env(globus_env)
    globus.access_lifetime = 12 * 3600  # the stored token: 12 h
    assert login_headless(env, globus)[0] == 0
    globus.access_lifetime = 172800
    old = exported_json(export_metis(env))["OPENAI_API_KEY"]
    kept = [exported_json(metis("export", "metis", "--shell", "json", "--min-ttl", "11h", env=env))["OPENAI_API_KEY"],
            metis("get", "key", "metis", "--min-ttl", "90m", env=env).stdout.decode().strip()]
    assert (kept, globus.grants("refresh_token")) == ([old, old], 0)
    # more than the last grant gave (12 h): a refresh would give no more, so none (said) until a minute is gone
    proc = metis("export", "metis", "--shell", "json", "--min-ttl", "13h", env=env)
    assert (exported_json(proc)["OPENAI_API_KEY"], globus.grants("refresh_token"), proc.stderr.decode()) == (old, 0, (
        "metis-env: warning: the Globus token lives 12 h after a refresh, less than the 13 h --min-ttl (min_ttl) "
        "asks for: Globus decides its lifetime (48 h)\n"
    ))
    age_the_token(env, 2 * 3600)  # 10 h left
    proc = metis("export", "metis", "--shell", "json", "--min-ttl", "11h", env=env)
    new = exported_json(proc)["OPENAI_API_KEY"]
    assert (proc.stderr, new != old, globus.grants("refresh_token")) == (b"", True, 1)
    # now 48 h left: the setting and its variable ask the same, and more than Globus gives is said
    assert exported_json(export_metis(env, METIS_ENV_MIN_TTL="47h"))["OPENAI_API_KEY"] == new
    proc = export_metis(env, METIS_ENV_MIN_TTL="3d")
    assert (proc.returncode, globus.grants("refresh_token"), proc.stderr.decode()) == (0, 1, (
        "metis-env: warning: the Globus token lives 48 h after a refresh, less than the 72 h --min-ttl (min_ttl) "
        "asks for: Globus decides its lifetime (48 h)\n"
    ))
    child = "import os; print(os.environ['OPENAI_API_KEY'])"
    ran = metis("run", "--min-ttl", "49h", "metis", "--", sys.executable, "-c", child, env=env)
    assert (ran.returncode, globus.grants("refresh_token"), globus.token_status(ran.stdout.decode().strip())) == (0, 1, "valid")
    assert result(metis("export", "metis", "--min-ttl", "soon", env=env)) == (2, "false\n", (
        "metis-env: error: invalid value for '--min-ttl': expected a duration such as 90m, 12h or 2d (or seconds); "
        "see metis-env export --help\n"
    ))


def test_concurrent_exports_asking_more_than_globus_gives_refresh_once(logged_in):
    env, globus = logged_in
    age_the_token(env, 3600)  # 47 h of a 48 h token left: inside a 3 d min_ttl (capped at 48 h - 1 min)
    globus.refresh_delay = 0.5  # the refresh takes a while: the others must wait for it, not repeat it
    runs = concurrent_exports({**env, "METIS_ENV_MIN_TTL": "3d"}, 5, timeout=120)
    tokens = {exported_json(r)["OPENAI_API_KEY"] for r in runs}
    warning = (b"metis-env: warning: the Globus token lives 48 h after a refresh, less than the 72 h --min-ttl "
               b"(min_ttl) asks for: Globus decides its lifetime (48 h)\n")
    assert [(r.returncode, r.stderr) for r in runs] == [(0, warning)] * 5
    assert (globus.grants("refresh_token"), len(tokens)) == (1, 1)
    assert globus.token_status(tokens.pop()) == "valid"
