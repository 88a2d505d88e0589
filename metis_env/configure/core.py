"""What every tool's config shares: read it safely, diff it, back it up, write it atomically.

A tool's config file is the user's, not ours: metis-env reads it only when it is a regular file of
the user's own (never through a symlink), changes only the entries it owns, keeps the file's mode,
keeps a backup of what was there, and replaces the file in one ``os.replace`` so that a crash leaves
either the old file or the new one.
"""

from __future__ import annotations

import difflib
from urllib.parse import urlsplit
import hashlib
import json
import os
import stat
import time
from collections import namedtuple
from typing import Any

from ..errors import ToolConfigError, UsageError
from ..credentials import uses_login
from ..files import replace_file

NEW_FILE_MODE = 0o600
NEW_DIR_MODE = 0o700
BACKUP_SUFFIX = ".metis-env.bak"


class Entry(namedtuple("Entry", "endpoint provider base_url models model label gateway routes capabilities via_broker",
                       defaults=(False, None, None, False))):
    """What configure writes for one endpoint: ``endpoint`` (its id), ``provider`` (the name the tool
    knows it by, ``metis-<id>``), ``base_url`` (no trailing slash: every client appends
    ``/chat/completions``), ``models`` (tuple), ``model`` (the chosen one), ``label`` (for people),
    ``gateway`` (whether its key is the gateway's token, not an endpoint file's: credentials.uses_login), ``routes`` (the route paths the gateway says the cluster serves,
    or None when it did not say) and ``capabilities`` (model id -> what ``{cluster}/models`` said of
    it; empty when it said nothing); ``via_broker``: ``base_url`` is this host's broker at its stable
    port (``configure --proxy``, broker/client.py) and the key to give is the broker's local key."""

    __slots__ = ()

    def capability(self, name: str, model: str | None = None):
        """What the gateway said of ``model`` (default: the chosen one) under ``name``, or None."""
        found = (self.capabilities or {}).get(model or self.model)
        value = found.get(name) if isinstance(found, dict) else None
        # the gateway's own form of a flag is {"supported": bool}; discovery stores the bool
        return value.get("supported") if isinstance(value, dict) else value

    def serves(self, route: str) -> bool | None:
        """Whether the cluster serves ``route`` (a path ending, e.g. ``/responses``); None: not known."""
        if self.routes is None:
            return None
        return any(str(path).rstrip("/").endswith(route) for path in self.routes)


TOOLS = ("aider", "claude", "codex", "llm", "opencode", "pi")
"""The tools configure knows, each a module of this package."""


BROKER_BY_DEFAULT = {"opencode", "pi"}
"""Tools whose requests Metis refuses with a 422 (text as a list of parts, the ``developer`` role, tool
lists) and the broker adapts (broker/metis_compat.py): on a Metis endpoint they go through this
host's broker unless ``--no-proxy``."""


def broker_by_default(name: str, stored) -> bool:
    """Whether ``configure NAME`` without --proxy/--no-proxy goes through the broker for ``stored``
    (while the ``metis_compat`` setting is on)."""
    from ..broker.metis_compat import is_metis

    return name in BROKER_BY_DEFAULT and stored is not None and is_metis(stored)


def configure_again(tool: str, endpoint: str, record: dict, stored) -> str:
    """The configure command that writes a recorded config again as it was (through the broker or not)."""
    through = record.get("proxy") is True
    option = "" if through == broker_by_default(tool, stored) else (" --proxy" if through else " --no-proxy")
    return f"metis-env configure {tool} {endpoint}{option}"


def tool_module(name: str):
    """The module of one tool configure knows (``configure/<name>.py``); UsageError naming the others."""
    if name not in TOOLS:
        raise UsageError(f"unknown tool {name!r}; metis-env configure knows: {', '.join(TOOLS)}")
    import importlib

    return importlib.import_module(f".{name}", __package__)


def entry_for(endpoint_id: str, base_url: str, models, model: str, stored=None) -> Entry:
    """The entry for a stored endpoint; ``stored`` (its StoredEndpoint) adds where it came from and
    what the gateway said of its routes and models (``extra``)."""
    extra = dict(getattr(stored, "extra", None) or {})
    routes = extra.get("routes")
    capabilities = extra.get("capabilities")
    return Entry(
        endpoint=endpoint_id,
        provider=provider_name(endpoint_id),
        base_url=base_url.rstrip("/"),
        models=tuple(models),
        model=model,
        label=f"ALCF Metis (metis-env endpoint {endpoint_id})",
        gateway=stored is not None and uses_login(stored),
        routes=tuple(routes) if isinstance(routes, (list, tuple)) else None,
        capabilities=capabilities if isinstance(capabilities, dict) else {},
    )


def provider_name(endpoint_id: str) -> str:
    return f"metis-{endpoint_id}"


def key_command(endpoint_id: str, broker_url: str | None = None) -> list[str]:
    """The command a tool runs to get the current key: metis-env prints it and nothing else
    (``broker_url``: the local key of this host's broker, which it joins or starts, and which must
    listen at that URL's port)."""
    if not broker_url:
        return ["metis-env", "get", "key", endpoint_id]
    return ["metis-env", "get", "key", endpoint_id, "--proxy-port", str(urlsplit(broker_url).port)]


def through_broker(entry: Entry, url: str) -> Entry:
    """``entry`` pointed at this host's broker (``url``: broker/client.py's stable address)."""
    return entry._replace(base_url=url, via_broker=True)


def section_hash(section: Any) -> str:
    """A short, stable hash of the parsed entries metis-env owns in a file (to see later edits)."""
    canonical = json.dumps(section, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def describe(path: str) -> str:
    """``~/...`` for paths under the home directory: shorter lines, no user name."""
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


def read_config(path: str, tool: str) -> tuple[str | None, int | None]:
    """The file's text and mode, or ``(None, None)`` when it does not exist yet.

    Refused, with ToolConfigError: a symlink (it could point anywhere, and a rename would replace the
    link, not its target), anything but a regular file, a file of another user, a file that is not
    UTF-8, and a file whose directory we cannot write (the atomic rename needs it).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise ToolConfigError(f"{tool}: cannot read {describe(path)}: {exc.strerror}; nothing was changed") from None
    if stat.S_ISLNK(info.st_mode):
        raise ToolConfigError(
            f"{tool}: {describe(path)} is a symbolic link (to {os.readlink(path)}); metis-env does not write "
            f"through links: configure the file it points to with the tool's own variable, or replace the link; nothing was changed"
        )
    if not stat.S_ISREG(info.st_mode):
        raise ToolConfigError(f"{tool}: {describe(path)} is not a regular file; move it away; nothing was changed")
    if info.st_uid != os.geteuid():
        raise ToolConfigError(
            f"{tool}: {describe(path)} belongs to another user (uid {info.st_uid}); metis-env writes only your own files; nothing was changed"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ToolConfigError(f"{tool}: cannot read {describe(path)}: {exc.strerror}; nothing was changed") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolConfigError(f"{tool}: {describe(path)} is not UTF-8 text; nothing was changed") from None
    return text, stat.S_IMODE(info.st_mode)


def check_parent_writable(path: str, tool: str) -> None:
    parent = os.path.dirname(path) or "."
    probe = parent
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe) or "."
    if os.path.islink(probe) and probe == parent:
        probe = os.path.realpath(probe)
    if not os.path.isdir(probe):
        raise ToolConfigError(f"{tool}: {describe(probe)} is not a directory; nothing was changed")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ToolConfigError(f"{tool}: cannot write in {describe(probe)} (permission denied); nothing was changed")


def unified_diff(path: str, old: str | None, new: str) -> str:
    label = describe(path)
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=label if old is not None else "/dev/null",
        tofile=label,
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def backup_path(path: str) -> str:
    """The first backup keeps the user's original for good; later ones are timestamped."""
    first = path + BACKUP_SUFFIX
    if not os.path.lexists(first):
        return first
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, n = f"{path}.metis-env.{stamp}.bak", 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}.metis-env.{stamp}-{n}.bak"
    return candidate


def write_config(path: str, old: str | None, old_mode: int | None, new: str) -> str | None:
    """Back up ``old`` (if any) and replace ``path`` with ``new`` atomically; returns the backup's path."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=NEW_DIR_MODE, exist_ok=True)
    mode = NEW_FILE_MODE if old_mode is None else old_mode
    backup = None
    if old is not None:
        backup = backup_path(path)
        _write_new(backup, old, mode)
    replace_file(path, new, mode, suffix=".metis-env.tmp", newline="")
    return backup


def _write_new(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def home(environ) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def expand_tilde(path: str, environ) -> str:
    if path == "~" or path.startswith("~/"):
        return home(environ) + path[1:]
    return path
