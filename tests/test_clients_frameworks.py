"""The agent and LLM frameworks (llama-index, DSPy, smolagents, Jupyter AI 3's and 2's magics), each
run as the client table shows under `metis-env run ID -- ...`, send their request to the endpoint with
its key and model and reach no other host: tests/test_clients.py's pattern, for heavier packages.

They pin versions of their own, so .ci/run installs them into one venv, .ci-tools/clients; these tests
skip where it is absent (a workstation that has not run .ci/run) and fail where CI=true. Each runs
against an endpoint file's endpoint (the stub answers as Metis does: 422 for a message content that is
not a string) and against a gateway endpoint after `metis-env login` (the gateway stand-in, over TLS).
Every connection and name lookup of the framework's processes (and of the Jupyter kernel's) is
audited by tests/_netaudit/sitecustomize.py, which stops a process at its first attempt to reach
anything but the one endpoint; the negative controls show each framework's default host without the
names that keep it home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from metis_env.testing.gateway_standin import REPLY as GATEWAY_REPLY
from metis_env.testing.openai_server import DEFAULT_REPLY, OpenAIStubServer
from tests._gateway import gateway_env, login_headless
from tests._globus import globus  # noqa: F401  (fixture)
from tests.conftest import REPO
from tests.docs import page
from tests.test_clients import KEY, MODEL, REFUSED_EXIT, readme_rows

SCRIPTS = Path(__file__).parent / "_clients"
VENV = REPO / ".ci-tools" / "clients"
PYTHON = VENV / "bin" / "python"
NETAUDIT = Path(__file__).parent / "_netaudit"
NBCONVERT_WAIT = ("--ExecutePreprocessor.startup_timeout=240",)


@dataclass(frozen=True)
class Framework:
    command: tuple[str, ...]  # run from the clients venv's bin/ (a script of tests/_clients/, or a tool)
    keeps_it_home: tuple[str, ...]  # the exported names without which it heads for default_host
    default_host: str


FRAMEWORKS = {
    "llama-index": Framework(("python", "use_llama_index.py"), ("OPENAI_API_BASE",), "api.openai.com"),
    "dspy": Framework(("python", "use_dspy.py"), ("OPENAI_BASE_URL", "OPENAI_API_BASE"), "api.openai.com"),
    "smolagents": Framework(("python", "use_smolagents.py"), ("OPENAI_BASE_URL",), "api.openai.com"),
    # the notebook's cells run in a real IPython kernel; nbconvert prints the executed notebook (its
    # 60 s for the kernel's start-up is raised: a busy CI machine can take longer)
    "jupyter-ai-magic-commands": Framework(
        ("jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout", *NBCONVERT_WAIT, "use_jupyter_ai_magics.ipynb"),
        ("OPENAI_BASE_URL", "OPENAI_API_BASE"), "api.openai.com",
    ),
    # Jupyter AI 2's magics: langchain-openai's ChatOpenAI behind the openai-chat-custom provider
    "jupyter-ai-magics": Framework(
        ("jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout", *NBCONVERT_WAIT, "use_jupyter_ai_magics_v2.ipynb"),
        ("OPENAI_API_BASE", "OPENAI_BASE_URL"), "api.openai.com",
    ),
}


def installed() -> None:
    if not os.access(PYTHON, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{VENV} is missing, and CI=true: .ci/run installs it")
        pytest.skip(f"the frameworks' venv {VENV} is not installed here (bash .ci/run installs it)")


def argv(framework: Framework) -> list[str]:
    program, *args = framework.command
    return [str(VENV / "bin" / program), *(str(SCRIPTS / arg) if arg.endswith((".py", ".ipynb")) else arg for arg in args)]


def audited_env(home: Path, log: Path, allow: str) -> dict[str, str]:
    """What `metis-env run` starts from: nothing of the test runner's own but PATH, the audit on."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "METIS_ENV_STORE": "file",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONPATH": os.pathsep.join([str(NETAUDIT), str(REPO)]),
        "METIS_TEST_NET_LOG": str(log),
        "METIS_TEST_NET_ALLOW": allow,
        # jupyter's and IPython's own state under HOME, not the runner's
        "JUPYTER_PLATFORM_DIRS": "1",
    }


def reached(log: Path) -> list[tuple[str, object]]:
    """The distinct (host, port) pairs every audited process looked up or connected to, in order."""
    pairs = []
    for line in log.read_text().splitlines() if log.exists() else ():
        record = json.loads(line)
        pair = (record["host"], record["port"])
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def run(env: dict[str, str], endpoint_id: str, framework: Framework, cwd: Path, unset: tuple[str, ...] = ()):
    """`metis-env run ID -- [env -u NAME...] FRAMEWORK...`: (exit code, stdout, stderr)."""
    without = ["env", *(arg for name in unset for arg in ("-u", name))] if unset else []
    result = subprocess.run(
        [sys.executable, "-m", "metis_env", "run", endpoint_id, "--", *without, *argv(framework)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    return result.returncode, result.stdout, result.stderr


def printed(framework: Framework, stdout: str) -> str:
    """What the framework printed: the script's stdout, or the Markdown the last cell (`%%ai`) showed."""
    if not framework.command[-1].endswith(".ipynb"):
        return stdout
    outputs = json.loads(stdout)["cells"][-1]["outputs"]
    shown = ["".join(output["data"]["text/markdown"]) for output in outputs if output["output_type"] == "execute_result"]
    return "".join(shown) + "\n"


def files_holding(secret: str, env: dict[str, str], cwd: Path) -> list[str]:
    """The files under HOME and the working folder (caches, kernel and IPython state) holding ``secret``."""
    roots = [Path(env["HOME"]), cwd]
    files = [path for root in roots for path in root.rglob("*") if path.is_file()]
    return sorted(str(path) for path in files if secret.encode() in path.read_bytes())


@dataclass
class Endpoint:
    stub: OpenAIStubServer
    port: int
    env: dict
    log: Path
    cwd: Path


@pytest.fixture
def endpoint(tmp_path):
    """A stub endpoint on 127.0.0.1 that refuses what Metis refuses, imported as endpoint 1."""
    installed()
    stub = OpenAIStubServer(KEY, [MODEL], metis_strict=True)
    base_url = stub.start()
    try:
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        log = tmp_path / "network.jsonl"
        env = {**audited_env(tmp_path / "home", log, f"127.0.0.1:{port}"), "METIS_ENV_CONFIG_DIR": str(tmp_path / "config")}
        text = f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={MODEL}\n"
        imported = subprocess.run(
            [sys.executable, "-m", "metis_env", "import", "--id", "1", "-"],
            input=text, env=env, capture_output=True, text=True, timeout=60,
        )
        assert (imported.returncode, imported.stdout, imported.stderr) == (0, "", "endpoint 1: new\n")
        work = tmp_path / "work"
        work.mkdir()
        yield Endpoint(stub, port, env, log, work)
    finally:
        stub.stop()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_the_framework_sends_the_key_and_model_to_the_endpoint_and_reaches_no_other_host(endpoint, name):
    framework = FRAMEWORKS[name]
    code, stdout, stderr = run(endpoint.env, "1", framework, endpoint.cwd)
    assert code == 0, stderr[-3000:]
    requests = [(r.method, r.path, r.authorized, (r.body or {}).get("model")) for r in endpoint.stub.requests]
    assert (printed(framework, stdout), reached(endpoint.log), requests, files_holding(KEY, endpoint.env, endpoint.cwd)) == (
        DEFAULT_REPLY + "\n",
        [("127.0.0.1", endpoint.port)],
        [("POST", "/v1/chat/completions", True, MODEL)],
        [],
    )


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_on_a_gateway_endpoint_the_framework_sends_the_token_to_the_gateway_and_reaches_no_other_host(globus, tmp_path, name):  # noqa: F811
    """After `metis-env login`, `run metis` gives the gateway's base URL (HTTPS, with the stand-in's CA
    in SSL_CERT_FILE), the Globus token as the key and the cluster's default model; the stand-in
    answers 200 only for a live token and a model the cluster serves (404 for any other name). No file
    under HOME or the working folder holds the token afterwards."""
    installed()
    port = int(globus.url.rstrip("/").rsplit(":", 1)[1])
    log = tmp_path / "network.jsonl"
    env = {**audited_env(tmp_path / "home", log, f"127.0.0.1:{port}"), **gateway_env(globus.env()),
           "METIS_ENV_CONFIG_DIR": str(tmp_path / "config")}
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    work = tmp_path / "work"
    work.mkdir()
    framework = FRAMEWORKS[name]
    before = len(globus.requests)
    code, stdout, stderr = run(env, "metis", framework, work)
    assert code == 0, stderr[-3000:]
    asked = [(r.method, r.path, r.bearer, r.status) for r in globus.requests[before:]]
    assert (printed(framework, stdout), reached(log), asked) == (
        GATEWAY_REPLY + "\n",
        [("127.0.0.1", port)],
        [("POST", "/resource_server/metis/api/v1/chat/completions", True, 200)],
    )
    token = subprocess.run([sys.executable, "-m", "metis_env", "get", "key", "metis"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert (token.returncode, files_holding(token.stdout.strip(), env, work)) == (0, [])


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_without_the_names_that_keep_it_home_the_framework_heads_for_its_default_host(endpoint, name):
    """The negative control: the same code, without the names listed for it, tries to reach its
    default host (the audit stops it there), so the test above would see a leak."""
    framework = FRAMEWORKS[name]
    code, _stdout, stderr = run(endpoint.env, "1", framework, endpoint.cwd, unset=framework.keeps_it_home)
    outside = [pair for pair in reached(endpoint.log) if pair != ("127.0.0.1", endpoint.port)]
    # a script ends where the audit stops it; nbconvert outlives its kernel and reports the death
    # (the kernel's stderr goes to the notebook, not to nbconvert's)
    ending = (1, "nbclient.exceptions.DeadKernelError: Kernel died") if name.startswith("jupyter-ai") else (
        REFUSED_EXIT, f"network audit: refused socket.getaddrinfo {framework.default_host}:443; exiting 97")
    assert (code, outside, stderr.splitlines()[-1:]) == (ending[0], [(framework.default_host, 443)], [ending[1]])


def test_without_flatten_messages_as_text_smolagents_sends_parts_that_metis_refuses(endpoint):
    """The switch smolagents needs for Metis: without it the content is a list of parts, and Metis
    (as the stub plays it) answers 422 "Input should be a valid string"."""
    code, stdout, stderr = run(endpoint.env, "1", Framework(("python", "use_smolagents_parts.py"), (), ""), endpoint.cwd)
    sent = [(r.path, r.authorized, r.body["messages"]) for r in endpoint.stub.requests]
    assert (code, stdout, sent, "Error code: 422" in stderr.splitlines()[-1]) == (
        1, "", [("/v1/chat/completions", True, [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}])], True
    )


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_the_client_table_names_what_the_test_showed(name):
    framework = FRAMEWORKS[name]
    rows = readme_rows(name)
    home = {cell for row in rows for cell in row[4].replace("`", "").split(", ")}
    hosts = [row[3] for row in rows if framework.default_host in row[3]]
    assert (len(rows) > 0, sorted(set(framework.keeps_it_home) - home), len(hosts) > 0) == (True, [], True)


def code_blocks(text: str) -> list[str]:
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2]]


def snippets(framework: Framework) -> list[str]:
    """The code the framework runs: the script without its docstring, or each notebook cell."""
    path = SCRIPTS / framework.command[-1]
    if path.suffix == ".ipynb":
        return ["".join(cell["source"]) + "\n" for cell in json.loads(path.read_text())["cells"]]
    return [path.read_text().split('"""', 2)[2].lstrip("\n")]


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_the_page_shows_the_code_the_test_ran(name):
    """docs/export.md's code blocks are the tested code, line for line."""
    blocks = code_blocks(page("export"))
    assert [snippet for snippet in snippets(FRAMEWORKS[name]) if snippet not in blocks] == []
