"""Each client library, run as its docs show under `metis-env run 1 -- python SCRIPT`, sends its
request to the endpoint and reaches no other host.

The scripts (tests/_clients/) are each client's minimal documented usage and name no URL or key:
they get both from the variables `run` sets. Every connection and name lookup the client's process
attempts is recorded below the HTTP libraries by an audit hook (tests/_netaudit/sitecustomize.py),
which also stops the process (exit 97) at its first attempt to reach anything but the stub, so
nothing can leave and nothing depends on whether a client honours proxy variables. The negative
controls run the same script without the names that keep the client on the endpoint and see the
attempt to reach the client's own default host: the test can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from metis_env.testing.openai_server import DEFAULT_REPLY, OpenAIStubServer
from tests.conftest import REPO
from tests.docs import page

KEY = "sk-clients-0123456789abcdef"
MODEL = "Llama-4-Maverick-17B-128E-Instruct"
REFUSED_EXIT = 97  # tests/_netaudit/sitecustomize.py
SCRIPTS = Path(__file__).parent / "_clients"


@dataclass(frozen=True)
class Client:
    script: str  # in tests/_clients/
    keeps_it_home: tuple[str, ...]  # the exported names without which it heads for default_host
    default_host: str
    requests: int = 1  # chat completions the script asks for
    control: bool = True  # run the negative control (the leaking clients, and openai as the baseline)


CLIENTS = {
    "openai": Client("use_openai_sdk.py", ("OPENAI_BASE_URL",), "api.openai.com"),
    "sambanova": Client("use_sambanova_sdk.py", ("SAMBA_NOVA_BASE_URL",), "api.sambanova.ai", requests=2),
    "langchain-sambanova": Client("use_langchain_sambanova.py", ("SAMBANOVA_API_BASE", "SAMBA_NOVA_BASE_URL"), "api.sambanova.ai"),
    "litellm": Client("use_litellm.py", ("SAMBANOVA_API_BASE",), "api.sambanova.ai", requests=2),
    "openai-agents": Client("use_openai_agents.py", ("OPENAI_AGENTS_DISABLE_TRACING",), "api.openai.com"),
    "langchain-openai": Client("use_langchain_openai.py", ("OPENAI_API_BASE", "OPENAI_BASE_URL"), "api.openai.com", control=False),
    "langchain-community": Client("use_langchain_community.py", ("OPENAI_API_BASE", "OPENAI_BASE_URL"), "api.openai.com", control=False),
}


@dataclass
class Endpoint:
    stub: OpenAIStubServer
    port: int
    env: dict  # the environment `metis-env run` starts from: nothing of the test runner's own
    log: Path

    def run(self, client: Client, unset: tuple[str, ...] = ()) -> tuple[int, str, str]:
        """`metis-env run 1 -- [env -u NAME...] python SCRIPT`: (exit code, stdout, stderr)."""
        without = [arg for name in unset for arg in ("-u", name)]
        command = ["env", *without] if unset else []
        result = subprocess.run(
            [sys.executable, "-m", "metis_env", "run", "1", "--", *command, sys.executable, str(SCRIPTS / client.script)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.returncode, result.stdout, result.stderr

    def reached(self) -> list[tuple[str, object]]:
        """The distinct (host, port) pairs every audited process looked up or connected to, in order."""
        pairs = []
        for line in self.log.read_text().splitlines() if self.log.exists() else ():
            record = json.loads(line)
            pair = (record["host"], record["port"])
            if pair not in pairs:
                pairs.append(pair)
        return pairs

    def answered(self) -> list[tuple[str, str, bool, object]]:
        """What the stub answered: (method, path, carried the key, model asked for)."""
        return [(r.method, r.path, r.authorized, (r.body or {}).get("model")) for r in self.stub.requests]


@pytest.fixture
def endpoint(tmp_path):
    """A stub endpoint on 127.0.0.1, imported as endpoint 1 into a file store of its own."""
    stub = OpenAIStubServer(KEY, [MODEL])
    base_url = stub.start()
    try:
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        log = tmp_path / "network.jsonl"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path / "home"),
            "METIS_ENV_CONFIG_DIR": str(tmp_path / "config"),
            "METIS_ENV_STORE": "file",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "_netaudit"), str(REPO)]),
            "METIS_TEST_NET_LOG": str(log),
            "METIS_TEST_NET_ALLOW": f"127.0.0.1:{port}",
        }
        text = f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={MODEL}\n"
        imported = subprocess.run(
            [sys.executable, "-m", "metis_env", "import", "--id", "1", "-"], input=text, env=env, capture_output=True, text=True, timeout=60
        )
        assert (imported.returncode, imported.stdout, imported.stderr) == (0, "", "endpoint 1: new\n")
        yield Endpoint(stub, port, env, log)
    finally:
        stub.stop()


@pytest.mark.parametrize("name", CLIENTS)
def test_the_client_sends_the_key_to_the_endpoint_and_reaches_no_other_host(endpoint, name):
    client = CLIENTS[name]
    assert (endpoint.run(client), endpoint.reached(), endpoint.answered()) == (
        (0, (DEFAULT_REPLY + "\n") * client.requests, ""),
        [("127.0.0.1", endpoint.port)],
        [("POST", "/v1/chat/completions", True, MODEL)] * client.requests,
    )


@pytest.mark.parametrize("name", [name for name, client in CLIENTS.items() if client.control])
def test_without_the_names_that_keep_it_home_the_client_heads_for_its_default_host(endpoint, name):
    """The negative control: the same script, without the names listed for it, tries to reach its
    default host (the audit stops it there), so the test above would see a leak."""
    client = CLIENTS[name]
    code, _stdout, stderr = endpoint.run(client, unset=client.keeps_it_home)
    outside = [pair for pair in endpoint.reached() if pair != ("127.0.0.1", endpoint.port)]
    assert (code, outside, stderr.splitlines()[-1:]) == (
        REFUSED_EXIT,
        [(client.default_host, 443)],
        [f"network audit: refused socket.getaddrinfo {client.default_host}:443; exiting 97"],
    )


def test_without_litellm_local_model_cost_map_litellm_fetches_its_price_list_from_github(endpoint):
    """Not the key (a plain GET of a public file), but a host other than the endpoint's: without the
    LITELLM_LOCAL_MODEL_COST_MAP that export sets, `import litellm` looks up raw.githubusercontent.com."""
    client = Client("use_litellm.py", (), "")
    code, stdout, _stderr = endpoint.run(client, unset=("LITELLM_LOCAL_MODEL_COST_MAP",))
    assert (code, stdout, endpoint.reached(), endpoint.answered()) == (
        REFUSED_EXIT, "", [("raw.githubusercontent.com", 443)], []
    )


def readme_rows(name: str) -> list[list[str]]:
    """The rows of docs/export.md's "Which client reads which variable" table whose client is `name`."""
    table = page("export").split("## Which client reads which variable", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    return [row for row in rows[1:] if row[0].split()[0].rstrip(",") == name]


@pytest.mark.parametrize("name", CLIENTS)
def test_the_readme_table_names_what_the_test_showed(name):
    client = CLIENTS[name]
    rows = readme_rows(name)
    home = {cell for row in rows for cell in row[4].replace("`", "").split(", ")}
    hosts = [row[3] for row in rows if client.default_host in row[3]]
    assert (len(rows) > 0, sorted(set(client.keeps_it_home) - home), len(hosts) > 0) == (True, [], True)
