"""The real tools read what `metis-env configure` wrote and reach the endpoint with its key and model.

Each tool runs for real against the loopback OpenAI stub (metis_env/testing/openai_server.py), from
the place .ci/run installs it: llm from the test extra, aider in its own venv (.ci-tools/aider),
opencode, codex and pi from npm (.ci-tools/npm). pi, codex and opencode (through configure's
plugin) run `metis-env get key 1` themselves, and llm asks metis-env's llm plugin, so they run on
their own with no OPENAI_* variable at all; aider (and llm without the plugin) take the key and the
base URL from the variables `metis-env run` sets. Every one also works under `metis-env run` and
`run --proxy` (whose variables the broker gives too): a config must never part a key from its URL.
codex needs a cluster that serves /responses: a gateway cluster, with the gateway's token; Claude
Code (npm, .ci-tools/npm) a cluster with the Messages route, reached at the gateway stand-in itself
(metis_env/testing/gateway_messages.py) with the token its apiKeyHelper gets from `metis-env get key`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metis_env.testing.openai_server import OpenAIStubServer
from tests._gateway import gateway_env, logged_in, login_headless  # noqa: F401  (logged_in: a fixture)
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests.conftest import REPO, metis

KEY = "sk-stub-configure-0123456789abcdef"
MODELS = ["DeepSeek-R1", "Llama-3.3-70B-Instruct"]
REPLY = "Hello from the metis-env stub endpoint."
NPM_BIN = REPO / ".ci-tools" / "npm" / "node_modules" / ".bin"
AIDER = REPO / ".ci-tools" / "aider" / "bin" / "aider"
VENV_BIN = Path(sys.executable).parent

PI = str(NPM_BIN / "pi")
OPENCODE = str(NPM_BIN / "opencode")
AIDER_ARGS = ["--message", "hi", "--yes", "--no-git", "--no-check-update", "--analytics-disable",
              "--no-show-model-warnings", "--no-pretty", "--no-stream"]
ROUTE = {"codex": "/v1/responses"}

# case: (tool, configure's extra arguments, the command, the model it must ask for, extra environment)
CASES = {
    "llm (metis-env's plugin)": ("llm", [], ["llm", "-m", "metis-1/DeepSeek-R1", "hi"], "DeepSeek-R1", {}),
    # llm without metis-env's plugin (installed elsewhere): only configure's yaml, key and URL from `run`
    "llm (yaml only)": ("llm", [], ["llm", "-m", "metis-1/DeepSeek-R1", "hi"], "DeepSeek-R1", {"LLM_LOAD_PLUGINS": ""}),
    "aider": ("aider", ["--model", "Llama-3.3-70B-Instruct"], [str(AIDER), *AIDER_ARGS], "Llama-3.3-70B-Instruct", {}),
    # the key comes from configure's plugin, which runs `metis-env get key 1`
    "opencode": ("opencode", [], [OPENCODE, "run", "-m", "metis-1/Llama-3.3-70B-Instruct", "hi"], "Llama-3.3-70B-Instruct", {}),
    "pi": ("pi", [], [PI, "--provider", "metis-1", "--model", "DeepSeek-R1", "-p", "hi"], "DeepSeek-R1", {}),
    # plain `pi -p` with someone else's OPENAI_API_KEY about: configure made metis-1 pi's default
    "pi (its default)": ("pi", [], [PI, "-p", "hi"], "DeepSeek-R1", {"OPENAI_API_KEY": "sk-not-for-this-endpoint"}),
}
# how each is started: on its own (the tools that ask metis-env for the key), under `metis-env run`,
# and under `run --proxy` (the broker gives a command the same variables)
WAYS = {
    "on its own": [],
    "metis-env run": ["metis-env", "run", "1", "--"],
    "metis-env run --proxy": ["metis-env", "run", "--proxy", "1", "--"],
}
NEEDS_RUN = {"llm (yaml only)", "aider"}
PARAMS = [(case, way) for case in CASES for way in WAYS if not (case in NEEDS_RUN and way == "on its own")]


def tool_path(tool: str) -> str | None:
    command = {"llm": "llm", "aider": str(AIDER), "opencode": OPENCODE, "pi": PI, "codex": str(NPM_BIN / "codex")}[tool]
    return shutil.which(command, path=str(VENV_BIN)) if tool == "llm" else (command if os.access(command, os.X_OK) else None)


def tool_env(tmp_path: Path) -> dict:
    """The environment the tools run in: this checkout's metis-env and the tools on PATH, no OPENAI_*
    or SAMBANOVA_* variable, their data and caches under ``tmp_path``, nothing from the network."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OPENAI_", "SAMBANOVA_"))}
    env.update(
        PATH=os.pathsep.join([str(VENV_BIN), str(NPM_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        PYTHONPATH=str(REPO),
        XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"),
        # offline: no model catalogue, price list or update check from the network
        OPENCODE_DISABLE_MODELS_FETCH="1", OPENCODE_DISABLE_AUTOUPDATE="1", LITELLM_LOCAL_MODEL_COST_MAP="True",
        NO_COLOR="1", TERM="dumb",
    )
    return env


@pytest.fixture
def stub():
    server = OpenAIStubServer(KEY, MODELS, reply=REPLY)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("case, way", PARAMS)
def test_the_real_tool_reaches_the_endpoint_with_its_key_and_model(case, way, stub, file_store, tmp_path, env_setup):
    tool, extra, command, model, extra_env = CASES[case]
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={stub.base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
    assert metis("import", str(endpoint_file)).returncode == 0
    assert metis("configure", tool, "1", *extra).returncode == 0

    work = tmp_path / "work"
    work.mkdir()
    env = {**tool_env(tmp_path), **extra_env}
    proc = subprocess.run([*WAYS[way], *command], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    output = proc.stdout.decode(errors="replace")
    assert (proc.returncode, REPLY in output) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    asked = {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"}
    assert asked == {(ROUTE.get(tool, "/v1/chat/completions"), True, model)}
    assert [r.path for r in stub.requests if not r.authorized] == []
    assert KEY not in (Path(os.environ["HOME"]) / CASES_FILES[tool]).read_text()
    assert not (Path(os.environ["HOME"]) / ".config/io.datasette.llm/keys.json").exists()


CASES_FILES = {
    "llm": ".config/io.datasette.llm/extra-openai-models.yaml",
    "aider": ".aider.conf.yml",
    "opencode": ".config/opencode/opencode.json",
    "pi": ".pi/agent/models.json",
    "codex": ".codex/config.toml",
}


def test_the_real_codex_reaches_a_cluster_that_serves_responses_with_the_gateway_token(globus, globus_env, tmp_path):  # noqa: F811
    """codex's key command (`metis-env get key sophia`) hands it the Globus token; the cluster's record
    says it serves /v1/responses (as discovery writes `extra.routes`) and points at the stub."""
    if tool_path("codex") is None:
        pytest.skip("codex is not installed here (bash .ci/run installs it)")
    env = gateway_env(globus_env)
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0, err
    token = metis("get", "key", "sophia", env=env).stdout.decode().strip()
    stub = OpenAIStubServer(token, ["openai/gpt-oss-120b"], reply=REPLY)
    stub.start()
    try:
        path = Path(env["METIS_ENV_CONFIG_DIR"]) / "endpoints.yaml"
        data = json.loads(path.read_text())
        data["endpoints"]["sophia"]["base_url"] = stub.base_url
        data["endpoints"]["sophia"].setdefault("extra", {})["routes"] = ["/v1/chat/completions", "/v1/responses"]
        path.write_text(json.dumps(data))
        assert metis("configure", "codex", "metis", env=env).returncode == 22  # Metis: chat completions only
        assert metis("configure", "codex", "sophia", "--model", "openai/gpt-oss-120b", env=env).returncode == 0
        work = tmp_path / "work"
        work.mkdir()
        command = [str(NPM_BIN / "codex"), "-c", "model_provider=metis-sophia", "-m", "openai/gpt-oss-120b", "exec",
                   "--skip-git-repo-check", "hi"]
        proc = subprocess.run(command, cwd=work, env={**tool_env(tmp_path), **globus.env()}, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=240)
    finally:
        stub.stop()
    assert (proc.returncode, REPLY in proc.stdout.decode(errors="replace")) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    asked = {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"}
    assert (asked, token in (Path(env["HOME"]) / CASES_FILES["codex"]).read_text()) == ({("/v1/responses", True, "openai/gpt-oss-120b")}, False)


def test_llm_keeps_working_when_metis_envs_store_cannot_be_read(file_store, tmp_path, env_setup):
    """llm loads every plugin for every command: a damaged store hides metis-env's models, nothing more."""
    if tool_path("llm") is None:
        pytest.skip("llm is not installed here")
    config = Path(os.environ["METIS_ENV_CONFIG_DIR"])
    config.mkdir(mode=0o700, exist_ok=True)
    (config / "endpoints.yaml").write_text("{not json")
    os.chmod(config / "endpoints.yaml", 0o600)
    proc = subprocess.run(["llm", "models"], env=tool_env(tmp_path), capture_output=True, timeout=120)
    assert (proc.returncode, [line for line in proc.stdout.decode().splitlines() if "metis-" in line]) == (0, []), proc.stderr


WRITTEN_CAPABILITIES = {
    "pi": lambda text: json.loads(text)["providers"]["metis-1"]["models"][0],
    "opencode": lambda text: json.loads(text)["provider"]["metis-1"]["models"]["Llama-3.3-70B-Instruct"],
    "llm": lambda text: [entry.get("supports_tools") for entry in __import__("yaml").safe_load(text)],
}
EXPECTED_CAPABILITIES = {
    "pi": {"id": "DeepSeek-R1", "name": "DeepSeek-R1", "contextWindow": 131072, "reasoning": True},
    "opencode": {"name": "Llama-3.3-70B-Instruct", "tool_call": True, "reasoning": False},
    "llm": [True, True],
}


@pytest.mark.parametrize("case", ["opencode", "pi", "llm (metis-env's plugin)"])
def test_the_real_tool_takes_the_capabilities_configure_writes(case, stub, file_store, tmp_path, env_setup):
    """What the gateway says of a model (context window, tool calling, reasoning) is written in each
    tool's own terms, and the tool still loads its config and reaches the endpoint."""
    tool, extra, command, model, extra_env = CASES[case]
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={stub.base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
    assert metis("import", str(endpoint_file)).returncode == 0
    path = Path(os.environ["METIS_ENV_CONFIG_DIR"]) / "endpoints.yaml"
    data = json.loads(path.read_text())
    data["endpoints"]["1"]["extra"] = {"capabilities": {
        name: {"context_window_tokens": 131072, "tool_calling": True, "reasoning": name == "DeepSeek-R1"} for name in MODELS
    }}
    path.write_text(json.dumps(data))
    assert metis("configure", tool, "1", *extra).returncode == 0
    written = (Path(os.environ["HOME"]) / CASES_FILES[tool]).read_text()
    assert WRITTEN_CAPABILITIES[tool](written) == EXPECTED_CAPABILITIES[tool]
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(command, cwd=work, env={**tool_env(tmp_path), **extra_env}, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=240)
    assert (proc.returncode, REPLY in proc.stdout.decode(errors="replace")) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    assert {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"} == {("/v1/chat/completions", True, model)}


# --- Claude Code: the gateway's Messages route, the Globus token from apiKeyHelper -----------------

CLAUDE = str(NPM_BIN / "claude")
CLAUDE_MODEL = "openai/gpt-oss-120b"
# Someone else's Anthropic credentials in the user's environment: configure's settings must keep
# both away from the gateway (each outranks apiKeyHelper in Claude Code).
FOREIGN = {"ANTHROPIC_API_KEY": "sk-ant-not-for-alcf-0123456789", "ANTHROPIC_AUTH_TOKEN": "sk-ant-oat-not-for-alcf-0123"}
CLAUDE_WAYS = {
    "on its own": [],
    "metis-env run": ["metis-env", "run", "minerva", "--"],
    "metis-env run --proxy": ["metis-env", "run", "--proxy", "minerva", "--"],
}


def claude_env(tmp_path: Path, env: dict, globus) -> dict:  # noqa: F811
    """tool_env plus the gateway's variables (for the helper's metis-env), the stand-in's CA for
    Claude Code's TLS, its config dir under ``tmp_path``, and nothing that leaves this machine."""
    return {
        **tool_env(tmp_path), **{k: v for k, v in env.items() if k.startswith("METIS_ENV_")}, **globus.env(), **FOREIGN,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config"), "NODE_EXTRA_CA_CERTS": globus.ca_file,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
    }


@pytest.mark.parametrize("way", CLAUDE_WAYS)
def test_the_real_claude_code_reaches_a_messages_cluster_with_the_current_gateway_token(way, globus, globus_env, tmp_path):  # noqa: F811
    """`configure claude minerva` and then plain `claude -p hi`: Claude Code runs `metis-env get key
    minerva` (apiKeyHelper), which refreshes the Globus token that expired meanwhile, and sends the
    new one to the stand-in's /v1/messages with the configured model; no token is on disk in Claude
    Code's config dir, and the Anthropic credentials in its environment never reach the gateway."""
    if not os.access(CLAUDE, os.X_OK):
        pytest.skip("Claude Code is not installed here (bash .ci/run installs it)")
    from metis_env.testing.gateway_messages import fingerprint
    from metis_env.testing.gateway_standin import ALL_CLUSTERS, REPLY as GATEWAY_REPLY, make_clusters

    with globus._lock:
        globus.clusters.update(make_clusters({"minerva": ALL_CLUSTERS["minerva"]}))
    env = gateway_env(globus_env, CLAUDE_CONFIG_DIR=str(tmp_path / "claude-config"))
    globus.access_lifetime = 1  # the login's token is dead at the gateway by the time Claude Code runs
    code, _out, err, _url = login_headless(env, globus)
    assert code == 0, err
    globus.access_lifetime = 172800
    first = json.loads((Path(env["METIS_ENV_CONFIG_DIR"]) / "keys.json").read_text())["keys"]
    assert metis("configure", "claude", "minerva", "--model", CLAUDE_MODEL, env=env).returncode == 0
    while any(globus.token_status(token) == "valid" for token in first.values()):  # wait for the state, not for a time
        globus.wait(0.05)

    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([*CLAUDE_WAYS[way], CLAUDE, "-p", "hi"], cwd=work, env=claude_env(tmp_path, env, globus),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    assert (proc.returncode, proc.stdout.decode(errors="replace")) == (0, GATEWAY_REPLY + "\n"), proc.stderr.decode(errors="replace")[-2000:]
    # the gateway's context window is in the settings: no "assumes a context window of 1m tokens" warning
    assert proc.stderr.decode() == '[claude-code:unrecognized_model] {"model":"openai/gpt-oss-120b","query_source":"sdk"}\n'
    token = metis("get", "key", "minerva", env=env).stdout.decode().strip()  # the refreshed one, still fresh: no refresh now
    assert token not in first.values()
    seen = [(r.asked, r.model, r.stream, r.bearer_sha256, r.api_key_sha256, r.status) for r in globus.gateway.messages]
    # Claude Code 2.1.332 first sends a role "system" message, which FIRST's schema refuses (422), then
    # the same request without it: both with the refreshed token, as Bearer and as x-api-key.
    current = fingerprint(token)
    assert seen == [(CLAUDE_MODEL, CLAUDE_MODEL, True, current, current, 422), (CLAUDE_MODEL, CLAUDE_MODEL, True, current, current, 200)]
    assert {(r.path, r.bearer) for r in globus.requests if r.path.endswith("/messages")} == {("/resource_server/minerva/api/v1/messages", True)}
    settings = json.loads((tmp_path / "claude-config" / "settings.json").read_text())
    assert settings == {"apiKeyHelper": "metis-env get key minerva", "env": {
        "ANTHROPIC_BASE_URL": globus.gateway_url + "minerva/api", "ANTHROPIC_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": CLAUDE_MODEL, "ANTHROPIC_DEFAULT_SONNET_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": CLAUDE_MODEL, "ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "300000", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "131072"}}
    secrets_ = [token, *first.values(), *FOREIGN.values()]
    written = [p for p in (tmp_path / "claude-config").rglob("*") if p.is_file() and any(s in p.read_text(errors="replace") for s in secrets_)]
    assert written == []


def test_the_real_claude_code_on_a_cluster_that_cannot_stream_messages_says_so(logged_in, tmp_path):
    """Sophia's vLLM runs through Globus Compute, where the gateway refuses streamed Messages (400),
    and Claude Code streams every request: configure says so, and Claude Code ends with the gateway's words."""
    if not os.access(CLAUDE, os.X_OK):
        pytest.skip("Claude Code is not installed here (bash .ci/run installs it)")
    from metis_env.testing.gateway_messages import STREAMING_REFUSED

    env, globus = logged_in
    env = {**env, "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config")}
    configured = metis("configure", "claude", "sophia", "--model", CLAUDE_MODEL, env=env)
    assert configured.returncode == 0
    assert ("metis-env: note: Claude Code streams every request, and the gateway streams Anthropic Messages only from the "
            "backends it calls directly (framework api): if claude answers \"Streaming is not supported for the Anthropic "
            "Messages API on this endpoint\", sophia's vllm is not one; configure a cluster of framework api\n") in configured.stderr.decode()
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([CLAUDE, "-p", "hi"], cwd=work, env=claude_env(tmp_path, env, globus), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=240)
    assert (proc.returncode, proc.stdout.decode(errors="replace")) == (1, f"API Error: 400 {STREAMING_REFUSED}\n")
    assert {r.status for r in globus.gateway.messages} == {422, 400}
