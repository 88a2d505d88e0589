"""Hostile base URLs and model names (from an endpoint file or the gateway) are inert in every tool's
config: each tool reads back exactly the string the endpoint gave, and nothing the tool would expand
or run (opencode's ``{env:}``/``{file:}``/``{json:}``/``{toml:}``, pi's ``!command`` and environment
names, TOML/YAML/JSON quoting), and the ``use it:`` line configure prints is one quoted shell word per
argument. The real opencode and pi run against a hostile config at the end (SECURITY.md, issue 14).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from metis_env.testing.openai_server import OpenAIStubServer
from tests._gateway import gateway_env, login_headless
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests.conftest import metis
from tests.test_configure import as_gateway_cluster
from tests.test_configure_tools import NPM_BIN, tool_env, tool_path

KEY = "sk-stub-inert-0123456789abcdef"
SECRET = "s3cret-env-value-42"
PRIVATE = "PRIVATE-KEY-MATERIAL-0123"
HOSTILE_MODELS = [
    "{file:~/.ssh/id_ed25519}-m",
    "{env:METIS_TEST_SECRET}",
    "{json:/etc/x.json#/a}",
    "!touch PWNED",
    "OPENAI_API_KEY",
    "$(touch PWNED) `touch PWNED` \"q' \\ end",
    "DeepSeek-R1",
]
HOSTILE_BASE = "http://127.0.0.1:9/x/{env:METIS_TEST_SECRET}/{file:~/.ssh/id_ed25519}/v1"
CHOSEN = HOSTILE_MODELS[5]

# tool: (its file under HOME, what the tool reads from it: (base URL, model names, strings it resolves))
FILES = {
    "opencode": ".config/opencode/opencode.json",
    "pi": ".pi/agent/models.json",
    "codex": ".codex/config.toml",
    "llm": ".config/io.datasette.llm/extra-openai-models.yaml",
    "aider": ".aider.conf.yml",
    "claude": ".claude/settings.json",
}


def read_back(tool: str, text: str):
    """(base URL, model names) as the tool parses them."""
    if tool == "opencode":
        provider = json.loads(text)["provider"]["metis-1"]
        return provider["options"]["baseURL"], list(provider["models"])
    if tool == "pi":
        provider = json.loads(text)["providers"]["metis-1"]
        return provider["baseUrl"], [m["id"] for m in provider["models"]]
    if tool == "codex":
        provider = tomllib.loads(text)["model_providers"]["metis-1"]
        return provider["base_url"], []
    if tool == "llm":  # the base URL comes from the environment `metis-env run` sets
        entries = yaml.safe_load(text)
        return entries[0].get("api_base"), [e["model_name"] for e in entries]
    if tool == "claude":
        env = json.loads(text)["env"]
        return env["ANTHROPIC_BASE_URL"] + "/v1", [env["ANTHROPIC_MODEL"]]
    data = yaml.safe_load(text)
    return data.get("openai-api-base"), [data["model"].removeprefix("openai/")]


def expanded_by_the_tool(tool: str, text: str) -> list[str]:
    """What the tool would substitute or run when it loads ``text``: opencode's ``{kind:...}`` tokens
    (on the raw text, before JSON), pi's apiKey/header values (a ``!command`` or an environment name)."""
    if tool == "opencode":
        return re.findall(r"\{[a-z]+:[^}]+\}", text)
    if tool == "pi":
        provider = json.loads(text)["providers"]["metis-1"]
        headers = [*provider.get("headers", {}).values()] + [v for m in provider["models"] for v in m.get("headers", {}).values()]
        return [provider["apiKey"], *headers]
    if tool == "codex":
        provider = tomllib.loads(text)["model_providers"]["metis-1"]
        return [provider["auth"]["command"], *provider["auth"]["args"], *[k for k in provider if k in ("env_key", "env_http_headers")]]
    if tool == "claude":
        return [json.loads(text)["apiKeyHelper"]]
    return []


EXPANDED = {
    "opencode": ["{env:OPENAI_API_KEY}"],
    "pi": ["!metis-env get key 1"],
    "codex": ["metis-env", "get", "key", "1"],
    "llm": [],
    "aider": [],
    "claude": ["metis-env get key 1"],
}
THROUGH_THE_BROKER = {  # what the tool expands when configure sent it through the broker (Metis: opencode, pi)
    "opencode": [],  # the plugin gives the broker's local key
    "pi": ["!metis-env get key metis --proxy-port PORT"],  # PORT: the broker's, METIS_ENV_PROXY_PORT here
    "llm": [],
}
MODELS_WRITTEN = {"opencode": HOSTILE_MODELS, "pi": HOSTILE_MODELS, "codex": [], "llm": HOSTILE_MODELS, "aider": [CHOSEN], "claude": [CHOSEN]}


@pytest.fixture
def hostile_endpoint(file_store, tmp_path, env_setup):
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={HOSTILE_BASE}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(HOSTILE_MODELS)}\n")
    assert metis("import", str(endpoint_file)).returncode == 0
    as_gateway_cluster("1")  # codex and claude need a cluster with their routes


@pytest.mark.parametrize("tool", sorted(FILES))
def test_a_hostile_endpoint_file_is_written_inert(tool, hostile_endpoint, tmp_path):
    proc = metis("configure", tool, "1", "--model", CHOSEN, env={"METIS_TEST_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr
    text = (Path(os.environ["HOME"]) / FILES[tool]).read_text()
    base = None if tool in ("llm", "aider") else HOSTILE_BASE
    assert (read_back(tool, text), expanded_by_the_tool(tool, text)) == ((base, MODELS_WRITTEN[tool]), EXPANDED[tool])
    assert [p.name for p in tmp_path.rglob("PWNED")] == []


USE_IT = {
    "opencode": ["opencode", "run", "-m", f"metis-1/{CHOSEN}", "hi"],
    "pi": ["pi", "--provider", "metis-1", "--model", CHOSEN, "-p", "hi"],
    "codex": ["codex", "-c", "model_provider=metis-1", "-m", CHOSEN, "exec", "hi"],
    "llm": ["llm", "-m", f"metis-1/{CHOSEN}", "hi"],
    "aider": ["metis-env", "run", "1", "--", "aider"],
    "claude": ["claude", "-p", "hi"],
}


@pytest.mark.parametrize("tool", sorted(FILES))
def test_the_use_it_line_is_safe_to_paste_into_a_shell(tool, hostile_endpoint, tmp_path):
    proc = metis("configure", tool, "1", "--model", CHOSEN, "--dry-run")
    line = next(x for x in proc.stderr.decode().splitlines() if x.startswith(f"{tool}: use it: "))
    command = line.removeprefix(f"{tool}: use it: ").split("   (")[0]
    words = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], cwd=tmp_path, capture_output=True, check=True).stdout
    assert (words.decode().split("\0")[:-1], [p.name for p in tmp_path.rglob("PWNED")]) == (USE_IT[tool], [])


def test_hostile_gateway_model_names_are_written_inert(globus, globus_env, tmp_path):  # noqa: F811
    globus.clusters["metis"]["models"].update({name: "Live" for name in HOSTILE_MODELS})
    env = gateway_env(globus_env, METIS_TEST_SECRET=SECRET)
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0, err
    home = Path(env["HOME"])
    for tool in ("opencode", "pi", "llm"):
        proc = metis("configure", tool, "metis", env=env)
        assert proc.returncode == 0, proc.stderr
        text = (home / FILES[tool]).read_text().replace("metis-metis", "metis-1")
        models = read_back(tool, text)[1]
        assert (set(HOSTILE_MODELS) <= set(models), expanded_by_the_tool(tool, text)) == (
            True, [e.replace("PORT", os.environ["METIS_ENV_PROXY_PORT"]) for e in THROUGH_THE_BROKER[tool]])


# --- the real tools, against a stub that records every request -------------------------------------


@pytest.fixture
def recording_stub():
    server = OpenAIStubServer(KEY, ["DeepSeek-R1"])
    server.start()
    yield server
    server.stop()


def opencode_config(base_url: str, model: str) -> str:
    """The config a naive writer produces: the endpoint's strings written as they came."""
    return json.dumps({"provider": {"metis-1": {
        "npm": "@ai-sdk/openai-compatible", "options": {"baseURL": base_url, "apiKey": "{env:OPENAI_API_KEY}"},
        "models": {model: {"name": model}},
    }}})


@pytest.mark.parametrize("writer", ["verbatim", "metis-env configure"])
def test_the_real_opencode_reads_no_file_and_no_variable_from_a_hostile_config(writer, recording_stub, file_store, tmp_path, env_setup):
    """The verbatim config is the control: the same run leaks both secrets, so the test can see a leak."""
    if tool_path("opencode") is None:
        pytest.skip("opencode is not installed here (bash .ci/run installs it)")
    secret_file = tmp_path / "id_ed25519"
    secret_file.write_text(PRIVATE + "\n")
    host = recording_stub.base_url.removesuffix("/v1")
    base = f"{host}/x/{{env:METIS_TEST_SECRET}}/{{file:{secret_file}}}/v1"
    model = f"{{file:{secret_file}}}-m"
    if writer == "verbatim":
        path = Path(os.environ["HOME"]) / FILES["opencode"]
        path.parent.mkdir(parents=True)
        path.write_text(opencode_config(base, model))
    else:
        endpoint_file = tmp_path / "metis_endpoint_1.txt"
        endpoint_file.write_text(f"BASE_URL={base}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={model}\n")
        assert metis("import", str(endpoint_file)).returncode == 0
        assert metis("configure", "opencode", "1").returncode == 0
    env = {**tool_env(tmp_path), "METIS_TEST_SECRET": SECRET, "OPENAI_API_KEY": KEY}
    work = tmp_path / "work"
    work.mkdir()
    asked_for = f"metis-1/{model}" if writer != "verbatim" else f"metis-1/{PRIVATE}-m"
    subprocess.run([str(NPM_BIN / "opencode"), "run", "-m", asked_for, "hi"], cwd=work, env=env,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    # opencode retries a 404: the set of what reached the endpoint
    sent = {(unquote(r.path), (r.body or {}).get("model")) for r in recording_stub.requests if r.method == "POST"}
    if writer == "verbatim":
        assert sent == {(f"/x/{SECRET}/{PRIVATE}/v1/chat/completions", f"{PRIVATE}-m")}
    else:
        assert sent == {(f"/x/{{env:METIS_TEST_SECRET}}/{{file:{secret_file}}}/v1/chat/completions", model)}


def test_the_real_pi_runs_no_command_named_by_a_hostile_model(recording_stub, file_store, tmp_path, env_setup):
    if tool_path("pi") is None:
        pytest.skip("pi is not installed here (bash .ci/run installs it)")
    pwned = tmp_path / "PWNED"
    model = f"!touch {pwned}"
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={recording_stub.base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={model},OPENAI_API_KEY\n")
    assert metis("import", str(endpoint_file)).returncode == 0
    assert metis("configure", "pi", "1").returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    env = {**tool_env(tmp_path), "OPENAI_API_KEY": "sk-not-for-pi"}
    for name in (model, "OPENAI_API_KEY"):
        subprocess.run([str(NPM_BIN / "pi"), "--provider", "metis-1", "--model", name, "-p", "hi"], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    sent = [(r.path, r.authorized, (r.body or {}).get("model")) for r in recording_stub.requests if r.method == "POST"]
    assert (sent, pwned.exists()) == ([("/v1/chat/completions", True, model), ("/v1/chat/completions", True, "OPENAI_API_KEY")], False)
