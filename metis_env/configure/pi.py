"""pi (badlogic/pi-mono's coding agent): a provider ``metis-<id>`` in pi's ``models.json``.

pi reads ``$PI_CODING_AGENT_DIR/models.json`` (``~`` expanded), default ``~/.pi/agent/models.json``,
strict JSON. Its ``apiKey`` may be ``"!command"``, run at request time, so the config names
``metis-env get key ID`` and pi asks metis-env for the current key itself: no key is written, and
no ``metis-env run`` is needed.

pi ignores ``OPENAI_BASE_URL``: with no provider named, plain ``pi -p ...`` picks its saved default
or else the first provider with a key, and ``OPENAI_API_KEY`` (set by ``metis-env export``) is a key
for OpenAI's own host. So configure also makes ours the default in pi's ``settings.json``
(``defaultProvider``/``defaultModel``, the rest of the file kept). Where the gateway said a model's
context window, tool calling or reasoning (``{cluster}/models``), the model entry carries them.

Through the broker (``configure pi ID --proxy``, the default for Metis): ``baseUrl`` is this host's
broker at its stable port and the key command ``metis-env get key ID --proxy-port PORT``, which pi
runs before every request (uncached): it starts the broker when none runs, so the same file works
after the broker went idle and exited.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from . import formats
from .core import Entry, expand_tilde, home, key_command

NAME = "pi"
THROUGH_BROKER = True


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("PI_CODING_AGENT_DIR")
    directory = expand_tilde(explicit, environ) if explicit else os.path.join(home(environ), ".pi", "agent")
    return os.path.join(os.path.abspath(directory), "models.json")


def settings_path(environ: Mapping[str, str]) -> str:
    return os.path.join(os.path.dirname(config_path(environ)), "settings.json")


def make_default(text: str | None, entry: Entry, path: str) -> str:
    text = formats.json_set(text, ["defaultProvider"], entry.provider, NAME, path, comments=False, new_doc={})
    return formats.json_set(text, ["defaultModel"], entry.model, NAME, path, comments=False, new_doc={})


def extra_edits(environ: Mapping[str, str], entry: Entry) -> list:
    """pi's settings.json: ours is the default provider and model."""
    return [(settings_path(environ), lambda text, path: make_default(text, entry, path))]


def refreshed_extras(models_path: str, entry: Entry) -> list:
    """After the endpoint's models changed: the default model again, while ours is still the default
    (a default model pi no longer knows would send plain ``pi`` to the first provider with a key)."""

    def edit(text, path):
        if formats.json_get(text, ["defaultProvider"], NAME, path, comments=False) != entry.provider:
            return text
        return make_default(text, entry, path)

    return [(os.path.join(os.path.dirname(models_path), "settings.json"), edit)]


def model_config(entry: Entry, model: str) -> dict:
    config = {"id": model, "name": model}
    window = entry.capability("context_window_tokens", model)
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        config["contextWindow"] = window
    reasoning = entry.capability("reasoning", model)
    if isinstance(reasoning, bool):
        config["reasoning"] = reasoning
    return config


def provider_config(entry: Entry) -> dict:
    return {
        "baseUrl": entry.base_url,
        "api": "openai-completions",
        "apiKey": "!" + " ".join(shlex.quote(word) for word in key_command(entry.endpoint, entry.base_url if entry.via_broker else None)),
        # SambaNova's OpenAI-compatible API takes the system prompt as "system", not "developer"
        "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
        "models": [model_config(entry, model) for model in entry.models],
    }


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.json_set(text, ["providers", entry.provider], provider_config(entry), NAME, path, comments=False, new_doc={})


def section(text: str | None, entry: Entry, path: str):
    return formats.json_get(text, ["providers", entry.provider], NAME, path, comments=False)


def usage(entry: Entry) -> str:
    return f"pi --provider {entry.provider} --model {shlex.quote(entry.model)} -p 'hi'"
