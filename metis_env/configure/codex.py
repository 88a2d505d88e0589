"""codex (openai/codex): a model provider ``metis-<id>`` in ``$CODEX_HOME/config.toml`` (default
``~/.codex/config.toml``).

codex gets the key by running ``auth.command`` (``metis-env get key ID``): no key is written. But
codex speaks only OpenAI's Responses API (``wire_api = "responses"``, ``POST {base_url}/responses``),
and Metis serves Chat Completions only: codex needs a server that translates Responses to Chat
Completions in front of Metis (for example LiteLLM's proxy) before it works against Metis. codex's
own default provider is left alone: ``codex -c model_provider=metis-ID -m MODEL`` picks ours (codex
0.169 keeps profiles in files of their own and refuses ``[profiles.*]`` tables in config.toml).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from . import formats
from .core import Entry, home, key_command

NAME = "codex"


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("CODEX_HOME")
    directory = os.path.abspath(explicit) if explicit else os.path.join(home(environ), ".codex")
    return os.path.join(directory, "config.toml")


def tables(entry: Entry) -> list:
    command = key_command(entry.endpoint)
    return [
        (("model_providers", entry.provider), {"name": entry.label, "base_url": entry.base_url, "wire_api": "responses"}),
        (("model_providers", entry.provider, "auth"), {"command": command[0], "args": command[1:]}),
    ]


def _owned(entry: Entry) -> list:
    return [("model_providers", entry.provider)]


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.toml_replace_tables(text, _owned(entry), tables(entry), NAME, path)


def section(text: str | None, entry: Entry, path: str):
    found = {".".join(keys): formats.toml_get(text, keys, NAME, path) for keys in _owned(entry)}
    return found if any(v is not None for v in found.values()) else None


def usage(entry: Entry) -> str:
    return f"codex -c model_provider={entry.provider} -m {shlex.quote(entry.model)} exec 'hi'   (needs a Responses API in front of Metis)"
