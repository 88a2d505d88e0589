"""Where configuration and state live; no side effects (nothing here creates anything).

``METIS_ENV_CONFIG_DIR`` wins, then ``$XDG_CONFIG_HOME/metis-env``, then ``~/.config/metis-env``.
Paths are plain strings built with ``os.path``: pathlib (with the fnmatch, urllib.parse and
ipaddress it imports) would cost about 4 ms of every shell start-up.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

APP_NAME = "metis-env"


def config_dir(environ: Mapping[str, str] = os.environ) -> str:
    home = environ.get("HOME") or os.path.expanduser("~")
    explicit = environ.get("METIS_ENV_CONFIG_DIR")
    if explicit:
        if explicit == "~" or explicit.startswith("~/"):
            explicit = home + explicit[1:]
        return explicit
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, APP_NAME)
    return os.path.join(home, ".config", APP_NAME)


def metadata_file(directory: str | os.PathLike) -> str:
    """Base URLs, models, fingerprints, sync times: never a key."""
    return os.path.join(directory, "endpoints.yaml")


def config_file(directory: str | os.PathLike) -> str:
    """Settings: user, host, default endpoint and model, store, ..."""
    return os.path.join(directory, "config.yaml")


def keys_file(directory: str | os.PathLike) -> str:
    """The explicit file store's keys (only with ``store: file``), mode 0600."""
    return os.path.join(directory, "keys.json")


def lock_file(directory: str | os.PathLike) -> str:
    return os.path.join(directory, "sync.lock")


def journal_file(directory: str | os.PathLike) -> str:
    """Keyring entries being written, or made stale, by an update that has not finished."""
    return os.path.join(directory, "pending.json")


def status_file(directory: str | os.PathLike) -> str:
    """What the last ``status`` or ``check`` saw per model (never a key); export warns from it."""
    return os.path.join(directory, "status.json")
