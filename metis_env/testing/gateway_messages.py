"""Anthropic's Messages API as the ALCF gateway serves it: ``POST {cluster}/{framework}/v1/messages``.

Read from argonne-lcf/FIRST at 329c0cd: ``views/anthropic.py`` (the one route; there is no
``/v1/messages/count_tokens``, which gets Django's 404 page like any other unknown path),
``schemas/anthropic_messages.py`` (the request schema: extra fields allowed, ``model`` (at least one
character), ``messages`` (``role`` "user" or "assistant", ``content`` a string or a list of blocks) and
``max_tokens`` (at least 1) required; a body that breaks it is django-ninja's 422 ``{"detail": [...]}``)
and ``services.submit_openai_inference_request`` (cluster, maintenance, framework, route, endpoint as
for chat; a streamed Messages request to an endpoint that is not DirectAPI-backed, i.e. one that runs
through Globus Compute as Sophia's vLLM does, is 400 ``unsupported_endpoint``). Authentication is the
gateway's: ``Authorization: Bearer <token>`` and nothing else; an ``x-api-key`` header (which Anthropic's
clients send) is ignored. The answer is the backend's, passed through: a ``message`` object, or the
server-sent events ``message_start``, ``content_block_start``, ``content_block_delta`` (one per word),
``content_block_stop``, ``message_delta``, ``message_stop``.

Each Messages request that got past authentication is recorded as a ``MessagesRequest`` in
``standin.gateway.messages`` (hashes of the credentials, never the credentials).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

ROUTE = "messages"
GLOBUS_COMPUTE_CLUSTERS = frozenset({"sophia"})
"""Clusters whose models FIRST reaches through Globus Compute (GlobusComputeEndpoint), not DirectAPI."""
STREAMING_REFUSED = ("Streaming is not supported for the Anthropic Messages API on this endpoint. "
                     "Re-issue this request with 'stream': false.")
JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class MessagesRequest:
    """One Messages request the stand-in answered after authentication.

    ``asked`` is the model the body named, ``model`` the one it reached (None: no such endpoint);
    ``bearer_sha256`` is the SHA-256 of the ``Authorization: Bearer`` token, ``api_key_sha256`` of the
    ``x-api-key`` header (None without one); ``status`` is the answer's status.
    """

    cluster: str
    asked: str | None
    model: str | None
    stream: bool
    max_tokens: Any
    bearer_sha256: str
    api_key_sha256: str | None
    status: int


def fingerprint(secret: str) -> str:
    """The SHA-256 (hex) a ``MessagesRequest`` keeps of a credential: a test compares, nobody reads."""
    return hashlib.sha256(secret.encode()).hexdigest()


def record_for(cluster: str, headers: Any, body: dict[str, Any], model: str | None, status: int) -> MessagesRequest:
    bearer = (headers.get("Authorization") or "").partition(" ")[2].strip()
    api_key = headers.get("x-api-key")
    asked = body.get("model")
    return MessagesRequest(
        cluster=cluster, asked=asked if isinstance(asked, str) else None, model=model, stream=body.get("stream") is True,
        max_tokens=body.get("max_tokens"), bearer_sha256=fingerprint(bearer),
        api_key_sha256=None if api_key is None else fingerprint(api_key), status=status,
    )


def _error(field: tuple[Any, ...], kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", "payload", *field], "msg": message}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validation_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What pydantic says of ``body`` against FIRST's AnthropicMessagesPydantic (the fields it names)."""
    errors = []
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            errors.append(_error((name,), "missing", "Field required"))
    model = body.get("model")
    if "model" in body and not isinstance(model, str):
        errors.append(_error(("model",), "string_type", "Input should be a valid string"))
    elif model == "":
        errors.append(_error(("model",), "string_too_short", "String should have at least 1 character"))
    messages = body.get("messages")
    if "messages" in body and not isinstance(messages, list):
        errors.append(_error(("messages",), "list_type", "Input should be a valid list"))
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            errors.append(_error(("messages", i), "model_type",
                                 "Input should be a valid dictionary or instance of AnthropicMessage"))
            continue
        if "role" not in message:
            errors.append(_error(("messages", i, "role"), "missing", "Field required"))
        elif message["role"] not in ("user", "assistant"):
            errors.append(_error(("messages", i, "role"), "literal_error", "Input should be 'user' or 'assistant'"))
        if "content" not in message:
            errors.append(_error(("messages", i, "content"), "missing", "Field required"))
        elif not isinstance(message["content"], str) and not (
                isinstance(message["content"], list) and all(isinstance(block, dict) for block in message["content"])):
            errors.append(_error(("messages", i, "content", "str"), "string_type", "Input should be a valid string"))
    max_tokens = body.get("max_tokens")
    if "max_tokens" in body and not _is_int(max_tokens):
        errors.append(_error(("max_tokens",), "int_type", "Input should be a valid integer"))
    elif _is_int(max_tokens) and max_tokens < 1:
        errors.append(_error(("max_tokens",), "greater_than_equal", "Input should be greater than or equal to 1"))
    if body.get("openai_endpoint", ROUTE) != ROUTE:
        errors.append(_error(("openai_endpoint",), "literal_error", "Input should be 'messages'"))
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        errors.append(_error(("stream",), "bool_type", "Input should be a valid boolean"))
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1), ("top_k", 0, None)):
        value = body.get(name)
        if value is None:
            continue
        if not (_is_int(value) if name == "top_k" else _is_number(value)):
            errors.append(_error((name,), "int_type" if name == "top_k" else "float_type",
                                 "Input should be a valid integer" if name == "top_k" else "Input should be a valid number"))
        elif value < low:
            errors.append(_error((name,), "greater_than_equal", f"Input should be greater than or equal to {low}"))
        elif high is not None and value > high:
            errors.append(_error((name,), "less_than_equal", f"Input should be less than or equal to {high}"))
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not (
            isinstance(system, list) and all(isinstance(block, dict) for block in system)):
        errors.append(_error(("system", "str"), "string_type", "Input should be a valid string"))
    return errors


def input_tokens(body: dict[str, Any]) -> int:
    """A word count of the text the request carries (the stand-in's tokenizer)."""
    texts = [body.get("system")] + [m.get("content") for m in body.get("messages") or []]
    words = 0
    for text in texts:
        blocks = text if isinstance(text, list) else [{"text": text}]
        words += sum(len(str(b.get("text") or "").split()) for b in blocks if isinstance(b, dict))
    return max(1, words)


def reply_and_stop(reply: str, max_tokens: int) -> tuple[str, str]:
    """The reply cut at ``max_tokens`` words, and Anthropic's ``stop_reason`` for it."""
    words = reply.split(" ")
    return (reply, "end_turn") if len(words) <= max_tokens else (" ".join(words[:max_tokens]), "max_tokens")


def send(h: Any, body: dict[str, Any], model: str, reply: str) -> int:
    """Answer a valid request for ``model`` with ``reply`` (cut at ``max_tokens``), plain or streamed."""
    text, stop = reply_and_stop(reply, body["max_tokens"])
    message_id, used_in, used_out = f"msg_{uuid.uuid4().hex[:24]}", input_tokens(body), len(text.split())
    if not body.get("stream"):
        return h.send_bytes(200, json.dumps({
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": used_in, "output_tokens": used_out},
        }).encode(), JSON_TYPE)

    def event(name: str, data: dict[str, Any]) -> None:
        chunk = f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.flush()

    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Cache-Control", "no-cache")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    event("message_start", {"message": {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": used_in, "output_tokens": 1},
    }})
    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    for i, word in enumerate(text.split(" ")):
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word if i == 0 else " " + word}})
    event("content_block_stop", {"index": 0})
    event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": used_out}})
    event("message_stop", {})
    h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()
    return 200
