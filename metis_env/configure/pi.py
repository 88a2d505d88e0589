"""pi (badlogic/pi-mono's coding agent): a provider ``metis-<id>`` in pi's ``models.json``.

pi reads ``$PI_CODING_AGENT_DIR/models.json`` (``~`` expanded), default ``~/.pi/agent/models.json``,
strict JSON. Its ``apiKey`` may be ``"!command"``, run at request time, so the config names
``metis-env get key ID`` and pi asks metis-env for the current key itself: no key is written, and
no ``metis-env run`` is needed.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from . import formats
from .core import Entry, expand_tilde, home, key_command

NAME = "pi"


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("PI_CODING_AGENT_DIR")
    directory = expand_tilde(explicit, environ) if explicit else os.path.join(home(environ), ".pi", "agent")
    return os.path.join(os.path.abspath(directory), "models.json")


def provider_config(entry: Entry) -> dict:
    return {
        "baseUrl": entry.base_url,
        "api": "openai-completions",
        "apiKey": "!" + " ".join(shlex.quote(word) for word in key_command(entry.endpoint)),
        # SambaNova's OpenAI-compatible API takes the system prompt as "system", not "developer"
        "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
        "models": [{"id": model, "name": model} for model in entry.models],
    }


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.json_set(text, ["providers", entry.provider], provider_config(entry), NAME, path, comments=False, new_doc={})


def section(text: str | None, entry: Entry, path: str):
    return formats.json_get(text, ["providers", entry.provider], NAME, path, comments=False)


def usage(entry: Entry) -> str:
    return f"pi --provider {entry.provider} --model {shlex.quote(entry.model)} -p 'hi'"
