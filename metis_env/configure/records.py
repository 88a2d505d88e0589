"""What configure wrote, in ``configured.json`` in the config dir: for each tool config, the file,
the endpoint, the model, the base URL and models written, and a hash of the section.

``doctor`` compares them with the store and the file (``drift``); ``sync`` and ``login`` rewrite the
sections whose endpoint changed (``refresh``). Never a key: the sections hold none.

    {"version": 1, "configs": [{"tool": "opencode", "path": "/home/ada/.config/opencode/opencode.json",
      "endpoint": "1", "model": "DeepSeek-R1", "base_url": "https://...", "models": ["DeepSeek-R1"],
      "section": "sha256:0123456789abcdef", "written_at": "2026-12-02T01:00:00Z", "proxy": false}]}

``proxy``: the config goes through this host's broker (``configure --proxy``); a refresh keeps it so,
and metis-env's llm plugin reads it (absent in records of older versions: false).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

from ..errors import MetisEnvError
from ..files import atomic_write_text, read_private_text
from .core import tool_module
from .core import configure_again, describe, entry_for, read_config, section_hash, through_broker, write_config

FILE_NAME = "configured.json"
VERSION = 1


def records_file(config_dir: str) -> str:
    return os.path.join(config_dir, FILE_NAME)


def load(config_dir: str, *, tighten: bool = True) -> list[dict]:
    text = read_private_text(records_file(config_dir), tighten=tighten)
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    configs = data.get("configs") if isinstance(data, dict) else None
    return [c for c in configs if isinstance(c, dict) and {"tool", "path", "endpoint"} <= set(c)] if isinstance(configs, list) else []


def save(config_dir: str, configs: list[dict]) -> None:
    atomic_write_text(records_file(config_dir), json.dumps({"version": VERSION, "configs": configs}, indent=2, ensure_ascii=False) + "\n")


def record_for(tool: str, path: str, entry, stored, section: str) -> dict:
    return {
        "tool": tool,
        "path": path,
        "endpoint": entry.endpoint,
        "model": entry.model,
        "base_url": stored.base_url,
        "models": list(stored.models),
        "section": section,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "proxy": bool(entry.via_broker),
    }


def through_broker_for(config_dir: str, tool: str, endpoint: str, *, tighten: bool = True) -> bool:
    """Whether configure wrote TOOL's config for ENDPOINT through this host's broker."""
    return any(r["tool"] == tool and r["endpoint"] == endpoint and r.get("proxy") is True
               for r in load(config_dir, tighten=tighten))


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "written_at"} == {k: v for k, v in b.items() if k != "written_at"}


def remember(config_dir: str, record: dict, exclusive: bool = False) -> None:
    """Add or replace the record of (tool, path, endpoint); ``exclusive``: one endpoint per file."""
    configs = load(config_dir)
    kept = []
    for old in configs:
        if old["tool"] == record["tool"] and old["path"] == record["path"] and (exclusive or old["endpoint"] == record["endpoint"]):
            if _same(old, record) and not exclusive:
                return
            continue
        kept.append(old)
    save(config_dir, kept + [record])


def _module(tool: str):
    return tool_module(tool)


def _current_section(module, record: dict, stored) -> tuple[str | None, str | None]:
    """(hash of the section now in the file, or None when it is gone; a problem reading it, or None)."""
    try:
        text, _mode = read_config(record["path"], module.NAME)
    except MetisEnvError as exc:
        return None, str(exc)
    if text is None:
        return None, "missing"
    entry = entry_for(record["endpoint"], record["base_url"], record["models"], record["model"], stored)
    try:
        section = module.section(text, entry, record["path"])
    except MetisEnvError as exc:
        return None, str(exc)
    return (section_hash(section) if section is not None else None), None


def drift(store, configs: list[dict] | None = None, config_dir: str | None = None) -> list[tuple[str, str, str, str]]:
    """``(name, status, message, fix)`` per recorded config, for doctor: ok, or warn when it drifted."""
    configs = load(config_dir, tighten=store.tighten) if configs is None else configs
    endpoints = store.endpoints()
    out = []
    for record in configs:
        tool, endpoint = record["tool"], record["endpoint"]
        name, where = f"configure {tool}", describe(record["path"])
        fix = configure_again(tool, endpoint, record, endpoints.get(endpoint))
        try:
            module = _module(tool)
        except MetisEnvError:
            continue
        stored = endpoints.get(endpoint)
        current, problem = _current_section(module, record, stored)
        if problem == "missing":
            out.append((name, "warn", f"{where} (endpoint {endpoint}) was removed since metis-env wrote it", fix))
        elif problem:
            out.append((name, "warn", problem, fix))
        elif current is None:
            out.append((name, "warn", f"{where}: the metis-env entries for endpoint {endpoint} were removed", fix))
        elif stored is None:
            out.append((name, "warn", f"{where} is set up for endpoint {endpoint}, which is no longer stored",
                        f"metis-env configure {tool} ENDPOINT with a stored one, or remove its entries"))
        elif current != record.get("section"):
            out.append((name, "warn", f"{where}: the entries for endpoint {endpoint} were edited since metis-env wrote them", fix + " (the edited file is backed up first)"))
        elif stored.base_url != record.get("base_url") or list(stored.models) != list(record.get("models", [])):
            what = "base URL" if stored.base_url != record.get("base_url") else "models"
            out.append((name, "warn", f"{where}: endpoint {endpoint}'s {what} changed since metis-env wrote it", fix + " (or metis-env sync)"))
        else:
            out.append((name, "ok", f"{where} is set up for endpoint {endpoint} ({record.get('model')}) and up to date", ""))
    return out


def refresh(store, settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Rewrite each recorded section whose endpoint's base URL or models changed, unless the user
    edited it since (then say so and leave it). Returns the lines to show on stderr."""
    configs = load(settings.config_dir)
    if not configs:
        return []
    endpoints = store.endpoints()
    lines, updated = [], []
    for record in configs:
        tool, endpoint, where = record["tool"], record["endpoint"], describe(record["path"])
        stored = endpoints.get(endpoint)
        try:
            module = _module(tool)
        except MetisEnvError:
            updated.append(record)
            continue
        if stored is None or (stored.base_url == record.get("base_url") and list(stored.models) == list(record.get("models", []))):
            if stored is None:
                lines.append(f"configure: {tool}: {where} names endpoint {endpoint}, which is no longer stored; left as it is")
            updated.append(record)
            continue
        current, problem = _current_section(module, record, stored)
        if problem or current != record.get("section"):
            again = configure_again(tool, endpoint, record, stored)
            lines.append(f"configure: {tool}: {where} was changed since metis-env wrote it; not refreshed (run: {again})")
            updated.append(record)
            continue
        model = record.get("model") if record.get("model") in stored.models else stored.models[0]
        entry = entry_for(stored.id, stored.base_url, stored.models, model, stored)
        try:
            if record.get("proxy"):
                from ..broker.client import broker_url

                entry = through_broker(entry, broker_url(settings, stored.id))
            text, mode = read_config(record["path"], module.NAME)
            result = module.apply(text, entry, record["path"])
            new = result[0] if isinstance(result, tuple) else result
            if new != text:
                write_config(record["path"], text, mode, new)
            # files beside it that name the model (pi's default), where they still name ours
            for extra_path, edit in getattr(module, "refreshed_extras", lambda _path, _entry: [])(record["path"], entry):
                extra_old, extra_mode = read_config(extra_path, module.NAME)
                extra_new = edit(extra_old, extra_path)
                if extra_new != extra_old:
                    write_config(extra_path, extra_old, extra_mode, extra_new)
        except (MetisEnvError, OSError) as exc:
            lines.append(f"configure: {tool}: {where} not refreshed: {exc}")
            updated.append(record)
            continue
        lines.append(f"configure: {tool}: refreshed {where} for endpoint {endpoint}")
        updated.append(record_for(tool, record["path"], entry, stored, section_hash(module.section(new, entry, record["path"]))))
    if updated != configs:
        save(settings.config_dir, updated)
    return lines
