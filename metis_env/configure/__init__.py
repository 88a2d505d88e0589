"""`metis-env configure TOOL`: the AI tools' own config files (one module per tool), merged, backed up, never holding a key where the tool can ask for one.

Each tool module has ``NAME``, ``config_path(environ)``, ``apply(text, entry, path)`` (the new text,
or ``(text, notes)``), ``section(text, entry, path)`` (the parsed entries metis-env owns there, or
None) and ``usage(entry)``. ``configure_tool`` is the one flow they share: read safely, merge, show a
unified diff on stderr, back up, write atomically, record what was written (records.py).

    metis-env configure opencode 1 --dry-run
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import namedtuple
from collections.abc import Mapping

from ..errors import UsageError
from .core import check_parent_writable, describe, entry_for, read_config, section_hash, unified_diff, write_config

TOOLS = ("aider", "codex", "llm", "opencode", "pi")
"""The tools configure knows, each a module of this package."""

EXCLUSIVE = {"aider"}
"""Tools whose file holds one endpoint at a time (aider has one model and one base URL)."""


class Outcome(namedtuple("Outcome", "tool path changed written backup usage notes extras")):
    __slots__ = ()


def tool_module(name: str):
    if name not in TOOLS:
        raise UsageError(f"unknown tool {name!r}; metis-env configure knows: {', '.join(TOOLS)}")
    return importlib.import_module(f".{name}", __name__)


def plan(module, stored, model: str, environ: Mapping[str, str]):
    """(path, old text, old mode, new text, notes, entry) for one tool and one stored endpoint."""
    entry = entry_for(stored.id, stored.base_url, stored.models, model)
    path = module.config_path(environ)
    old, mode = read_config(path, module.NAME)
    result = module.apply(old, entry, path)
    new, notes = result if isinstance(result, tuple) else (result, [])
    return path, old, mode, new, notes, entry


def configure_tool(store, settings, name: str, spec: str | None, model: str | None, dry_run: bool = False,
                   environ: Mapping[str, str] = os.environ, err=None) -> Outcome:
    """Write (or with ``dry_run`` only show) TOOL's config for ENDPOINT; the diff goes to ``err``."""
    from .. import actions
    from . import records

    err = err or sys.stderr
    module = tool_module(name)
    selection = actions.select(store, spec, model, settings, "configure")
    for warning in selection.warnings:
        err.write(f"metis-env: warning: {warning}\n")
    path, old, mode, new, notes, entry = plan(module, selection.endpoint, selection.model, environ)
    for note in notes:
        err.write(f"metis-env: note: {note}\n")
    extras = []
    for extra_path, extra_text in getattr(module, "extra_files", lambda _environ: [])(environ):
        extra_old, extra_mode = read_config(extra_path, module.NAME)
        if extra_old != extra_text:
            extras.append((extra_path, extra_old, extra_mode, extra_text))
    changed = new != old or bool(extras)
    backup = None
    if changed and not dry_run:
        for target in [path] + [e[0] for e in extras]:
            check_parent_writable(target, module.NAME)
    if new != old:
        err.write(unified_diff(path, old, new))
    for extra_path, extra_old, _mode, extra_text in extras:
        err.write(unified_diff(extra_path, extra_old, extra_text))
    if changed and not dry_run:
        for extra_path, extra_old, extra_mode, extra_text in extras:
            write_config(extra_path, extra_old, extra_mode, extra_text)
        if new != old:
            backup = write_config(path, old, mode, new)
    if not dry_run:
        section = module.section(new, entry, path)
        records.remember(settings.config_dir, records.record_for(name, path, entry, selection.endpoint, section_hash(section)), exclusive=name in EXCLUSIVE)
    return Outcome(name, path, changed, new != old and not dry_run, backup, module.usage(entry), notes, [e[0] for e in extras])


def report(outcome: Outcome, dry_run: bool) -> list[str]:
    """The lines configure prints on stderr after the diff."""
    where = describe(outcome.path)
    if not outcome.changed:
        lines = [f"{outcome.tool}: {where} is already up to date; nothing changed"]
    elif dry_run:
        lines = [f"{outcome.tool}: --dry-run: {where} was not changed"]
    else:
        lines = [f"{outcome.tool}: wrote {where}" + (f" (backup: {describe(outcome.backup)})" if outcome.backup else "")] if outcome.written else []
        lines += [f"{outcome.tool}: wrote {describe(extra)}" for extra in outcome.extras]
    return lines + [f"{outcome.tool}: use it: {outcome.usage}"]


def refresh_configured_tools(store, settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Rewrite the configs configure wrote whose endpoint's base URL or models changed since; the lines
    to show. ``sync`` (and ``login``) call it after storing. See records.refresh."""
    from . import records

    return records.refresh(store, settings, environ)
