"""opencode (sst/opencode): a provider ``metis-<id>`` in opencode's global config.

opencode reads ``$OPENCODE_CONFIG`` (a file merged over the global config) if set, else the global
``$XDG_CONFIG_HOME/opencode/opencode.json`` (or ``opencode.jsonc``, JSONC with comments), default
``~/.config/opencode/``. It does not use ``OPENAI_*`` for a model that is not OpenAI's, so Metis is a
provider of its own through ``@ai-sdk/openai-compatible``. opencode cannot run a command for a key,
but its plugins can: configure also writes a small plugin (``plugins/metis-env.js`` in the global
config dir, loaded by opencode at start) whose ``chat.headers`` hook asks ``metis-env get key ID``
for each request to a ``metis-*`` provider. No key is written; the provider's ``apiKey`` is
``{env:OPENAI_API_KEY}`` as well, which ``metis-env run`` sets, should the plugin be removed.

Through the broker (``configure opencode ID --proxy``, the default for Metis, whose 422 answers to
opencode's requests the broker prevents): ``baseURL`` is this host's broker at its stable port, no
``apiKey``, and the plugin asks ``metis-env get key ID --proxy-port PORT`` (the broker's local key,
given only when the broker listens at the baseURL's port; it starts the broker when none runs).

opencode substitutes ``{env:VAR}``, ``{file:PATH}``, ``{json:PATH#/ptr}`` and ``{toml:PATH#/ptr}`` in
the text of its config before it parses the JSON, wherever they stand (keys, model names, URLs). A
base URL or model name from an endpoint file or the gateway is not ours to trust, so every ``{`` in
the strings metis-env writes (but its own ``{env:OPENAI_API_KEY}``) is written ``\u007b``: the same
string to a JSON parser, no token to opencode's substitution.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping

from . import formats
from .core import Entry, home

NAME = "opencode"
THROUGH_BROKER = True
SCHEMA = "https://opencode.ai/config.json"
KEY_REFERENCE = "{env:OPENAI_API_KEY}"


PLUGIN = """\
// Written by metis-env configure (edits here are replaced): opencode's metis-* providers get the
// current key from `metis-env get key ID` for each request, so that no key is kept on disk. A
// provider whose baseURL is this host's broker (configure --proxy) gets the broker's local key from
// `metis-env get key ID --proxy-port PORT`, which starts the broker when none runs.
import { execFileSync } from "node:child_process"

const BROKER = /^http:\\/\\/127\\.0\\.0\\.1:([0-9]+)\\/endpoint\\//

// The broker is on loopback: never through the user's HTTP proxy (ALCF's no_proxy lacks 127.0.0.1)
if (process.env.http_proxy || process.env.HTTP_PROXY || process.env.https_proxy || process.env.HTTPS_PROXY) {
  for (const name of ["NO_PROXY", "no_proxy"]) {
    const entries = (process.env[name] ?? "").split(",").map((entry) => entry.trim()).filter(Boolean)
    if (!entries.includes("127.0.0.1")) process.env[name] = [...entries, "127.0.0.1"].join(",")
  }
}

export const MetisEnvKeys = async () => ({
  "chat.headers": async (input, output) => {
    const id = input?.model?.providerID ?? input?.provider?.info?.id
    if (typeof id !== "string" || !id.startsWith("metis-")) return
    const base = input?.provider?.options?.baseURL ?? input?.provider?.info?.options?.baseURL ?? ""
    const args = ["get", "key", id.slice("metis-".length)]
    const broker = BROKER.exec(String(base))
    if (broker) args.push("--proxy-port", broker[1])  // the key only if the broker listens where we send
    const key = execFileSync("metis-env", args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }).trim()
    output.headers["Authorization"] = `Bearer ${key}`
  },
})
"""


def global_dir(environ: Mapping[str, str]) -> str:
    xdg = environ.get("XDG_CONFIG_HOME")
    return os.path.join(xdg if xdg and os.path.isabs(xdg) else os.path.join(home(environ), ".config"), "opencode")


def extra_edits(environ: Mapping[str, str], entry: Entry) -> list:
    """Files wholly metis-env's that the config needs: the key plugin."""
    return [(os.path.join(global_dir(environ), "plugins", "metis-env.js"), lambda _old, _path: PLUGIN)]


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("OPENCODE_CONFIG")
    if explicit:
        return os.path.abspath(explicit)
    directory = global_dir(environ)
    for name in ("opencode.jsonc", "opencode.json"):
        if os.path.lexists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return os.path.join(directory, "opencode.json")


def provider_config(entry: Entry) -> dict:
    # through the broker, no {env:OPENAI_API_KEY}: under plain `run` it holds the real key, which must
    # never go to a loopback port (another user may hold it); the plugin gives the local key
    options = {"baseURL": entry.base_url} if entry.via_broker else {"baseURL": entry.base_url, "apiKey": KEY_REFERENCE}
    return {
        "npm": "@ai-sdk/openai-compatible",
        "name": entry.label,
        "options": options,
        "models": {model: model_config(entry, model) for model in entry.models},
    }


def model_config(entry: Entry, model: str) -> dict:
    """The model's name, and whether it calls tools and reasons where the gateway said so. Not its
    context window: opencode's ``limit`` needs an output cap too (it sends it as max_tokens), and the
    gateway publishes none."""
    config = {"name": model}
    for ours, theirs in (("tool_call", "tool_calling"), ("reasoning", "reasoning")):
        value = entry.capability(theirs, model)
        if isinstance(value, bool):
            config[ours] = value
    return config


def inert(token: str) -> str:
    """A JSON string token that opencode's ``{kind:...}`` substitution leaves alone (but our key reference)."""
    return token if token == json.dumps(KEY_REFERENCE) else token.replace("{", "\\u007b")


def apply(text: str | None, entry: Entry, path: str) -> str:
    return formats.json_set(
        text, ["provider", entry.provider], provider_config(entry), NAME, path, comments=True, new_doc={"$schema": SCHEMA}, escape=inert
    )


def section(text: str | None, entry: Entry, path: str):
    return formats.json_get(text, ["provider", entry.provider], NAME, path, comments=True)


def usage(entry: Entry) -> str:
    return f"opencode run -m {shlex.quote(entry.provider + '/' + entry.model)} 'hi'"
