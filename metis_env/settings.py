"""Settings: ``config.yaml`` in the config dir, each overridable by ``METIS_ENV_<NAME>``.

Standard library only on the common path (the hot commands read settings on every shell start).
"""

from __future__ import annotations

import os
from .structs import record_type
from . import paths
from .errors import StoreError, UsageError
from .alcf import ALCF_TOKENS_CLIENT_ID, DEFAULT_GATEWAY_URL, DEFAULT_HOST
from .variables import parse_aliases
from .files import atomic_write_text, dump_flat_yaml, load_structured, read_private_text

# typing costs ~3 ms of every shell start-up; the annotations are strings (PEP 563), so only
# type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

STORES = ("keyring", "file")
TRANSPORTS = ("paramiko", "openssh")
LOCKS = ("auto", "flock", "file")  # the store's lock: locks.py


# A record type (structs.py: namedtuple without collections), not a dataclass: `import dataclasses`
# costs about 14 ms of every shell start-up.
_DEFAULTS = {
    "user": None,
    "host": DEFAULT_HOST,
    "port": None,
    "default_endpoint": None,
    "default_model": None,
    "store": "keyring",
    "stale_after_days": 30.0,
    "pattern": "metis_endpoint_*.txt",
    "transport": "paramiko",
    "timeout": 30.0,
    "aliases": None,
    "lock": "auto",
    # the gateway source (alcf.py holds the production values)
    "gateway_url": DEFAULT_GATEWAY_URL,
    "globus_client_id": ALCF_TOKENS_CLIENT_ID,
    "token_refresh_margin": 3600.0,
    "reauth_after_days": 27.0,
    "rate_limit": None,  # requests/s the broker sends at most; None: 10 for gateway endpoints, no cap for files
    "min_ttl": None,
    "metis_compat": True,  # the broker adapts chat-completions requests to what Metis takes
    "proxy_port": None,  # the broker's loopback port; None: one derived from the uid (broker/client.py), 0: a random one
}


# Only sync over SSH reads these: a bad one must not break export, list, run or direnv, which never
# use it; it is held back (the default stands in) and sync refuses it (require_sync_settings).
SYNC_ONLY = ("user", "host", "port", "pattern", "transport")
# Only the node broker reads these (and configure and get with --proxy, which name it): held back the
# same way, and every broker path refuses them (require_settings(settings, BROKER_ONLY)).
BROKER_ONLY = ("rate_limit", "metis_compat", "proxy_port")
HELD_BACK = {**{name: "sync" for name in SYNC_ONLY}, **{name: "the node broker" for name in BROKER_ONLY}}
"""Each setting a bad value of which is held back, and who refuses it."""


class Settings(record_type("Settings", ["config_dir", *_DEFAULTS, "invalid"], defaults=(*_DEFAULTS.values(), ()))):
    """``config_dir: str``; ``user, default_endpoint, default_model: str | None``; ``host, store
    ("keyring"|"file"), pattern, transport ("paramiko"|"openssh"): str``; ``port: int | None``;
    ``stale_after_days, timeout: float`` (seconds); ``aliases: str | None`` (``NEW=EXPORTED,...``);
    ``gateway_url`` (ends in ``/``), ``globus_client_id``: str; ``token_refresh_margin`` (seconds),
    ``reauth_after_days``: float; ``min_ttl`` (seconds of token life export must hand out, or None);
    ``rate_limit``: float | None (requests/s, the broker's cap); ``metis_compat``: bool (the broker
    adapts requests to Metis endpoints); ``proxy_port``: int | None (the broker's port, which
    configs written by ``configure --proxy`` name; None: derived from the uid, 0: random); ``lock`` ("auto"|"flock"|"file"): how the store's writers
    exclude each other (locks.py); ``invalid``: ((name, message), ...) of sync-only and broker-only
    settings held back as not valid (``HELD_BACK``)."""

    __slots__ = ()


SETTING_NAMES = tuple(_DEFAULTS)
"""The names accepted in config.yaml and as METIS_ENV_<NAME>."""


def env_name(name: str) -> str:
    return f"METIS_ENV_{name.upper()}"


def load_settings(environ: Mapping[str, str] = os.environ, *, tighten: bool = True) -> Settings:
    """config.yaml, then the environment on top; raises UsageError naming a bad value and its source
    (``tighten``: see ``files.check_private_dir``)."""
    directory = paths.config_dir(environ)
    path = paths.config_file(directory)
    raw = read_config_file(path, tighten=tighten)
    values: dict[str, Any] = {}
    invalid: dict[str, str] = {}
    given = [(name, value, str(path)) for name, value in raw.items()]
    given += [(name, environ[env_name(name)], env_name(name)) for name in SETTING_NAMES if environ.get(env_name(name))]
    for name, value, source in given:
        if name not in SETTING_NAMES:
            raise UsageError(f"{path}: unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}")
        try:
            values[name] = coerce_setting(name, value, source)
            invalid.pop(name, None)
        except UsageError as exc:
            if name not in HELD_BACK:
                raise
            values.pop(name, None)
            invalid[name] = str(exc)
    return Settings(config_dir=directory, **values, invalid=tuple(invalid.items()))


def require_sync_settings(settings: Settings, given: Any = ()) -> None:
    """Raise the first sync-only setting held back as not valid, unless an option (``given``) replaces it."""
    require_settings(settings, SYNC_ONLY, given)


def require_settings(settings: Any, names: tuple[str, ...], given: Any = ()) -> None:
    """Raise the first of ``names`` held back as not valid, unless an option (``given``) replaces it."""
    for name, message in getattr(settings, "invalid", ()):
        if name in names and name not in given:
            raise UsageError(message)


def read_config_file(path: str | os.PathLike, *, tighten: bool = True) -> dict[str, Any]:
    text = read_private_text(path, tighten=tighten)
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
            raise UsageError(f"{_label(source, 'port')} must be a number from 1 to 65535")
        return port
    if name == "proxy_port":
        try:
            port = int(str(value))
        except ValueError:
            port = -1
        if not 0 <= port < 65536 or isinstance(value, bool):
            raise UsageError(f"{_label(source, 'proxy_port')} must be a port number from 1 to 65535, or 0 for a random one")
        return port
    if name in ("stale_after_days", "timeout", "token_refresh_margin", "reauth_after_days", "rate_limit"):
        try:
            number = float(str(value))
        except ValueError:
            number = -1.0
        if not number > 0:
            raise UsageError(f"{_label(source, name)} must be a positive number")
        return number
    if name == "metis_compat":
        return _boolean(value, _label(source, name))
    if name == "min_ttl":
        return parse_duration(value, _label(source, "min_ttl"))
    if name == "aliases":
        if isinstance(value, dict):  # `aliases: {GROQ_API_KEY: OPENAI_API_KEY}` in config.yaml reads as well
            value = ",".join(f"{k}={v}" for k, v in value.items())
        if not isinstance(value, str):
            raise UsageError(f"{_label(source, 'aliases')} must be NEW_NAME=EXPORTED_NAME pairs, comma-separated")
        return ",".join(f"{alias}={target}" for alias, target in parse_aliases(value, source)) or None
    if isinstance(value, (dict, list, bool)):
        raise UsageError(f"{_label(source, name)} must be a single word or number")
    text = str(value)
    if name == "store" and text not in STORES:
        raise UsageError(f"{_label(source, 'store')} must be one of {', '.join(STORES)}")
    if name == "transport" and text not in TRANSPORTS:
        raise UsageError(f"{_label(source, 'transport')} must be one of {', '.join(TRANSPORTS)}")
    if name == "lock" and text not in LOCKS:
        raise UsageError(f"{_label(source, 'lock')} must be one of {', '.join(LOCKS)}")
    if name == "gateway_url":
        return _gateway_url(text, source)
    if name == "globus_client_id" and not _is_uuid(text):
        raise UsageError(f"{_label(source, 'globus_client_id')} must be a Globus client id (a UUID)")
    return text


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, label: str) -> float:
    """``90m``, ``12h``, ``2d``, ``45s`` or plain seconds -> seconds; UsageError naming ``label``."""
    text = str(value).strip().lower()
    unit = text[-1:] if text[-1:] in _DURATION_UNITS else "s"
    number = text[:-1] if text[-1:] in _DURATION_UNITS else text
    try:
        seconds = float(number) * _DURATION_UNITS[unit] if not isinstance(value, bool) else -1.0
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{label} must be a duration such as 90m, 12h or 2d (or seconds)")
    return seconds


def _gateway_url(text: str, source: str) -> str:
    """https://, or http:// to a loopback host (a local stand-in); always ending in '/'."""
    scheme, _, rest = text.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    if not host or scheme.lower() not in ("https", "http") or (scheme.lower() == "http" and not _is_loopback(host)):
        raise UsageError(f"{_label(source, 'gateway_url')} must be an https:// URL (http:// only for localhost, 127.0.0.0/8 or ::1)")
    return text if text.endswith("/") else text + "/"


def _boolean(value: Any, label: str) -> bool:
    """``true``/``false`` (YAML's booleans, or the words ``true|false|yes|no|on|off|1|0``)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise UsageError(f"{label} must be true or false")


def _is_loopback(host: str) -> bool:
    # An address literal, not a name that starts like one: 127.0.0.1.nip.io resolves anywhere.
    parts = host.split(".")
    if host.lower() == "localhost" or host == "::1" or (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and p == str(int(p)) and int(p) < 256 for p in parts)
    ):
        return True  # the common spellings, without importing ipaddress on export's hot path
    from .endpoint import is_loopback_host  # any other spelling pays for ipaddress

    return is_loopback_host(host)


def _is_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdefABCDEF" for c in "".join(parts))


def _label(source: str, name: str) -> str:
    """``config.yaml: timeout``, ``METIS_ENV_TIMEOUT: timeout``, or ``timeout`` alone when the source is
    the setting's own name (config set): never "timeout: timeout must be ..."."""
    return name if source == name else f"{source}: {name}"


def save_setting(config_dir: str | os.PathLike, name: str, value: Any) -> None:
    """Set (or with None, remove) one setting in config.yaml, keeping the others."""
    if name not in SETTING_NAMES:
        raise UsageError(f"unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}")
    path = paths.config_file(config_dir)
    data = dict(read_config_file(path))
    if value is None:
        data.pop(name, None)
    else:
        data[name] = coerce_setting(name, value, name)
        if isinstance(data[name], float) and data[name].is_integer():
            data[name] = int(data[name])  # config.yaml says 30, as docs/config.md does
    atomic_write_text(path, dump_flat_yaml(data))


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Command-line options on top of the settings (None means not given)."""
    given = {k: coerce_setting(k, v, f"--{k.replace('_', '-')}") for k, v in overrides.items() if v is not None}
    invalid = tuple((name, message) for name, message in settings.invalid if name not in given)
    return settings._replace(**given, invalid=invalid)
