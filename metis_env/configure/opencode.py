"""opencode (sst/opencode): a provider ``metis-<id>`` in opencode's global config.

opencode reads ``$OPENCODE_CONFIG`` (a file merged over the global config) if set, else the global
``$XDG_CONFIG_HOME/opencode/opencode.json`` (or ``opencode.jsonc``, JSONC with comments), default
``~/.config/opencode/``. It does not use ``OPENAI_*`` for a model that is not OpenAI's, so Metis is a
provider of its own through ``@ai-sdk/openai-compatible``; the key is ``{env:OPENAI_API_KEY}``,
which opencode substitutes from its environment, so that ``metis-env run N -- opencode`` gives it the
current key and no key is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import formats
from .core import Entry, home

NAME = "opencode"
SCHEMA = "https://opencode.ai/config.json"
KEY_REFERENCE = "{env:OPENAI_API_KEY}"


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("OPENCODE_CONFIG")
    if explicit:
        return os.path.abspath(explicit)
    xdg = environ.get("XDG_CONFIG_HOME")
    directory = os.path.join(xdg if xdg and os.path.isabs(xdg) else os.path.join(home(environ), ".config"), "opencode")
    for name in ("opencode.jsonc", "opencode.json"):
        if os.path.lexists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return os.path.join(directory, "opencode.json")


def provider_config(entry: Entry) -> dict:
    return {
        "npm": "@ai-sdk/openai-compatible",
        "name": entry.label,
        "options": {"baseURL": entry.base_url, "apiKey": KEY_REFERENCE},
        "models": {model: {"name": model} for model in entry.models},
    }


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.json_set(
        text, ["provider", entry.provider], provider_config(entry), NAME, path, comments=True, new_doc={"$schema": SCHEMA}
    )


def section(text: str | None, entry: Entry, path: str):
    return formats.json_get(text, ["provider", entry.provider], NAME, path, comments=True)


def usage(entry: Entry) -> str:
    return f"metis-env run {entry.endpoint} -- opencode run -m {entry.provider}/{entry.model} 'hi'"
