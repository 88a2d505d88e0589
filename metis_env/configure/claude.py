"""Claude Code: ``apiKeyHelper`` and ``env.ANTHROPIC_BASE_URL`` in its user settings.

Claude Code reads ``$CLAUDE_CONFIG_DIR/settings.json``, default ``~/.claude/settings.json`` (JSON). Its
``apiKeyHelper`` is a shell command whose output is the key, run again after a 401 and every
``CLAUDE_CODE_API_KEY_HELPER_TTL_MS``: configure names ``metis-env get key ID``, so no key is
written. Claude Code speaks Anthropic's Messages API (``POST {ANTHROPIC_BASE_URL}/v1/messages``), so
only a gateway cluster whose routes (``list-endpoints``) include ``/v1/messages`` can serve it; the
cluster's base URL without its ``/v1`` is ``ANTHROPIC_BASE_URL``, the chosen model ``ANTHROPIC_MODEL``
and also the model of Claude Code's ``opus``/``sonnet``/``haiku`` aliases (its background requests ask
for the ``haiku`` one), as ALCF's ``alcf-ai agent configure claude`` does; the context window the
gateway gives for the model is ``CLAUDE_CODE_MAX_CONTEXT_TOKENS`` (Claude Code assumes 1M tokens for a
model it does not know). ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_AUTH_TOKEN`` are set empty: either one in
the user's environment outranks ``apiKeyHelper`` and Claude Code 2.1.332 sends it to the gateway
(``x-api-key``, or ``Authorization: Bearer``), an Anthropic key where it does not belong.
The file holds one base URL, so one endpoint at a time; the user's other settings are kept.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from ..errors import ToolConfigError
from . import formats
from .core import Entry, home, key_command

NAME = "claude"
ROUTE = "/messages"
HELPER_TTL_MS = "300000"
"""Claude Code asks metis-env again after 5 minutes: a gateway token refreshed meanwhile is picked up."""


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("CLAUDE_CONFIG_DIR")
    directory = os.path.abspath(explicit) if explicit else os.path.join(home(environ), ".claude")
    return os.path.join(directory, "settings.json")


def check(entry: Entry, candidates=()) -> None:
    """Refuse an endpoint without an Anthropic Messages route, in one line naming one that has it."""
    if entry.gateway and entry.serves(ROUTE):
        return
    if not entry.gateway:
        why = f"endpoint {entry.endpoint} is Metis, which serves chat completions only"
    elif entry.routes is None:
        why = f"the gateway did not say which routes cluster {entry.endpoint} serves (run metis-env sync --gateway)"
    else:
        why = f"gateway cluster {entry.endpoint} has no Anthropic Messages route (/v1/messages)"
    working = [c.endpoint for c in candidates if c.gateway and c.serves(ROUTE)]
    instead = (f"use a cluster that has one: metis-env configure claude {working[0]}" if working else
               "use a gateway cluster with a /v1/messages route (metis-env login lists the gateway's clusters)")
    raise ToolConfigError(f"claude: {why}, and Claude Code speaks only the Messages API; {instead}; nothing was changed")


ALIASES = ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL")
"""The models behind Claude Code's aliases: each the chosen model, so that none names a Claude model the gateway does not serve."""
UNSET = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
"""Emptied in the settings (which outrank the environment): only apiKeyHelper's key reaches the gateway."""


def settings_for(entry: Entry) -> dict:
    base = entry.base_url[: -len("/v1")] if entry.base_url.endswith("/v1") else entry.base_url
    env = {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_MODEL": entry.model, **{name: entry.model for name in ALIASES},
           **{name: "" for name in UNSET}, "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": HELPER_TTL_MS}
    window = entry.capability("context_window_tokens")
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] = str(window)
    return {"apiKeyHelper": " ".join(shlex.quote(word) for word in key_command(entry.endpoint)), "env": env}


def framework(entry: Entry) -> str | None:
    """The framework in a gateway cluster's base URL (``.../{cluster}/{framework}/v1``), or None."""
    parts = entry.base_url.rstrip("/").split("/")
    return parts[-2] if entry.gateway and len(parts) >= 4 and parts[-1] == "v1" and parts[-3] == entry.endpoint else None


def notes(entry: Entry) -> list[str]:
    """FIRST streams Messages only from the backends it calls itself (DirectAPI, framework ``api``); a
    Globus Compute one (Sophia's vLLM) answers a streamed request 400, and Claude Code streams them all."""
    found = framework(entry)
    if found in (None, "api"):
        return []
    return [f"Claude Code streams every request, and the gateway streams Anthropic Messages only from the backends it "
            f"calls directly (framework api): if claude answers \"Streaming is not supported for the Anthropic Messages "
            f"API on this endpoint\", {entry.endpoint}'s {found} is not one; configure a cluster of framework api"]


def apply(text: str | None, entry: Entry, path: str):
    ours = settings_for(entry)
    text = formats.json_set(text, ["apiKeyHelper"], ours["apiKeyHelper"], NAME, path, comments=False, new_doc={})
    for name, value in ours["env"].items():
        text = formats.json_set(text, ["env", name], value, NAME, path, comments=False, new_doc={})
    return text, notes(entry)


def section(text: str | None, entry: Entry, path: str):
    helper = formats.json_get(text, ["apiKeyHelper"], NAME, path, comments=False)
    env = formats.json_get(text, ["env"], NAME, path, comments=False)
    env = {k: v for k, v in env.items() if k in settings_for(entry)["env"]} if isinstance(env, dict) else {}
    if helper is None and not env:
        return None
    return {"apiKeyHelper": helper, "env": env}


def usage(entry: Entry) -> str:
    return "claude -p 'hi'"
