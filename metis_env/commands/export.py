"""``export``, ``get`` and ``run``: the hot path's commands, as plain functions over the store and
settings. The click CLI (``cli.py``) and the fast path (``main.py``) both call these, so that they
cannot drift apart. Standard library only at import (no click, no keyring, no yaml): they run in every
new shell.

Example::

    export("1", None, None, unset=False)        # prints the code eval reads
"""

from __future__ import annotations

import os
import sys

from .. import render
from ..credentials import current_key, environment_for, select_with_key
from ..errors import CommandNotFoundError, MetisEnvError, UsageError
from ..files import FILE_MODE, replace_file
from ..credentials import choose_endpoint, pick_model
from ..selection import Selection
from ..settings import Settings, load_settings
from ..store import Store, open_store
from ..text import warn
from ..variables import every_exported_name

# annotations only (PEP 563): `collections` costs every shell start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def export(spec: str | None, model: str | None, shell: str | None, unset: bool, settings: Settings | None = None,
                   output: str | None = None) -> int:
    """``metis-env export``: code on stdout and nothing else; on failure only the shell's ``false``.
    With ``output``, the code goes to that file instead, mode 0600, written atomically."""
    # Without --shell the code is the one form every POSIX shell and fish read alike, whatever $SHELL
    # says: the shell that evaluates it is often not the login shell (a bash script run from fish).
    shell_name = render.DEFAULT_SHELL if shell is None else None
    try:
        shell_name = shell_name or render.normalize_shell(shell)
        settings = settings or load_settings()
        code, warnings = export_code(open_store(settings), settings, spec, model, shell_name, unset, portable=shell is None)
    except BaseException:  # any failure, a bug included, must make the user's eval fail too
        sys.stdout.write(render.failure_code(shell_name or render.DEFAULT_SHELL))
        raise
    for warning in warnings:
        warn(warning)
    if output is not None:
        try:
            replace_file(output, code, FILE_MODE)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from None
        sys.stderr.write(f"metis-env: wrote {output} (mode 600); keep it out of version control\n")
        return 0
    sys.stdout.write(code)
    return 0


def get(what: str, spec: str | None, settings: Settings | None = None, as_json: bool = False, proxy: bool = False,
        proxy_port: int | None = None) -> int:
    """``metis-env get``: one raw value on stdout; with ``as_json`` (key only): ``{"key": ...,
    "expires_at": ...}`` on one line, ``expires_at`` the token's expiry (ISO 8601 UTC) or null for an
    endpoint file's key. ``proxy``: key and url are this host's broker's (broker/client.py): its
    local key (the broker joined, or started) and its stable address; ``proxy_port`` (implies
    ``proxy``): the broker must listen at that port, the one a tool's config names."""
    settings = settings or load_settings()
    proxy = proxy or proxy_port is not None
    if not as_json:
        value = broker_value(open_store(settings), settings, what, spec, proxy_port) if proxy else None
        sys.stdout.write((value or get_value(open_store(settings), settings, what, spec)) + "\n")
        return 0
    if what != "key":
        raise UsageError(f"--json applies to get key only; get {what} prints one plain value")
    import json

    key, expires_at = (broker_value(open_store(settings), settings, what, spec, proxy_port), None) if proxy else get_key(open_store(settings), settings, spec)
    sys.stdout.write(json.dumps({"key": key, "expires_at": expires_at}, ensure_ascii=False) + "\n")
    return 0


def run(spec: str | None, model: str | None, argv: Sequence[str], settings: Settings | None = None, proxy: bool = False) -> int:
    """``metis-env run``: argv with the variables (``--proxy``: through a loopback proxy, proxy.py)."""
    settings = settings or load_settings()
    if proxy:
        from ..proxy import run_with_proxy  # http.server and threading: only --proxy pays for them

        return run_with_proxy(open_store(settings), settings, spec, model, argv)
    return exec_with_key(open_store(settings), settings, spec, model, argv)


def export_code(store: Store, settings: Settings, spec: str | None, model: str | None, shell: str, unset: bool,
                portable: bool = False) -> tuple[str, tuple[str, ...]]:
    """The code export prints, and the warnings it prints on stderr; ``portable``: no --shell was
    named, so refuse what fish could not read the same way (render.check_portable)."""
    if unset:  # the same names whatever the endpoint, so ENDPOINT and --model are accepted and ignored
        return render.render_unset(shell, every_exported_name(settings.aliases)), ()
    selection, key = select_with_key(store, spec, model, settings)
    env = environment_for(selection, key, settings)
    if portable:
        render.check_portable(env)
    others = [name for name in every_exported_name(settings.aliases) if name not in env]  # left by an earlier export
    return render.render_switch(shell, env, others, portable), selection.warnings


GET_FIELDS = ("key", "url", "models", "model")


def get_value(store: Store, settings: Settings, what: str, spec: str | None) -> str:
    if what not in GET_FIELDS:
        raise UsageError(f"metis-env get takes one of: {', '.join(GET_FIELDS)}")
    endpoint, named_model = choose_endpoint(store.endpoints(), spec, settings, f"get {what}")
    if what == "model":  # the one export would put in MODEL_NAME
        return pick_model(endpoint, named_model, settings)[0]
    if what == "url":
        return endpoint.base_url
    if what == "models":
        return ",".join(endpoint.models)
    return get_key(store, settings, spec)[0]


def broker_value(store: Store, settings: Settings, what: str, spec: str | None, port: int | None = None) -> str | None:
    """``get key|url --proxy``: the broker's local key (it stays up while the parent, the tool that
    asked, runs; it must listen at ``port`` when given) or its URL for the endpoint; None for models
    and model (the same either way)."""
    if what not in ("key", "url"):
        return None
    endpoint, _model = choose_endpoint(store.endpoints(), spec, settings, f"get {what}")
    from ..broker import client  # only --proxy pays for the broker's modules

    if what == "url":
        url = client.broker_url(settings, endpoint.id)
        return url if port is None else url.replace(f":{client.stable_port(settings)}/", f":{port}/", 1)
    return client.local_key(settings, endpoint.id, client_pid=os.getppid(), port=port)


def get_key(store: Store, settings: Settings, spec: str | None) -> tuple[str, str | None]:
    """The endpoint's current key and when it expires (None for an endpoint file's key)."""
    endpoint, _model = choose_endpoint(store.endpoints(), spec, settings, "get key")
    selection, key = current_key(store, Selection(endpoint, ""), settings)
    for warning in selection.warnings:
        warn(warning)
    return key, selection.expires_at


def exec_with_key(store: Store, settings: Settings, spec: str | None, model: str | None, argv: Sequence[str]) -> int:
    """Run argv with the variables in its environment, replacing this process where the OS allows."""
    if not argv:
        raise UsageError("nothing to run; usage: metis-env run [ENDPOINT] [--model NAME] -- COMMAND [ARGS...]")
    selection, key = select_with_key(store, spec, model, settings, "run")
    for warning in selection.warnings:
        warn(warning)
    ours = environment_for(selection, key, settings)
    # An earlier export of another endpoint must not reach the command (its key under SAMBANOVA_API_KEY).
    others = set(every_exported_name(settings.aliases)) - set(ours)
    env = {name: value for name, value in os.environ.items() if name not in others}
    env.update(ours)
    sys.stdout.flush()
    sys.stderr.flush()
    from ..coredump import restore_core_limit

    restore_core_limit()  # the user's program keeps the core limit it would have had without us
    if os.name == "posix":
        try:
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            raise CommandNotFoundError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    import subprocess

    try:
        return subprocess.call(list(argv), env=env)
    except OSError as exc:
        raise CommandNotFoundError(f"cannot run {argv[0]!r}: {exc.strerror}") from None


def shell_named(command: Sequence[str]) -> str | None:
    """The --shell an export command line names, if it names a known one (so that a refused one still
    prints that shell's ``false``)."""
    for i, token in enumerate(command):
        value = None
        if token in ("--shell", "-s") and i + 1 < len(command):
            value = command[i + 1]
        elif token.startswith("--shell="):
            value = token.split("=", 1)[1]
        if value is not None:
            try:
                return render.normalize_shell(value)
            except MetisEnvError:
                return None
    return None
