"""Settings: ``config.yaml`` in the config dir, each overridable by ``METIS_ENV_<NAME>``.

Standard library only on the common path (the hot commands read settings on every shell start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from . import paths
from .errors import StoreError, UsageError
from .files import atomic_write_text, dump_flat_yaml, load_structured, read_private_text

DEFAULT_HOST = "sambanova.alcf.anl.gov"
STORES = ("keyring", "file")
TRANSPORTS = ("paramiko", "openssh")


@dataclass(frozen=True)
class Settings:
    config_dir: Path
    user: str | None = None
    host: str = DEFAULT_HOST
    port: int | None = None
    default_endpoint: str | None = None
    default_model: str | None = None
    store: str = "keyring"
    stale_after_days: float = 30.0
    pattern: str = "metis_endpoint_*.txt"
    transport: str = "paramiko"
    timeout: float = 30.0


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "config_dir")
"""The names accepted in config.yaml and as METIS_ENV_<NAME>."""


def env_name(name: str) -> str:
    return f"METIS_ENV_{name.upper()}"


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """config.yaml, then the environment on top; raises UsageError naming a bad value and its source."""
    directory = paths.config_dir(environ)
    path = paths.config_file(directory)
    raw = read_config_file(path)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SETTING_NAMES:
            raise UsageError(f"{path}: unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}")
        values[name] = coerce_setting(name, value, str(path))
    for name in SETTING_NAMES:
        value = environ.get(env_name(name))
        if value:
            values[name] = coerce_setting(name, value, env_name(name))
    return Settings(config_dir=directory, **values)


def read_config_file(path: Path) -> dict[str, Any]:
    text = read_private_text(path)
    if text is None or not text.strip():
        return {}
    data = load_structured(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected 'name: value' lines; fix or delete the file")
    return data


def coerce_setting(name: str, value: Any, source: str) -> Any:
    """Turn a value from YAML or the environment into the setting's type, or say what is wrong."""
    if value is None:
        return None
    if name == "port":
        try:
            port = int(str(value))
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise UsageError(f"{source}: port must be a number from 1 to 65535")
        return port
    if name in ("stale_after_days", "timeout"):
        try:
            number = float(str(value))
        except ValueError:
            number = -1.0
        if not number > 0:
            raise UsageError(f"{source}: {name} must be a positive number")
        return number
    if isinstance(value, (dict, list, bool)):
        raise UsageError(f"{source}: {name} must be a single word or number")
    text = str(value)
    if name == "store" and text not in STORES:
        raise UsageError(f"{source}: store must be one of {', '.join(STORES)}")
    if name == "transport" and text not in TRANSPORTS:
        raise UsageError(f"{source}: transport must be one of {', '.join(TRANSPORTS)}")
    return text


def save_setting(config_dir: Path, name: str, value: Any) -> None:
    """Set (or with None, remove) one setting in config.yaml, keeping the others."""
    if name not in SETTING_NAMES:
        raise UsageError(f"unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}")
    path = paths.config_file(config_dir)
    data = dict(read_config_file(path))
    if value is None:
        data.pop(name, None)
    else:
        data[name] = coerce_setting(name, value, name)
    atomic_write_text(path, dump_flat_yaml(data))


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Command-line options on top of the settings (None means not given)."""
    given = {k: coerce_setting(k, v, f"--{k.replace('_', '-')}") for k, v in overrides.items() if v is not None}
    return replace(settings, **given)
