"""`metis-env configure TOOL`: the AI tools' own config files (one module per tool), merged, backed up, never holding a key where the tool can ask for one.

Each tool module has ``NAME``, ``config_path(environ)``, ``apply(text, entry, path)`` (the new text,
or ``(text, notes)``), ``section(text, entry, path)`` (the parsed entries metis-env owns there, or
None) and ``usage(entry)``; optionally ``check(entry, candidates)`` (raises ToolConfigError for an endpoint the
tool cannot use) and ``extra_edits(environ, entry)`` (other files it needs, see ``extra_edits``), and ``THROUGH_BROKER = True``
when it can be configured through this host's broker (``--proxy``: see ``wants_broker``). ``configure_tool`` is the one flow they share: read safely, merge, show a
unified diff on stderr, back up, write atomically, record what was written (records.py).

    metis-env configure opencode 1 --dry-run
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from collections.abc import Mapping

from .core import TOOLS, tool_module  # noqa: F401  (configure.TOOLS, configure.tool_module: the package's own)
from .core import BROKER_BY_DEFAULT, broker_by_default  # noqa: F401  (configure.BROKER_BY_DEFAULT: the package's own)
from .core import check_parent_writable, describe, entry_for, read_config, section_hash, through_broker, unified_diff, write_config
from ..errors import UsageError
from ..settings import require_settings

AGENTS = {"aider", "claude", "codex", "opencode", "pi"}
"""Tools that work by calling tools (edit a file, run a command): they need a model with tool calling."""

EXCLUSIVE = {"aider", "claude"}
"""Tools whose file holds one endpoint at a time (aider and Claude Code have one model and one base URL)."""


PROXY_VARIABLES_APPLY = {"codex", "pi"}
"""Tools that send to the user's HTTP proxy unless ``no_proxy`` names 127.0.0.1, and whose config cannot
change that (opencode's plugin and metis-env's llm plugin keep loopback off the proxy themselves; aider
and llm without the plugin run under ``run --proxy``, which adds loopback to ``no_proxy``)."""


def loopback_through_http_proxy(environ: Mapping[str, str]) -> bool:
    """An HTTP proxy is set and neither ``no_proxy`` nor ``NO_PROXY`` names 127.0.0.1 (ALCF's
    getting-started pages set such a pair)."""
    if not any(environ.get(name) for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")):
        return False
    named = {entry.strip() for name in ("no_proxy", "NO_PROXY") for entry in environ.get(name, "").split(",")}
    return not named & {"127.0.0.1", "*"}


class Outcome(namedtuple("Outcome", "tool path changed written backup usage notes extras via_broker",
                         defaults=(False,))):
    __slots__ = ()


def wants_broker(name: str, stored, settings, proxy: bool | None) -> bool:
    """Whether TOOL's config goes through this host's broker: ``--proxy``/``--no-proxy`` when given,
    else yes for the tools of BROKER_BY_DEFAULT on a Metis endpoint while the broker adapts requests."""
    module = tool_module(name)
    if proxy and not getattr(module, "THROUGH_BROKER", False):
        raise UsageError(f"{name}: --proxy is not supported for {name}; configure it without --proxy")
    if proxy is not None:
        return proxy
    if not broker_by_default(name, stored):
        return False
    require_settings(settings, ("metis_compat",))  # held back as not valid: the broker's to refuse
    return getattr(settings, "metis_compat", True) is not False


def plan(module, stored, model: str, environ: Mapping[str, str], candidates=(), broker_url: str | None = None):
    """(path, old text, old mode, new text, notes, entry) for one tool and one stored endpoint;
    ``candidates`` (entries of the other stored endpoints) let a refusal name one that works;
    ``broker_url``: the config goes through this host's broker there."""
    entry = entry_for(stored.id, stored.base_url, stored.models, model, stored)
    if broker_url:
        entry = through_broker(entry, broker_url)
    getattr(module, "check", lambda _entry, _candidates: None)(entry, candidates)
    path = module.config_path(environ)
    old, mode = read_config(path, module.NAME)
    result = module.apply(old, entry, path)
    new, notes = result if isinstance(result, tuple) else (result, [])
    return path, old, mode, new, notes, entry


def extra_edits(module, environ: Mapping[str, str], entry) -> list:
    """``(path, edit)`` for the other files a tool's config needs; ``edit(old text or None, path)`` is
    the new text (a file wholly metis-env's ignores the old one)."""
    return getattr(module, "extra_edits", lambda _environ, _entry: [])(environ, entry)


def tool_calling_warning(name: str, entry) -> str | None:
    """An agent that works by calling tools, configured for a model the gateway says cannot."""
    if name in AGENTS and entry.capability("tool_calling") is False:
        return (f"{entry.model} on endpoint {entry.endpoint} does not support tool calling (the gateway says so); "
                f"{name} is an agent that needs it and may fail: pick another model with --model")
    return None


def configure_tool(store, settings, name: str, spec: str | None, model: str | None, dry_run: bool = False,
                   environ: Mapping[str, str] = os.environ, err=None, proxy: bool | None = None) -> Outcome:
    """Write (or with ``dry_run`` only show) TOOL's config for ENDPOINT; the diff goes to ``err``.
    ``proxy``: through this host's broker (True), straight to the endpoint (False), or as
    ``wants_broker`` decides (None)."""
    from .. import credentials
    from ..broker import client
    from . import records

    err = err or sys.stderr
    module = tool_module(name)
    selection = credentials.select(store, spec, model, settings, "configure")
    for warning in selection.warnings:
        err.write(f"metis-env: warning: {warning}\n")
    candidates = [entry_for(e.id, e.base_url, e.models, e.models[0], e) for e in store.endpoints().values() if e.models]
    via_broker = wants_broker(name, selection.endpoint, settings, proxy)
    broker_url = client.broker_url(settings, selection.endpoint.id) if via_broker else None
    path, old, mode, new, notes, entry = plan(module, selection.endpoint, selection.model, environ, candidates, broker_url)
    warning = tool_calling_warning(name, entry)
    if warning:
        err.write(f"metis-env: warning: {warning}\n")
    if via_broker and name in PROXY_VARIABLES_APPLY and loopback_through_http_proxy(environ):
        err.write(f"metis-env: warning: an HTTP proxy is set and no_proxy does not name 127.0.0.1, so {name} would send its "
                  f"requests for this host's broker to that proxy; add it where the proxy is set (e.g. ~/.bash_profile): "
                  f"export no_proxy=\"$no_proxy,127.0.0.1\" NO_PROXY=\"$NO_PROXY,127.0.0.1\"\n")
    for note in notes:
        err.write(f"metis-env: note: {note}\n")
    extras = []
    for extra_path, edit in extra_edits(module, environ, entry):
        extra_old, extra_mode = read_config(extra_path, module.NAME)
        extra_text = edit(extra_old, extra_path)
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
    return Outcome(name, path, changed, new != old and not dry_run, backup, module.usage(entry), notes, [e[0] for e in extras], via_broker)


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
    if outcome.via_broker:
        lines.append(f"{outcome.tool}: goes through this host's broker (metis-env proxy), which its key command starts when none runs")
    return lines + [f"{outcome.tool}: use it: {outcome.usage}"]


def refresh_configured_tools(store, settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Rewrite the configs configure wrote whose endpoint's base URL or models changed since; the lines
    to show. ``sync`` (and ``login``) call it after storing. See records.refresh."""
    from . import records

    return records.refresh(store, settings, environ)
