"""``config set`` and ``config unset``: one setting in config.yaml, and the line that says what was done;
and the default endpoint that goes when ``forget`` removes its endpoint.

Example::

    config_set("default_endpoint", "2")    # metis-env: default_endpoint set to 2 in ~/.config/metis-env/config.yaml
"""

from __future__ import annotations

import os

from ..errors import NotFoundError
from ..paths import config_file
from ..settings import Settings, env_name, load_settings, read_config_file, save_setting
from ..store import open_store
from ..text import say, warn


def format_setting(value) -> str:
    """A setting as config list shows it, as YAML reads it: 30, not 30.0; true, not True; nothing for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def config_list(settings: Settings, store_option: str | None = None) -> None:
    """``config list``: every setting's effective value on stdout, the config dir first, each with where
    it comes from as a YAML comment (``store_option``: the --store given)."""
    import sys

    from ..settings import SETTING_NAMES

    sys.stdout.write(f"config_dir: {settings.config_dir}\n")
    sources = setting_sources(settings, store_option)
    for name in SETTING_NAMES:
        sys.stdout.write(f"{name}: {format_setting(getattr(settings, name))}  # {sources[name]}\n")


def setting_sources(settings: Settings, store_option: str | None = None) -> dict[str, str]:
    """Where each setting's effective value comes from, the way load_settings layers them."""
    import os

    from ..paths import config_file
    from ..settings import HELD_BACK, SETTING_NAMES, env_name, read_config_file

    in_file = read_config_file(config_file(settings.config_dir))
    invalid = dict(settings.invalid)
    sources = {}
    for name in SETTING_NAMES:
        if name == "store" and store_option:
            sources[name] = "--store"
        elif name in invalid:
            sources[name] = f"default; not valid, only {HELD_BACK[name]} refuses it: {invalid[name]}"
        elif os.environ.get(env_name(name)):
            sources[name] = env_name(name)
        elif name in in_file:
            sources[name] = "config.yaml"
        else:
            sources[name] = "default"
    return sources


def config_set(name: str, value: str) -> None:
    """Set ``name`` in config.yaml (a default endpoint must be stored), and say so on stderr."""
    settings = load_settings()
    if name == "default_endpoint":
        stored = open_store(settings).endpoints()  # the metadata only: no keyring
        if value not in stored:
            listed = f"stored: {', '.join(stored)}" if stored else "none is stored yet (metis-env sync)"
            raise NotFoundError(f"no endpoint {value!r} is stored, so it cannot be the default; {listed}")
    save_setting(settings.config_dir, name, value)
    shown = value if os.environ.get(env_name(name)) else format_setting(getattr(load_settings(), name))
    say(f"{name} set to {shown} in {config_file(settings.config_dir)}")
    if os.environ.get(env_name(name)):
        warn(f"{env_name(name)} is set in the environment and overrides config.yaml")


def config_unset(name: str) -> None:
    """Remove ``name`` from config.yaml (back to its default), and say so on stderr."""
    settings = load_settings()
    default = format_setting(getattr(Settings(config_dir=settings.config_dir), name)) or "none"
    if name not in read_config_file(config_file(settings.config_dir)):
        say(f"{name} is not set in {config_file(settings.config_dir)}; its default is {default}")
        return
    save_setting(settings.config_dir, name, None)
    say(f"{name} removed from {config_file(settings.config_dir)}; its default is {default}")


def drop_forgotten_default(settings: Settings, forgotten: set) -> None:
    """A default_endpoint that names a forgotten endpoint goes with it, so export does not point at nothing."""
    if settings.default_endpoint not in forgotten:
        return
    path = config_file(settings.config_dir)
    if os.environ.get(env_name("default_endpoint")):
        warn(f"{env_name('default_endpoint')}={settings.default_endpoint} names an endpoint that is forgotten now; unset it")
    elif read_config_file(path).get("default_endpoint") == settings.default_endpoint:
        save_setting(settings.config_dir, "default_endpoint", None)
        say(f"default_endpoint {settings.default_endpoint} removed from {path} (that endpoint is forgotten)")
