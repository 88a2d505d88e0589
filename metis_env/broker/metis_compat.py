"""Chat-completions requests adapted to what Metis (SambaNova) takes, for the broker.

Metis answers 422 ("Input should be a valid string") to a message whose ``content`` is a list of
parts, which opencode, pi and openai-agents send; it knows no ``developer`` role; and it has no tool
calling (/work/shared/GATEWAY.md: SambaNova's Metis serves chat completions only). ``adapt`` makes a
request Metis can take, and says what it changed:

- ``content`` made only of text parts becomes one string (the texts joined by a newline, as vLLM does); a
  list with any other part (an image) is left as is, so that Metis's own error reaches the client;
- the ``developer`` role becomes ``system``;
- ``tools``, ``tool_choice`` and ``parallel_tool_calls`` are dropped.

Pure functions over parsed JSON; standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

CHANGES = ("content_flattened", "developer_role", "tools_dropped")
"""The names ``adapt`` counts changes under (each: messages or requests changed)."""

TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


def is_metis(stored) -> bool:
    """A stored endpoint served by Metis: every endpoint file, and the gateway's ``metis`` cluster."""
    if stored.source != "gateway":
        return True
    return stored.id.lower() == "metis" or "/metis/" in stored.base_url.lower()


def adapt(body: object) -> tuple[object, dict[str, int]]:
    """A chat-completions request body -> (the body Metis can take, {change: count}).

    A body that is not a JSON object comes back as it is, with no change counted; ``body`` itself is
    never modified."""
    changed = dict.fromkeys(CHANGES, 0)
    if not isinstance(body, dict):
        return body, changed
    new = dict(body)
    messages = body.get("messages")
    if isinstance(messages, list):
        new["messages"] = [_message(m, changed) for m in messages]
    dropped = [name for name in TOOL_FIELDS if name in new]
    for name in dropped:
        del new[name]
    changed["tools_dropped"] = 1 if dropped else 0
    return new, changed


def adapt_bytes(data: bytes) -> tuple[bytes, dict[str, int]]:
    """``adapt`` over the bytes of a request body; bytes that are not a JSON object pass unchanged."""
    try:
        body = json.loads(data)
    except ValueError:
        return data, dict.fromkeys(CHANGES, 0)
    new, changed = adapt(body)
    if not any(changed.values()):
        return data, changed
    return json.dumps(new, ensure_ascii=False).encode("utf-8"), changed


def _message(message: object, changed: dict[str, int]) -> object:
    if not isinstance(message, Mapping):
        return message
    new = dict(message)
    if new.get("role") == "developer":
        new["role"] = "system"
        changed["developer_role"] += 1
    content = new.get("content")
    if isinstance(content, list) and content and all(_is_text(part) for part in content):
        new["content"] = "\n".join(part["text"] for part in content)
        changed["content_flattened"] += 1
    return new


def _is_text(part: object) -> bool:
    return isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
