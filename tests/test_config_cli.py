"""config and forget say exactly what they did (issue 14's rough edges), and config.yaml reads as docs/config.md shows it."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import metis


def result(proc) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.usefixtures("file_store")
def test_config_yaml_is_plain_yaml_where_a_value_reads_the_same_plain(endpoint_files, env_setup):
    metis("import", *map(str, endpoint_files), check=True)
    for name, value in (("host", "sambanova.alcf.anl.gov"), ("user", "alice"), ("default_endpoint", "1"),
                        ("gateway_url", "http://127.0.0.1:8080/resource_server/"), ("default_model", "true"),
                        ("aliases", "MY_KEY=OPENAI_API_KEY")):
        assert metis("config", "set", name, value).returncode == 0
    text = (env_setup / "config.yaml").read_text()
    assert text == (
        "host: sambanova.alcf.anl.gov\n"
        "user: alice\n"
        'default_endpoint: "1"\n'
        "gateway_url: http://127.0.0.1:8080/resource_server/\n"
        'default_model: "true"\n'
        'aliases: "MY_KEY=OPENAI_API_KEY"\n'
    )
    assert yaml.safe_load(text) == {"host": "sambanova.alcf.anl.gov", "user": "alice", "default_endpoint": "1",
                                    "gateway_url": "http://127.0.0.1:8080/resource_server/", "default_model": "true",
                                    "aliases": "MY_KEY=OPENAI_API_KEY"}
    assert [result(metis("config", "get", n)) for n in ("default_endpoint", "default_model")] == [(0, "1\n", ""), (0, "true\n", "")]


def test_config_unset_of_a_setting_that_is_not_set_says_so_and_writes_nothing(env_setup):
    path = env_setup / "config.yaml"
    assert metis("config", "set", "host", "example.org").returncode == 0
    before = path.read_text()
    assert result(metis("config", "unset", "port")) == (0, "", f"metis-env: port is not set in {path}; its default is none\n")
    assert (path.read_text(), result(metis("config", "unset", "host"))) == (
        before, (0, "", f"metis-env: host removed from {path}; its default is sambanova.alcf.anl.gov\n"))


@pytest.mark.usefixtures("file_store")
def test_forget_of_the_default_endpoint_removes_the_default_too(endpoint_files, env_setup):
    metis("import", *map(str, endpoint_files), check=True)
    metis("config", "set", "default_endpoint", "2", check=True)
    path = env_setup / "config.yaml"
    assert result(metis("forget", "1")) == (0, "", "endpoint 1: removed\n")
    assert "default_endpoint" in path.read_text()
    assert result(metis("forget", "2")) == (
        0, "", f"endpoint 2: removed\nmetis-env: default_endpoint 2 removed from {path} (that endpoint is forgotten)\n")
    assert "default_endpoint" not in path.read_text()


def test_login_help_says_tokens_and_run_help_has_one_usage_line():
    login = metis("login", "--help").stdout.decode()
    run = metis("run", "--help").stdout.decode()
    assert ("Where Globus tokens are kept" in " ".join(login.split()), "API keys" in login) == (True, False)
    assert [line for line in run.splitlines() if "Usage:" in line] == [
        "Usage: metis-env run [--proxy] [ENDPOINT] [--model NAME] -- COMMAND [ARGS]..."]


def test_get_helps_curl_example_works_with_and_without_a_trailing_slash():
    lines = [line.strip() for line in metis("get", "--help").stdout.decode().splitlines()]
    example = lines[lines.index("Example:") + 1 : lines.index("Example:") + 3]
    assert example == ["url=$(metis-env get url 1)   # with or without a trailing /",
                       'curl -H "Authorization: Bearer $(metis-env get key 1)" "${url%/}/models"']
