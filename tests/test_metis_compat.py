"""The broker adapts chat-completions requests to what Metis takes (issue 16 item 6).

First the transform itself, as a table of whole bodies; then for real: opencode and pi, as configure
sets them up, through `metis-env run --proxy` against the endpoint-file stub answering 422 as Metis
does to list-of-parts content. They get their reply with the adaptation, and Metis's 422 with the
setting off (the control that shows the stand-in refuses what the tools send).
"""

from __future__ import annotations

import json
import subprocess

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
TOOLS_RUN = {
    "opencode": [OPENCODE, "run", "-m", "metis-1/Llama-3.3-70B-Instruct", "hi"],
    "pi": [PI, "--provider", "metis-1", "--model", "DeepSeek-R1", "-p", "hi"],
}


@pytest.mark.parametrize("setting", ["true", "false"])
@pytest.mark.parametrize("tool", TOOLS_RUN)
def test_the_real_tool_works_on_metis_through_the_broker_only_with_the_adaptation(tool, setting, file_store, tmp_path, env_setup):
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    with OpenAIStubServer(KEY, MODELS, reply=REPLY, metis_strict=True) as base_url:
        endpoint_file = tmp_path / "metis_endpoint_1.txt"
        endpoint_file.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
        assert metis("import", str(endpoint_file)).returncode == 0
        assert metis("configure", tool, "1").returncode == 0
        work = tmp_path / "work"
        work.mkdir()
        env = {**tool_env(tmp_path), "METIS_ENV_METIS_COMPAT": setting}
        proc = subprocess.run(["metis-env", "run", "--proxy", "1", "--", *TOOLS_RUN[tool]], cwd=work, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
        seen = json.loads(metis("proxy", "status", "--json", env=env).stdout)["metis_compat"]
    output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    if setting == "true":
        assert (proc.returncode, REPLY in output) == (0, True), output[-2000:]
        assert (seen["enabled"], seen["content_flattened"] > 0) == (True, True)
    else:  # the control: what the tool sends is refused by Metis
        assert (REPLY in output, "Input should be a valid string" in output or proc.returncode != 0) == (False, True), output[-2000:]
        assert seen == {**NONE, "enabled": False}
