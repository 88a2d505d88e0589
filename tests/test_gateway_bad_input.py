"""Bad input for the gateway source: a gateway answering HTML, 5xx or the wrong JSON, hostile model
names (which reach real shells quoted), and alcf-tokens' cache adopted, damaged, foreign or a
symlink. One line each, a distinct exit code where the user must act differently, nothing stored half."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests._gateway import exported_json, gateway_env, keys_file, logged_in, login_headless, metadata  # noqa: F401
from tests._globus import alcf_tokens_cache, alcf_tokens_login, globus, globus_env  # noqa: F401
from tests._shells import need
from tests.conftest import metis


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def nothing_stored(env: dict) -> bool:
    return not os.path.exists(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml")) and keys_file(env) == {}


@pytest.mark.parametrize(
    "fault, line",
    [
        ("html", "metis-env: error: {gw}list-endpoints answered 200 but not with a JSON object (not JSON: text/html, 85 bytes)"),
        ("5xx", "metis-env: error: {gw}list-endpoints answered HTTP 502 (not JSON: text/html, 136 bytes)"),
        ("wrong_shape", 'metis-env: error: {gw}list-endpoints answered JSON without a "clusters" object; is gateway_url right?'),
    ],
)
def test_a_gateway_fault_at_login_is_one_line_and_nothing_is_stored(globus, globus_env, fault, line):
    env = gateway_env(globus_env)
    globus.gateway_fault = fault
    code, out, err, _url = login_headless(env, globus)
    assert (code, out, err.splitlines()[-1]) == (20, b"", line.format(gw=globus.gateway_url))
    assert nothing_stored(env)


def test_a_gateway_fault_at_sync_gateway_keeps_the_endpoints_as_they_were(logged_in):
    env, globus = logged_in
    before = metadata(env)
    globus.gateway_fault = "wrong_shape"
    assert result(metis("sync", "--gateway", env=env))[0] == 20
    assert metadata(env) == before


HOSTILE = ["it's $(touch pwned) `id`", 'say "hi"; exit 3', "back\\slash and 'quotes' & | > <"]


@pytest.mark.parametrize("shell", ["bash", "dash", "zsh", "fish"])
def test_hostile_model_names_reach_each_shell_as_data(globus, globus_env, tmp_path, shell):
    for name in HOSTILE:
        globus.set_model_status("metis", name, "Live")
    env = gateway_env(globus_env)
    assert login_headless(env, globus)[0] == 0
    path = need(shell)
    for name in HOSTILE:
        fmt = "fish" if shell == "fish" else "sh"
        code = metis("export", "metis", "--model", name, "--shell", fmt, env=env)
        assert code.returncode == 0, code.stderr
        script = (f"{code.stdout.decode()}\nprintf '%s' \"$MODEL_NAME\"" if shell != "fish"
                  else f"{code.stdout.decode()}\nprintf '%s' \"$MODEL_NAME\"")
        ran = subprocess.run([path, "-c", script], capture_output=True, cwd=tmp_path, timeout=30)
        assert (ran.returncode, ran.stdout.decode(), ran.stderr) == (0, name, b"")
    assert not (tmp_path / "pwned").exists()


def test_a_model_name_with_a_newline_refuses_the_whole_list(globus, globus_env):
    env = gateway_env(globus_env)
    globus.set_model_status("metis", "evil\nexport OPENAI_BASE_URL=http://attacker", "Live")
    code, out, err, _url = login_headless(env, globus)
    assert (code, err.splitlines()[-1]) == (20, (
        f"metis-env: error: {globus.gateway_url}list-endpoints: cluster metis lists a model name that is not usable "
        "('evil export OPENAI_BASE_URL=http://attacker')"
    ))
    assert nothing_stored(env)


# --- alcf-tokens -----------------------------------------------------------------------------------


def test_adopting_a_real_alcf_tokens_login(globus, globus_env):
    env = gateway_env(globus_env)
    cache = alcf_tokens_login(globus, env)
    before = cache.read_bytes(), os.stat(cache).st_mtime_ns
    adopted = json.loads(before[0])["data"]["DEFAULT"]["681c10cc-f684-4540-bcd7-0b4df3bc26ef"]
    proc = metis("login", "--from-alcf-tokens", env=env)
    assert result(proc) == (0, "", (
        f"metis-env: adopted the Globus login of alcf-tokens ({cache}, read only)\n"
        f"metis-env: logged in to the ALCF gateway; token valid until {metadata(env)['gateway']['expires']}\n"
        "endpoint metis: new\nendpoint sophia: new\n"
    ))
    assert exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"] == adopted["access_token"]
    assert (cache.read_bytes(), os.stat(cache).st_mtime_ns) == before  # never written
    # and alcf-tokens' file stays its own: a refresh here writes metis-env's store only
    refreshed = exported_json(metis("export", "metis", "--shell", "json", env={**env, "METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}))
    assert (refreshed["OPENAI_API_KEY"] != adopted["access_token"], cache.read_bytes()) == (True, before[0])


def test_plain_login_mentions_an_alcf_tokens_login(globus, globus_env):
    env = gateway_env(globus_env)
    cache = alcf_tokens_login(globus, env)
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0
    assert err.splitlines()[0] == (
        f"metis-env: alcf-tokens is logged in here too ({cache}); `metis-env login --from-alcf-tokens` adopts its tokens instead"
    )


def write_cache(env: dict, text: str) -> str:
    path = alcf_tokens_cache(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize(
    "text, code, line",
    [
        ("", 6, "metis-env: error: {path} is empty or not JSON (read 8 times); run `alcf-tokens login` again, or `metis-env login`"),
        ('{"data": {"DEF', 6, "metis-env: error: {path} is empty or not JSON (read 8 times); run `alcf-tokens login` again, or `metis-env login`"),
        ('{"data": {"DEFAULT": {}}, "format_version": "2.0"}', 18,
         "metis-env: error: {path} holds no token for the ALCF inference service; run `metis-env login`"),
        ('{"data": {"DEFAULT": {"681c10cc-f684-4540-bcd7-0b4df3bc26ef": {"access_token": 5}}}}', 6,
         "metis-env: error: {path}: the inference entry has no access token or expiry; run `metis-env login`"),
    ],
)
def test_a_damaged_alcf_tokens_cache_is_one_line(globus, globus_env, text, code, line):
    env = gateway_env(globus_env)
    path = write_cache(env, text)
    assert result(metis("login", "--from-alcf-tokens", env=env)) == (code, "", line.format(path=path) + "\n")
    assert nothing_stored(env)


def test_a_torn_read_is_retried(globus, globus_env):
    """alcf-tokens rewrites in place: an empty file for a moment is not "logged out"."""
    env = gateway_env(globus_env)
    good = json.dumps({"data": {"DEFAULT": {"681c10cc-f684-4540-bcd7-0b4df3bc26ef": globus.issue_tokens()}}})
    path = write_cache(env, "")
    writer = subprocess.Popen(["sh", "-c", f"sleep 0.3; printf '%s' '{good}' > '{path}'"])
    proc = metis("login", "--from-alcf-tokens", env=env)
    writer.wait(timeout=10)
    assert (proc.returncode, proc.stderr.decode().splitlines()[0]) == (
        0, f"metis-env: adopted the Globus login of alcf-tokens ({path}, read only)"
    )


def test_a_foreign_owned_or_symlinked_alcf_tokens_cache_is_refused(globus, globus_env, tmp_path):
    env = gateway_env(globus_env)
    path = write_cache(env, "{}")
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        assert result(metis("login", "--from-alcf-tokens", env=env)) == (6, "", (
            f"metis-env: error: {path} belongs to another user (uid 65534); refusing to read it\n"
        ))
    os.unlink(path)
    (tmp_path / "elsewhere.json").write_text("{}")
    os.symlink(tmp_path / "elsewhere.json", path)
    assert result(metis("login", "--from-alcf-tokens", env=env)) == (6, "", (
        f"metis-env: error: {path} is a symbolic link; refusing to read it (remove the link)\n"
    ))
    assert nothing_stored(env)


def test_a_fifo_in_place_of_the_alcf_tokens_cache_is_refused_at_once(globus, globus_env):
    """Without O_NONBLOCK, open() of a FIFO waits for a writer for ever."""
    env = gateway_env(globus_env)
    path = write_cache(env, "{}")
    os.unlink(path)
    os.mkfifo(path, 0o600)
    proc = metis("login", "--from-alcf-tokens", env=env)  # before the fix: a hang, ended by metis()'s timeout
    assert result(proc) == (6, "", f"metis-env: error: {path} is not a regular file; move it away\n")
    assert nothing_stored(env)


def test_a_hostile_identity_reaches_the_terminal_escaped(globus, globus_env):
    """An identity from alcf-tokens' file (or Globus) with an escape sequence and a forged line."""
    env = gateway_env(globus_env)
    entry = {**globus.issue_tokens(), "identity_id": "x\x1b]0;pwned\x07\nmetis-env: logged in as admin\u202e"}
    write_cache(env, json.dumps({"data": {"DEFAULT": {"681c10cc-f684-4540-bcd7-0b4df3bc26ef": entry}}}))
    assert metis("login", "--from-alcf-tokens", env=env).returncode == 0
    proc = metis("login", env=env)
    assert result(proc) == (0, "", (
        "metis-env: already logged in to the ALCF gateway as x\\x1b]0;pwned\\x07\\nmetis-env: logged in as admin\\u202e "
        f"(token valid until {metadata(env)['gateway']['expires']}, login 0 days ago); `metis-env login --force` logs in again\n"
    ))
    doctor = metis("doctor", env=env).stdout.decode()
    assert "logged in as x\\x1b]0;pwned\\x07\\nmetis-env: logged in as admin\\u202e (file store)" in doctor


def test_a_gateway_listing_too_many_clusters_and_models_is_stored_cut_to_the_caps(globus, globus_env):
    from metis_env.testing.gateway_standin import make_clusters

    env = gateway_env(globus_env)
    globus.clusters = make_clusters({f"c{i:03}": ("api", {f"m{j:03}": "Live" for j in range(300)}) for i in range(70)})
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b"")
    assert err.splitlines()[3:5] == [
        f"metis-env: warning: {globus.gateway_url}list-endpoints: clusters c000, c001, c002 and 67 more each list more than 256 "
        "models; only the first 256 are kept",
        f"metis-env: warning: {globus.gateway_url}list-endpoints lists 70 clusters with models; only the first 64 are kept",
    ]
    stored = {k: v["models"] for k, v in metadata(env)["endpoints"].items()}
    assert stored == {f"c{i:03}": [f"m{j:03}" for j in range(256)] for i in range(64)}
    assert exported_json(metis("export", "c063", "--shell", "json", env=env))["MODEL_NAME"] == "m000"
