"""The real tools read what `metis-env configure` wrote and reach the endpoint with its key and model.

Each tool runs for real against the loopback OpenAI stub (metis_env/testing/openai_server.py), from
the place .ci/run installs it: llm from the test extra, aider in its own venv (.ci-tools/aider),
opencode, codex and pi from npm (.ci-tools/npm). llm and aider get the key from the variables
`metis-env run` sets; pi, codex and opencode (through configure's plugin) run `metis-env get key 1`
themselves, so they run without `metis-env run` and with no OPENAI_* variable at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metis_env.testing.openai_server import OpenAIStubServer
from tests.conftest import REPO, metis

KEY = "sk-stub-configure-0123456789abcdef"
MODELS = ["DeepSeek-R1", "Llama-3.3-70B-Instruct"]
REPLY = "Hello from the metis-env stub endpoint."
NPM_BIN = REPO / ".ci-tools" / "npm" / "node_modules" / ".bin"
AIDER = REPO / ".ci-tools" / "aider" / "bin" / "aider"
VENV_BIN = Path(sys.executable).parent

# tool: (configure's extra arguments, the command, run under `metis-env run 1`?, the model it must ask for)
CASES = {
    "llm": ([], ["llm", "-m", "metis-1/DeepSeek-R1", "hi"], True, "DeepSeek-R1"),
    "aider": (
        ["--model", "Llama-3.3-70B-Instruct"],
        [str(AIDER), "--message", "hi", "--yes", "--no-git", "--no-check-update", "--analytics-disable",
         "--no-show-model-warnings", "--no-pretty", "--no-stream"],
        True, "Llama-3.3-70B-Instruct",
    ),
    # no `metis-env run`: the key comes from configure's plugin, which runs `metis-env get key 1`
    "opencode": ([], [str(NPM_BIN / "opencode"), "run", "-m", "metis-1/Llama-3.3-70B-Instruct", "hi"], False, "Llama-3.3-70B-Instruct"),
    "pi": ([], [str(NPM_BIN / "pi"), "--provider", "metis-1", "--model", "DeepSeek-R1", "-p", "hi"], False, "DeepSeek-R1"),
    "codex": (
        [],
        [str(NPM_BIN / "codex"), "-c", "model_provider=metis-1", "-m", "DeepSeek-R1", "exec", "--skip-git-repo-check", "hi"],
        False, "DeepSeek-R1",
    ),
}
ROUTE = {"codex": "/v1/responses"}


def tool_path(tool: str) -> str | None:
    command = CASES[tool][1][0]
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


@pytest.mark.parametrize("tool", list(CASES))
def test_the_real_tool_reaches_the_endpoint_with_its_key_and_model(tool, stub, file_store, tmp_path, env_setup):
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    extra, command, under_run, model = CASES[tool]
    endpoint_file = tmp_path / "metis_endpoint_1.txt"
    endpoint_file.write_text(f"BASE_URL={stub.base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
    assert metis("import", str(endpoint_file)).returncode == 0
    assert metis("configure", tool, "1", *extra).returncode == 0

    work = tmp_path / "work"
    work.mkdir()
    env = tool_env(tmp_path)
    argv = [str(VENV_BIN / "metis-env"), "run", "1", "--", *command] if under_run else command
    proc = subprocess.run(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    output = proc.stdout.decode(errors="replace")
    assert (proc.returncode, REPLY in output) == (0, True), proc.stderr.decode(errors="replace")[-2000:]
    asked = {(r.path, r.authorized, r.body.get("model")) for r in stub.requests if r.method == "POST"}
    assert asked == {(ROUTE.get(tool, "/v1/chat/completions"), True, model)}
    assert [r.path for r in stub.requests if not r.authorized] == []
    assert KEY not in (Path(os.environ["HOME"]) / CASES_FILES[tool]).read_text()


CASES_FILES = {
    "llm": ".config/io.datasette.llm/extra-openai-models.yaml",
    "aider": ".aider.conf.yml",
    "opencode": ".config/opencode/opencode.json",
    "pi": ".pi/agent/models.json",
    "codex": ".codex/config.toml",
}
