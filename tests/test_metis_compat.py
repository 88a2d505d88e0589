"""The broker adapts chat-completions requests to what Metis takes (issue 16 item 6).

First the transform itself, as a table of whole bodies; then for real: opencode and pi, exactly as
`metis-env configure TOOL 1` sets them up for a Metis endpoint (through this host's broker, no edit by
hand), run on their own against the endpoint-file stub answering 422 as Metis does to list-of-parts
content, with a prompt and a file (two text parts, which both send as a list). With no broker running
they start one; after it went idle and exited they start another; they get their reply with the
adaptation (counted in `proxy status`), and Metis's 422 with the setting off (the control that shows
the stand-in refuses what the tools send). No file the tool reads holds the key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
# what configure writes for endpoint 1 on a Metis endpoint: the broker's stable address, its key command
WRITTEN = {
    "opencode": (".config/opencode/opencode.json", lambda c: c["provider"]["metis-1"]["options"],
                 lambda url: {"baseURL": url}),
    "pi": (".pi/agent/models.json", lambda c: {k: c["providers"]["metis-1"][k] for k in ("baseUrl", "apiKey")},
           lambda url: {"baseUrl": url, "apiKey": f"!metis-env get key 1 --proxy-port {os.environ['METIS_ENV_PROXY_PORT']}"}),
}


def broker_pid() -> int | None:
    try:
        return json.loads((Path(os.environ["XDG_RUNTIME_DIR"]) / "metis-env" / "broker.json").read_text())["pid"]
    except (OSError, ValueError):
        return None


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_tool(tool: str, work: Path, env: dict) -> tuple[int, str]:
    command = [word.replace("NOTE", str(work / "note.txt")) for word in TOOLS_RUN[tool]]
    proc = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=240)
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def adapted(env: dict) -> dict:
    return json.loads(metis("proxy", "status", "--json", env=env).stdout)["metis_compat"]


@pytest.mark.parametrize("tool", TOOLS_RUN)
def test_the_real_tool_configured_for_metis_works_through_the_broker_it_starts(tool, file_store, tmp_path, env_setup):
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    server = OpenAIStubServer(KEY, MODELS, reply=REPLY, metis_strict=True)
    with server as base_url:
        endpoint_file = tmp_path / "metis_endpoint_1.txt"
        endpoint_file.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
        assert metis("import", str(endpoint_file)).returncode == 0
        configured = metis("configure", tool, "1")
        env = tool_env(tmp_path)
        work = tmp_path / "work"
        work.mkdir()
        (work / "note.txt").write_text(PROMPT[1] + "\n")
        url = f"http://127.0.0.1:{os.environ['METIS_ENV_PROXY_PORT']}/endpoint/1/v1"
        path, part, expected = WRITTEN[tool]
        written = (Path(os.environ["HOME"]) / path).read_text()

        no_broker_before = broker_pid()
        first = run_tool(tool, work, env)  # no broker runs: the tool's key command starts one
        first_counts = adapted(env)
        metis("proxy", "stop", env=env)
        # a broker that goes idle and exits on its own (the shell that started it is its only client)
        subprocess.run(["bash", "-c", f"{sys.executable} -m metis_env proxy start 1 --idle-exit 0.5 >/dev/null"],
                       env={**os.environ, **env}, timeout=60, check=True)
        idle = broker_pid()
        wait_for(lambda: gone(idle))
        second = run_tool(tool, work, env)  # the same config, again: a new broker
        second_counts = adapted(env)
    assert (configured.returncode, part(json.loads(written)), KEY in written) == (0, expected(url), False), configured.stderr
    assert b"goes through this host's broker" in configured.stderr
    assert (no_broker_before, first[0], REPLY in first[1]) == (None, 0, True), first[1][-2000:]
    assert (second[0], REPLY in second[1], broker_pid() != idle) == (0, True, True), second[1][-2000:]
    for counts in (first_counts, second_counts):
        assert (counts["enabled"], counts["content_flattened"] > 0) == (True, True)
    contents = [m.get("content") for r in server.requests if r.path == "/v1/chat/completions" for m in r.body["messages"]]
    assert [c for c in contents if not isinstance(c, str)] == []
    assert [r.path for r in server.requests if not r.authorized] == []
    home_files = [p for p in Path(os.environ["HOME"]).rglob("*") if p.is_file()]
    assert [str(p) for p in home_files if KEY.encode() in p.read_bytes()] == []


@pytest.mark.parametrize("tool", TOOLS_RUN)
def test_the_control_metis_refuses_what_the_tool_sends_with_the_adaptation_off(tool, file_store, tmp_path, env_setup):
    """The broker started with metis_compat off passes the tool's request as it is: Metis's 422."""
    if tool_path(tool) is None:
        pytest.skip(f"{tool} is not installed here (bash .ci/run installs it)")
    server = OpenAIStubServer(KEY, MODELS, reply=REPLY, metis_strict=True)
    with server as base_url:
        endpoint_file = tmp_path / "metis_endpoint_1.txt"
        endpoint_file.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS={','.join(MODELS)}\n")
        assert metis("import", str(endpoint_file)).returncode == 0
        assert metis("configure", tool, "1").returncode == 0
        env = {**tool_env(tmp_path), "METIS_ENV_METIS_COMPAT": "false"}
        work = tmp_path / "work"
        work.mkdir()
        (work / "note.txt").write_text(PROMPT[1] + "\n")
        _code, output = run_tool(tool, work, env)
        seen = adapted(env)
    contents = [m.get("content") for r in server.requests if r.path == "/v1/chat/completions" for m in r.body["messages"]]
    assert (REPLY in output, seen) == (False, {**NONE, "enabled": False}), output[-2000:]
    assert any(isinstance(c, list) for c in contents)
