"""llm (simonw/llm): one model ``metis-<id>/<model>`` per served model in ``extra-openai-models.yaml``.

llm reads ``$LLM_USER_PATH/extra-openai-models.yaml``, default its app dir (``~/.config/io.datasette.llm``
on Linux, as click's ``get_app_dir`` puts it). Each entry has ``api_key_name: metis-<id>`` and no
``api_base``: with no key stored under that name in llm's own ``keys.json``, llm takes
``$OPENAI_API_KEY``, and the OpenAI client ``$OPENAI_BASE_URL``, which ``metis-env run`` sets
together (``run --proxy`` and the broker: the proxy's URL with its local key), so the two never part:
``metis-env run 1 -- llm -m metis-1/MODEL 'hi'``. No key is written. Our entries sit between two
marker comments; the user's entries and comments around them are kept byte for byte.

Where llm runs in metis-env's own environment, metis-env's llm plugin (metis_env/llm_plugin.py)
replaces these entries with models that ask metis-env for the base URL and key per request (the
proxy's when started under one): then plain ``llm -m metis-1/MODEL 'hi'`` works. With ``configure llm
ID --proxy`` (recorded in configured.json, the file itself is the same) the plugin sends every request
through this host's broker, joined or started; without the plugin, ``metis-env run --proxy`` does.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

from ..errors import ToolConfigError
from ..files import YAMLParseError, dump_yaml, parse_yaml
from . import formats
from .core import Entry, describe, home

NAME = "llm"
THROUGH_BROKER = True
FILE_NAME = "extra-openai-models.yaml"


def config_path(environ: Mapping[str, str]) -> str:
    explicit = environ.get("LLM_USER_PATH")
    if explicit:
        return os.path.join(os.path.abspath(explicit), FILE_NAME)
    if sys.platform == "darwin":
        base = os.path.join(home(environ), "Library", "Application Support")
    elif sys.platform.startswith("win"):
        base = environ.get("APPDATA") or os.path.join(home(environ), "AppData", "Roaming")
    else:
        xdg = environ.get("XDG_CONFIG_HOME")
        base = xdg if xdg else os.path.join(home(environ), ".config")
    return os.path.join(base, "io.datasette.llm", FILE_NAME)


def models_config(entry: Entry) -> list:
    return [
        {
            "model_id": f"{entry.provider}/{model}",
            "model_name": model,
            "api_key_name": entry.provider,
            "can_stream": True,
            **({"supports_tools": True} if entry.capability("tool_calling", model) is True else {}),
        }
        for model in entry.models
    ]


def _ours(entry: Entry, item) -> bool:
    return isinstance(item, dict) and str(item.get("model_id", "")).startswith(entry.provider + "/")


def _load_list(text: str | None, path: str) -> list:
    data = formats.yaml_load(text, NAME, path)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ToolConfigError(f"{NAME}: {describe(path)}: the top level is not a YAML list of models; nothing was changed")
    return data


def apply(text: str | None, entry: Entry, path: str):
    old = _load_list(text, path)
    ours = models_config(entry)
    block = dump_yaml(ours)
    new = formats.replace_block(text, entry.provider, block)
    parsed = _load_list(new, path) if _parses(new) else None
    if parsed is not None and [i for i in parsed if not _ours(entry, i)] == [i for i in old if not _ours(entry, i)] and [
        i for i in parsed if _ours(entry, i)
    ] == ours:
        return new
    # A flow list ([...]) or entries of ours outside the markers: rewrite the list whole.
    others = [i for i in old if not _ours(entry, i)]
    head = dump_yaml(others) if others else ""
    rewritten = formats.replace_block(head, entry.provider, block)
    if rewritten == text:
        return text
    note = f"{NAME}: {describe(path)} is not a plain YAML block list, so it was rewritten whole: its entries are kept, its comments and layout are not (the backup has them)"
    return rewritten, [note]


def _parses(text: str) -> bool:
    try:
        parse_yaml(text)
    except YAMLParseError:
        return False
    return True


def section(text: str | None, entry: Entry, path: str):
    found = [i for i in _load_list(text, path) if _ours(entry, i)]
    return found or None


def plugin_beside_llm() -> bool:
    """llm is importable where metis-env runs, so it loads metis-env's plugin (entry point group llm)."""
    import importlib.util

    return importlib.util.find_spec("llm") is not None


def usage(entry: Entry) -> str:
    command = f"llm -m {shlex.quote(entry.provider + '/' + entry.model)} 'hi'"
    return command if plugin_beside_llm() else f"metis-env run{' --proxy' if entry.via_broker else ''} {entry.endpoint} -- {command}"
