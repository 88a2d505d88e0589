"""Where configuration and state live; no side effects (nothing here creates anything).

``METIS_ENV_CONFIG_DIR`` wins, then ``$XDG_CONFIG_HOME/metis-env``, then ``~/.config/metis-env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "metis-env"


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    explicit = environ.get("METIS_ENV_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_NAME
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".config" / APP_NAME


def metadata_file(directory: Path) -> Path:
    """Base URLs, models, fingerprints, sync times: never a key."""
    return directory / "endpoints.yaml"


def config_file(directory: Path) -> Path:
    """Settings: user, host, default endpoint and model, store, ..."""
    return directory / "config.yaml"


def keys_file(directory: Path) -> Path:
    """The explicit file store's keys (only with ``store: file``), mode 0600."""
    return directory / "keys.json"


def lock_file(directory: Path) -> Path:
    return directory / "sync.lock"


def journal_file(directory: Path) -> Path:
    """Keyring entries being written by an update that has not committed yet."""
    return directory / "pending.json"
