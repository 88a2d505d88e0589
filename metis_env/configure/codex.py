"""codex (openai/codex): a model provider ``metis-<id>`` in ``$CODEX_HOME/config.toml`` (default
``~/.codex/config.toml``).

codex gets the key by running ``auth.command`` (``metis-env get key ID``, codex's key command since its
pull request 16288; 0.169 has it), again every ``refresh_interval_ms`` and after a 401: no key is
written, and a Globus token metis-env refreshes reaches codex without a restart. codex speaks only
OpenAI's Responses API (``POST {base_url}/responses``), so configure refuses an endpoint that serves
chat completions only: Metis (the endpoint files' and the gateway's ``metis``) and any gateway cluster
whose routes (``list-endpoints``) lack ``/responses``, naming a stored cluster that serves it.
codex's own default provider is left alone: ``codex -c model_provider=metis-ID -m MODEL`` picks ours
(codex 0.169 keeps profiles in files of their own and refuses ``[profiles.*]`` tables in config.toml).
With ``--proxy`` the provider's ``base_url`` is this host's broker and ``auth`` runs ``metis-env get
key ID --proxy-port PORT`` (the broker's local key; the broker stays up while codex runs).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

from ..errors import ToolConfigError
from . import formats
from .core import Entry, home, key_command

NAME = "codex"
THROUGH_BROKER = True
ROUTE = "/responses"
REFRESH_INTERVAL_MS = 300_000
"""codex asks metis-env again after 5 minutes: a gateway token refreshed meanwhile is picked up."""
TIMEOUT_MS = 30_000
"""``metis-env get key`` may refresh a Globus token over the network first."""


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("CODEX_HOME")
    directory = os.path.abspath(explicit) if explicit else os.path.join(home(environ), ".codex")
    return os.path.join(directory, "config.toml")


def is_metis(entry: Entry) -> bool:
    return not entry.gateway or entry.endpoint == "metis"


def check(entry: Entry, candidates=()) -> None:
    """Refuse an endpoint without a Responses route, in one line naming one that has it."""
    if is_metis(entry):
        why = f"endpoint {entry.endpoint} is Metis, which serves chat completions only"
    elif entry.serves(ROUTE) is False:
        why = f"gateway cluster {entry.endpoint} serves chat completions only (its routes have no {ROUTE})"
    else:
        return
    working = [c.endpoint for c in candidates if not is_metis(c) and c.serves(ROUTE)]
    instead = (f"use a cluster that serves it: metis-env configure codex {working[0]}" if working else
               f"use a gateway cluster that serves {ROUTE} (metis-env login lists the gateway's clusters)")
    raise ToolConfigError(f"codex: {why}, and codex speaks only the Responses API; {instead}; nothing was changed")


def tables(entry: Entry) -> list:
    command = key_command(entry.endpoint, entry.base_url if entry.via_broker else None)
    return [
        (("model_providers", entry.provider), {"name": entry.label, "base_url": entry.base_url, "wire_api": "responses"}),
        (("model_providers", entry.provider, "auth"), {
            "command": command[0], "args": command[1:], "timeout_ms": TIMEOUT_MS, "refresh_interval_ms": REFRESH_INTERVAL_MS,
        }),
    ]


def _owned(entry: Entry) -> list:
    return [("model_providers", entry.provider)]


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.toml_replace_tables(text, _owned(entry), tables(entry), NAME, path)


def section(text: str | None, entry: Entry, path: str):
    found = {".".join(keys): formats.toml_get(text, keys, NAME, path) for keys in _owned(entry)}
    return found if any(v is not None for v in found.values()) else None


def usage(entry: Entry) -> str:
    return f"codex -c model_provider={entry.provider} -m {shlex.quote(entry.model)} exec 'hi'"
