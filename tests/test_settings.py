"""Settings that guard the user: ``aliases`` refuses names that change how a shell or a program runs,
and ``gateway_url`` takes plain http:// only to a loopback address. Each refusal is one line, the same
whether the value comes from ``config set``, ``METIS_ENV_<NAME>`` or ``config.yaml``."""

from __future__ import annotations

import pytest

from metis_env.reserved_variables import why_reserved
from tests.conftest import metis


def result(proc) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def three_ways(name: str, value: str, env_setup) -> list[tuple[int, str, str]]:
    """(code, stdout, stderr) of `config set NAME VALUE`, of `export` with METIS_ENV_NAME=VALUE, and of
    `export` with `NAME: VALUE` in config.yaml."""
    by_set = result(metis("config", "set", name, value))
    by_env = result(metis("export", "1", env={f"METIS_ENV_{name.upper()}": value}))
    env_setup.mkdir(mode=0o700, exist_ok=True)
    (env_setup / "config.yaml").write_text(f"{name}: '{value}'\n")
    (env_setup / "config.yaml").chmod(0o600)
    by_file = result(metis("export", "1"))
    return [by_set, by_env, by_file]


SHELL_OR_PROGRAM = [
    ("PATH", "it decides which programs run"),
    ("LD_PRELOAD", "it makes every program load code from elsewhere"),
    ("LD_LIBRARY_PATH", "it makes every program load code from elsewhere"),
    ("DYLD_INSERT_LIBRARIES", "it makes every program load code from elsewhere"),
    ("PYTHONSTARTUP", "it changes how Python starts (code it runs, modules it finds)"),
    ("PYTHONPATH", "it changes how Python starts (code it runs, modules it finds)"),
    ("BASH_ENV", "every bash script runs the file it names"),
    ("ENV", "every interactive sh runs the file it names"),
    ("IFS", "it changes how the shell itself runs"),
    ("PS4", "it changes how the shell itself runs"),
    ("PROMPT_COMMAND", "it changes how the shell itself runs"),
    ("HOME", "it moves where programs read their configuration (metis-env's own included)"),
    ("SHELL", "programs start it as the user's shell"),
    ("TMPDIR", "programs write their temporary files there"),
    ("http_proxy", "it sends requests, the key with them, through another host"),
    ("HTTPS_PROXY", "it sends requests, the key with them, through another host"),
    ("No_Proxy", "it sends requests, the key with them, through another host"),
    ("all_proxy", "it sends requests, the key with them, through another host"),
    ("SSL_CERT_FILE", "it changes which servers TLS trusts"),
    ("NODE_OPTIONS", "it makes an interpreter run or load code from elsewhere"),
    ("GIT_SSH_COMMAND", "git runs the commands and reads the files it names"),
    ("XDG_CONFIG_HOME", "it moves where programs read their configuration (metis-env's own included)"),
    ("METIS_ENV_STORE", "it is one of metis-env's own settings"),
    ("LESSOPEN", "programs run the command it names"),
]


@pytest.mark.parametrize("alias, reason", SHELL_OR_PROGRAM, ids=[name for name, _ in SHELL_OR_PROGRAM])
def test_aliases_refuse_names_that_change_how_a_shell_or_program_runs(alias, reason, env_setup):
    line = f"{alias} cannot be an alias: {reason}; use a name of your own, e.g. GROQ_API_KEY=OPENAI_API_KEY\n"
    assert three_ways("aliases", f"{alias}=OPENAI_API_KEY", env_setup) == [
        (2, "", f"metis-env: error: aliases: {line}"),
        (2, "false\n", f"metis-env: error: METIS_ENV_ALIASES: {line}"),
        (2, "false\n", f"metis-env: error: {env_setup / 'config.yaml'}: {line}"),
    ]


@pytest.mark.parametrize("alias", ["GROQ_API_KEY", "LLM_BASE", "MY_PATH", "PATHFINDER_KEY", "HOMER", "TOGETHER_API_KEY"])
def test_names_of_ones_own_stay_allowed(alias):
    assert why_reserved(alias) is None


def test_a_refused_alias_in_config_yaml_also_stops_export_before_it_prints_anything(env_setup, endpoint_files, file_store):
    assert metis("import", str(endpoint_files[0])).returncode == 0
    (env_setup / "config.yaml").write_text("aliases: {LD_PRELOAD: OPENAI_API_KEY}\n")
    (env_setup / "config.yaml").chmod(0o600)
    assert result(metis("export", "1", "--unset")) == (
        2, "false\n", f"metis-env: error: {env_setup / 'config.yaml'}: LD_PRELOAD cannot be an alias: it makes every program "
        "load code from elsewhere; use a name of your own, e.g. GROQ_API_KEY=OPENAI_API_KEY\n")


REFUSED_URLS = [
    "http://127.attacker.example/",
    "http://127.0.0.1.nip.io/",
    "http://127.0.0.1@attacker.example/",
    "http://localhost.attacker.example/",
    "http://[::2]/",
    "http://10.0.0.1/",
    "http://127.1/",  # not an address literal Python's ipaddress reads; resolvers differ
    "ftp://127.0.0.1/",
]
ACCEPTED_URLS = [
    ("https://inference-api.alcf.anl.gov/resource_server/", "https://inference-api.alcf.anl.gov/resource_server/"),
    ("http://127.0.0.1:8080/resource_server", "http://127.0.0.1:8080/resource_server/"),
    ("http://127.45.6.7/", "http://127.45.6.7/"),
    ("http://[::1]:9000/rs/", "http://[::1]:9000/rs/"),
    ("http://localhost:9000/", "http://localhost:9000/"),
    ("HTTP://LOCALHOST/", "HTTP://LOCALHOST/"),
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_gateway_url_takes_plain_http_only_to_a_loopback_address(url, env_setup):
    line = "gateway_url must be an https:// URL (http:// only for localhost, 127.0.0.0/8 or ::1)\n"
    assert three_ways("gateway_url", url, env_setup) == [
        (2, "", f"metis-env: error: {line}"),
        (2, "false\n", f"metis-env: error: METIS_ENV_GATEWAY_URL: {line}"),
        (2, "false\n", f"metis-env: error: {env_setup / 'config.yaml'}: {line}"),
    ]


@pytest.mark.parametrize("url, stored", ACCEPTED_URLS)
def test_gateway_url_accepts_https_and_loopback_http(url, stored):
    assert result(metis("config", "set", "gateway_url", url))[0] == 0
    assert result(metis("config", "get", "gateway_url")) == (0, f"{stored}\n", "")
