"""The stand-in's Anthropic Messages route (metis_env/testing/gateway_messages.py), as FIRST serves it:
the answer plain and streamed (also read by Anthropic's own SDK), its schema's 422s, what it
refuses and what it records. The real Claude Code reads it in tests/test_configure_tools.py."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from metis_env.testing.gateway_messages import STREAMING_REFUSED, MessagesRequest, fingerprint
from metis_env.testing.gateway_standin import ALL_CLUSTERS, MISSING_HEADER, NOT_FOUND_PAGE, REPLY
from metis_env.testing.globus_standin import GlobusStandIn
from tests._globus import gateway_request
from tests._tls import make_test_ca

MINERVA = "minerva/api/v1/messages"
ASK = {"model": "OPENAI/gpt-oss-120b", "max_tokens": 64, "messages": [{"role": "user", "content": "say hi"}]}
JSON = "application/json; charset=utf-8"


@pytest.fixture
def gateway(tmp_path):
    ca, cert, key = make_test_ca(tmp_path)
    with GlobusStandIn(cert_file=str(cert), key_file=str(key), ca_file=str(ca), clusters=ALL_CLUSTERS) as standin:
        yield standin, standin.issue_tokens()["access_token"]


def without_id(answer: dict) -> dict:
    assert answer["id"].startswith("msg_")
    return {k: v for k, v in answer.items() if k != "id"}


def streamed(standin: GlobusStandIn, token: str, path: str, body: dict) -> tuple[int, str, list]:
    """(status, content type, [(event, data)]) of a streamed request, read as a client reads SSE."""
    request = urllib.request.Request(standin.gateway_url + path, data=json.dumps({**body, "stream": True}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=standin.ca_file), timeout=10) as response:
        status, ctype, text = response.status, response.headers["Content-Type"], response.read().decode()
    events = []
    for block in text.split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return status, ctype, events


def test_a_message_is_answered_by_the_model_the_name_reaches(gateway):
    standin, token = gateway
    status, ctype, answer = gateway_request(standin, "POST", MINERVA, token, ASK)
    assert (status, ctype, without_id(answer)) == (200, JSON, {
        "type": "message", "role": "assistant", "model": "openai/gpt-oss-120b",
        "content": [{"type": "text", "text": REPLY}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 2, "output_tokens": 6}})
    status, _, answer = gateway_request(standin, "POST", MINERVA, token, {**ASK, "max_tokens": 2})
    assert (status, answer["content"], answer["stop_reason"]) == (200, [{"type": "text", "text": "Hello from"}], "max_tokens")


def test_a_streamed_message_is_anthropics_event_sequence(gateway):
    standin, token = gateway
    status, ctype, events = streamed(standin, token, MINERVA, ASK)
    assert (status, ctype) == (200, "text/event-stream")
    assert [name for name, _ in events] == (["message_start", "content_block_start"] + ["content_block_delta"] * 6
                                            + ["content_block_stop", "message_delta", "message_stop"])
    assert all(data["type"] == name for name, data in events)
    assert "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta") == REPLY
    assert (events[0][1]["message"]["model"], events[-2][1]["delta"], events[-2][1]["usage"]) == (
        "openai/gpt-oss-120b", {"stop_reason": "end_turn", "stop_sequence": None}, {"output_tokens": 6})


def detail(*entries):
    return {"detail": [{"type": t, "loc": ["body", "payload", *loc], "msg": m} for t, loc, m in entries]}


BAD_BODIES = {
    "no max_tokens": ({k: v for k, v in ASK.items() if k != "max_tokens"}, detail(("missing", ["max_tokens"], "Field required"))),
    "an empty model": ({**ASK, "model": ""}, detail(("string_too_short", ["model"], "String should have at least 1 character"))),
    # what Claude Code 2.1.332 sends first (a mid-conversation system message): FIRST's schema refuses it
    "a system role": ({**ASK, "messages": [*ASK["messages"], {"role": "system", "content": "agents"}]},
                      detail(("literal_error", ["messages", 1, "role"], "Input should be 'user' or 'assistant'"))),
    "max_tokens 0": ({**ASK, "max_tokens": 0}, detail(("greater_than_equal", ["max_tokens"], "Input should be greater than or equal to 1"))),
    "temperature 2": ({**ASK, "temperature": 2}, detail(("less_than_equal", ["temperature"], "Input should be less than or equal to 1"))),
    "another route's name": ({**ASK, "openai_endpoint": "chat/completions"}, detail(("literal_error", ["openai_endpoint"], "Input should be 'messages'"))),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_a_body_its_schema_refuses_is_django_ninjas_422(case, gateway):
    standin, token = gateway
    body, expected = BAD_BODIES[case]
    assert gateway_request(standin, "POST", MINERVA, token, body) == (422, JSON, expected)


def test_extra_fields_pass_as_the_schema_allows_them(gateway):
    standin, token = gateway
    body = {**ASK, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}, "metadata": {"user_id": "x"},
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}], "tools": []}
    assert gateway_request(standin, "POST", MINERVA, token, body)[0] == 200


def test_what_the_gateway_refuses_on_the_messages_route(gateway):
    standin, token = gateway
    # Sophia's vLLM runs through Globus Compute: FIRST streams Messages only from DirectAPI endpoints
    assert gateway_request(standin, "POST", "sophia/vllm/v1/messages", token, {**ASK, "stream": True}) == (
        400, JSON, {"error": {"code": "unsupported_endpoint", "message": STREAMING_REFUSED, "info": {}}})
    assert gateway_request(standin, "POST", "sophia/vllm/v1/messages", token, ASK)[0] == 200
    assert gateway_request(standin, "POST", "metis/api/v1/messages", token, {**ASK, "model": "gpt-oss-120b"}) == (
        400, JSON, {"error": {"code": "unsupported_endpoint", "message": "'messages' not available on cluster 'metis'", "info": {}}})
    assert gateway_request(standin, "POST", MINERVA, token, {**ASK, "model": "claude-haiku-4-5"}) == (
        404, JSON, {"error": {"code": "endpoint_not_found", "message": "The requested endpoint 'minerva-api-claude-haiku-4-5' does not exist.", "info": {}}})
    # FIRST has no count_tokens route: Django's 404 page, as for any other path
    assert gateway_request(standin, "POST", MINERVA + "/count_tokens", token, ASK) == (404, "text/html; charset=utf-8", NOT_FOUND_PAGE)
    # Anthropic's own header is not the gateway's: without Authorization: Bearer, the missing-header 401
    assert gateway_request(standin, "POST", MINERVA, None, ASK, headers={"x-api-key": token}) == (401, JSON, {"detail": MISSING_HEADER})


def test_each_request_past_authentication_is_recorded_with_hashes_of_its_credentials(gateway):
    standin, token = gateway
    gateway_request(standin, "POST", MINERVA, token, ASK, headers={"x-api-key": token})
    gateway_request(standin, "POST", MINERVA, token, {**ASK, "max_tokens": 0})
    gateway_request(standin, "POST", MINERVA, "not-a-token", ASK)
    assert standin.gateway.messages == [
        MessagesRequest("minerva", "OPENAI/gpt-oss-120b", "openai/gpt-oss-120b", False, 64, fingerprint(token), fingerprint(token), 200),
        MessagesRequest("minerva", "OPENAI/gpt-oss-120b", "openai/gpt-oss-120b", False, 0, fingerprint(token), None, 422),
    ]
    assert token not in repr(standin.gateway.messages)


ANTHROPIC_SDK = Path(__file__).resolve().parent.parent / ".ci-tools" / "npm" / "node_modules" / "@anthropic-ai" / "sdk"
SDK_CHILD = r"""
const Anthropic = require(process.env.SDK);
const client = new Anthropic({baseURL: process.env.BASE, authToken: process.env.TOKEN, apiKey: null, maxRetries: 0});
const ask = {model: "OPENAI/gpt-oss-120b", max_tokens: 64, messages: [{role: "user", content: "say hi"}]};
(async () => {
  const plain = await client.messages.create(ask);
  const stream = client.messages.stream(ask);
  const events = [];
  stream.on("streamEvent", (event) => events.push(event.type));
  const final = await stream.finalMessage();
  console.log(JSON.stringify({plain: [plain.model, plain.content[0].text, plain.stop_reason],
                              streamed: [final.model, final.content[0].text, final.stop_reason, final.usage.output_tokens], events}));
})().catch((error) => { console.error(String(error)); process.exit(1); });
"""


def test_the_real_anthropic_sdk_reads_both_answers(gateway, tmp_path):
    """Anthropic's own TypeScript SDK (pi's dependency in .ci-tools/npm) against the route, with the
    token as the Bearer: the plain message, and the streamed one assembled from its events."""
    standin, token = gateway
    if not (ANTHROPIC_SDK / "package.json").exists() or shutil.which("node") is None:
        pytest.skip("@anthropic-ai/sdk is not installed here (bash .ci/run installs pi, which brings it)")
    proc = subprocess.run(["node", "-e", SDK_CHILD], capture_output=True, timeout=120, env={
        "PATH": os.environ["PATH"], "SDK": str(ANTHROPIC_SDK), "BASE": standin.gateway_url + "minerva/api", "TOKEN": token,
        "NODE_EXTRA_CA_CERTS": standin.ca_file})
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == {
        "plain": ["openai/gpt-oss-120b", REPLY, "end_turn"], "streamed": ["openai/gpt-oss-120b", REPLY, "end_turn", 6],
        "events": ["message_start", "content_block_start"] + ["content_block_delta"] * 6 + ["content_block_stop", "message_delta", "message_stop"]}
    assert [(m.stream, m.bearer_sha256, m.api_key_sha256, m.status) for m in standin.gateway.messages] == [
        (False, fingerprint(token), None, 200), (True, fingerprint(token), None, 200)]
