"""The broker adapts chat-completions requests to what Metis takes (issue 16 item 6).

First the transform itself, as a table of whole bodies; then for real: opencode and pi, as configure
sets them up but pointed at the broker, under `metis-env run --proxy` against the endpoint-file stub
answering 422 as Metis does to list-of-parts content, with a prompt and a file (two text parts, which
both send as a list). They get their reply with the adaptation, and Metis's 422 with the setting off
(the control that shows the stand-in refuses what the tools send).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from metis_env.broker.metis_compat import adapt, adapt_bytes, is_metis
from metis_env.store import StoredEndpoint
from metis_env.testing.openai_server import OpenAIStubServer
from tests.conftest import metis
from tests.test_configure_tools import OPENCODE, PI, tool_env, tool_path

NONE = {"content_flattened": 0, "developer_role": 0, "tools_dropped": 0}
TEXT = lambda text: {"type": "text", "text": text}  # noqa: E731
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TOOLS = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}]

# case: (body in, body out, changes counted)
ADAPT = {
    "a string content stays": (
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        NONE,
    ),
    "text parts are joined into one string": (
        {"model": "m", "messages": [{"role": "user", "content": [TEXT("a"), TEXT("b")]}], "stream": True},
        {"model": "m", "messages": [{"role": "user", "content": "a\nb"}], "stream": True},
        {**NONE, "content_flattened": 1},
    ),
    "an image part leaves the list as it is": (
        {"model": "m", "messages": [{"role": "user", "content": [TEXT("what is this"), IMAGE]}]},
        {"model": "m", "messages": [{"role": "user", "content": [TEXT("what is this"), IMAGE]}]},
        NONE,
    ),
    "developer becomes system, each message counted": (
        {"model": "m", "messages": [{"role": "developer", "content": [TEXT("be brief")]},
                                    {"role": "developer", "content": "and kind"},
                                    {"role": "user", "content": [TEXT("hi")]}]},
        {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                    {"role": "system", "content": "and kind"},
                                    {"role": "user", "content": "hi"}]},
        {"content_flattened": 2, "developer_role": 2, "tools_dropped": 0},
    ),
    "tools, tool_choice and parallel_tool_calls are dropped, one request counted": (
        {"model": "m", "messages": [], "tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False},
        {"model": "m", "messages": []},
        {**NONE, "tools_dropped": 1},
    ),
    "an empty list and odd messages pass": (
        {"model": "m", "messages": [{"role": "user", "content": []}, "not a message", {"role": "user", "content": None}]},
        {"model": "m", "messages": [{"role": "user", "content": []}, "not a message", {"role": "user", "content": None}]},
        NONE,
    ),
    "a body that is not an object passes": (["a", "list"], ["a", "list"], NONE),
    "no messages at all passes": ({"prompt": "hi"}, {"prompt": "hi"}, NONE),
}


@pytest.mark.parametrize("case", ADAPT)
def test_adapt(case):
    before, after, changes = ADAPT[case]
    kept = json.dumps(before)
    assert adapt(before) == (after, changes)
    assert json.dumps(before) == kept  # the caller's body is left alone


BYTES = {
    "not JSON": (b"{not json", b"{not json", NONE),
    "nothing to change: the same bytes": (b'{"model":"m",  "messages":[]}', b'{"model":"m",  "messages":[]}', NONE),
    "changed: new JSON, UTF-8": (
        '{"messages":[{"role":"user","content":[{"type":"text","text":"é"}]}]}'.encode(),
        '{"messages": [{"role": "user", "content": "é"}]}'.encode(),
        {**NONE, "content_flattened": 1},
    ),
}


@pytest.mark.parametrize("case", BYTES)
def test_adapt_bytes(case):
    before, after, changes = BYTES[case]
    assert adapt_bytes(before) == (after, changes)


def stored(source, id, base_url):
    return StoredEndpoint(id=id, base_url=base_url, models=(), file_name="", source=source, synced_at="",
                          fingerprint="", store="file", secret_ref="", backend="")


METIS_OR_NOT = {
    "an endpoint file": (stored("ssh", "1", "https://sn.example/api/v1/"), True),
    "the gateway's metis cluster": (stored("gateway", "metis", "https://gw.example/resource_server/metis/api/v1"), True),
    "a gateway cluster whose URL is under /metis/": (stored("gateway", "m2", "https://gw.example/resource_server/metis/x/v1"), True),
    "the gateway's sophia cluster": (stored("gateway", "sophia", "https://gw.example/resource_server/sophia/vllm/v1"), False),
}


@pytest.mark.parametrize("case", METIS_OR_NOT)
def test_is_metis(case):
    endpoint, expected = METIS_OR_NOT[case]
    assert is_metis(endpoint) is expected


KEY = "sk-stub-metis-compat-0123456789abcdef"
MODELS = ["DeepSeek-R1", "Llama-3.3-70B-Instruct"]
REPLY = "Hello from the metis-env stub endpoint."
PROMPT = ["Say hi.", "Then stop."]  # two text parts of one user message (opencode: the second as a file)
TOOLS_RUN = {
    "opencode": [OPENCODE, "run", "-m", "metis-1/Llama-3.3-70B-Instruct", PROMPT[0], "-f", "NOTE"],
    "pi": [PI, "--provider", "metis-1", "--model", "DeepSeek-R1", "-p", PROMPT[0], "@NOTE"],
}


def point_at_the_broker(tool: str, url: str, environ: dict) -> None:
    """configure's provider, sent to the broker with the local key ``run --proxy`` gives
    (configure's own config asks metis-env for the real key and goes to the endpoint directly)."""
    home = Path(environ["HOME"])
    if tool == "opencode":
        path = home / ".config/opencode/opencode.json"
        config = json.loads(path.read_text())
        config["provider"]["metis-1"]["options"]["baseURL"] = url
        (home / ".config/opencode/plugins/metis-env.js").unlink()  # it would send the real key
    else:
        path = home / ".pi/agent/models.json"
        config = json.loads(path.read_text())
        config["providers"]["metis-1"].update(baseUrl=url, apiKey="OPENAI_API_KEY")
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("setting", ["true", "false"])
@pytest.mark.parametrize("tool", TOOLS_RUN)
def test_the_real_tool_works_on_metis_through_the_broker_only_with_the_adaptation(tool, setting, file_store, tmp_path, env_setup):
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    server = OpenAIStubServer(KEY, MODELS, reply=REPLY, metis_strict=True)
    with server as base_url:
        endpoint_file = tmp_path / "metis_endpoint_1.txt"
        endpoint_file.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
        assert metis("import", str(endpoint_file)).returncode == 0
        assert metis("configure", tool, "1").returncode == 0
        env = {**tool_env(tmp_path), "METIS_ENV_METIS_COMPAT": setting}
        started = metis("proxy", "start", "1", "--shell", "bash", env=env)
        url = re.search(r"OPENAI_BASE_URL='([^']+)'", started.stdout.decode()).group(1)
        point_at_the_broker(tool, url, env)
        work = tmp_path / "work"
        work.mkdir()
        (work / "note.txt").write_text(PROMPT[1] + "\n")
        command = [word.replace("NOTE", str(work / "note.txt")) for word in TOOLS_RUN[tool]]
        proc = subprocess.run(["metis-env", "run", "--proxy", "1", "--", *command], cwd=work, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
        seen = json.loads(metis("proxy", "status", "--json", env=env).stdout)["metis_compat"]
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    contents = [m.get("content") for r in server.requests if r.path == "/v1/chat/completions" for m in r.body["messages"]]
    if setting == "true":
        assert (proc.returncode, REPLY in output) == (0, True), output[-2000:]
        assert (seen["enabled"], seen["content_flattened"] > 0) == (True, True)
        assert [c for c in contents if not isinstance(c, str)] == []
    else:  # the control: Metis refuses what the tool sends
        assert (REPLY in output, seen) == (False, {**NONE, "enabled": False}), output[-2000:]
        assert any(isinstance(c, list) for c in contents)
