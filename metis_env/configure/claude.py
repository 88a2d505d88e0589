"""Claude Code: ``apiKeyHelper`` and ``env.ANTHROPIC_BASE_URL`` in its user settings.

Claude Code reads ``$CLAUDE_CONFIG_DIR/settings.json``, default ``~/.claude/settings.json`` (JSON). Its
``apiKeyHelper`` is a shell command whose output is the key, run again after a 401 and every
``CLAUDE_CODE_API_KEY_HELPER_TTL_MS``: configure names ``metis-env get key ID``, so no key is
written. Claude Code speaks Anthropic's Messages API (``POST {ANTHROPIC_BASE_URL}/v1/messages``), so
only a gateway cluster whose routes (``list-endpoints``) include ``/v1/messages`` can serve it; the
cluster's base URL without its ``/v1`` is ``ANTHROPIC_BASE_URL``, the chosen model ``ANTHROPIC_MODEL``.
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
    if entry.source == "gateway" and entry.serves(ROUTE):
        return
    if entry.source != "gateway":
        why = f"endpoint {entry.endpoint} is Metis, which serves chat completions only"
    elif entry.routes is None:
        why = f"the gateway did not say which routes cluster {entry.endpoint} serves (run metis-env sync --gateway)"
    else:
        why = f"gateway cluster {entry.endpoint} has no Anthropic Messages route (/v1/messages)"
    working = [c.endpoint for c in candidates if c.source == "gateway" and c.serves(ROUTE)]
    instead = (f"use a cluster that has one: metis-env configure claude {working[0]}" if working else
               "use a gateway cluster with a /v1/messages route (metis-env login lists the gateway's clusters)")
    raise ToolConfigError(f"claude: {why}, and Claude Code speaks only the Messages API; {instead}; nothing was changed")


def settings_for(entry: Entry) -> dict:
    base = entry.base_url[: -len("/v1")] if entry.base_url.endswith("/v1") else entry.base_url
    return {
        "apiKeyHelper": " ".join(shlex.quote(word) for word in key_command(entry.endpoint)),
        "env": {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_MODEL": entry.model, "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": HELPER_TTL_MS},
    }


def apply(text: str | None, entry: Entry, path: str) -> str:
    ours = settings_for(entry)
    text = formats.json_set(text, ["apiKeyHelper"], ours["apiKeyHelper"], NAME, path, comments=False, new_doc={})
    for name, value in ours["env"].items():
        text = formats.json_set(text, ["env", name], value, NAME, path, comments=False, new_doc={})
    return text


def section(text: str | None, entry: Entry, path: str):
    helper = formats.json_get(text, ["apiKeyHelper"], NAME, path, comments=False)
    env = formats.json_get(text, ["env"], NAME, path, comments=False)
    env = {k: v for k, v in env.items() if k in settings_for(entry)["env"]} if isinstance(env, dict) else {}
    if helper is None and not env:
        return None
    return {"apiKeyHelper": helper, "env": env}


def usage(entry: Entry) -> str:
    return "claude -p 'hi'"
