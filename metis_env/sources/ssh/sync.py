"""``metis-env sync``: one login fetches every endpoint file; the store is replaced whole or not at all.

Order matters: the lock and the store's writability are checked before connecting, so that a
single-use passcode is never spent on an update that could not be stored; every file is parsed and
validated before the store is touched.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from ...endpoint import Endpoint, parse_endpoint_file
from ...errors import EndpointFileError, RemoteFilesError, UsageError
from ...settings import Settings, require_sync_settings, save_setting
from ...store import Change, open_store
from .config import load_ssh_config, resolve_target
from .login import fetch_endpoint_files
from .openssh import fetch_with_openssh
from .remote import Prompter, RemoteFile

SSH_COMMAND_ENV = "METIS_ENV_SSH_COMMAND"
"""The OpenSSH client for --via openssh, split like a shell would (default ``ssh``), as GIT_SSH_COMMAND."""


@dataclass(frozen=True)
class SyncOptions:
    """The command line; None means "from the settings"."""

    user: str | None = None
    host: str | None = None
    port: int | None = None
    timeout: float | None = None
    via: str | None = None
    passcode_stdin: bool = False
    accept_new_host_key: bool = False
    dry_run: bool = False
    stdin: IO[str] | None = None
    ssh_config: tuple[str, ...] | None = None  # ssh config files instead of ~/.ssh/config and the system's (demo)


def run_sync(settings: Settings, options: SyncOptions, ui: Prompter, environ: Mapping[str, str] = os.environ) -> list[Change]:
    """Fetch, validate and store every endpoint file; return what changed (or, dry, would change)."""
    given = {"user": options.user, "host": options.host, "port": options.port, "transport": options.via}
    require_sync_settings(settings, [name for name, value in given.items() if value])
    host = options.host or settings.host
    port = options.port or settings.port
    timeout = options.timeout or settings.timeout
    via = options.via or settings.transport
    store = open_store(settings)
    with store.locked():
        if not options.dry_run:
            store.check_writable()
        if via == "openssh":
            user = options.user or settings.user
            files = fetch_with_openssh(
                host,
                settings.pattern,
                ui,
                user=user,
                port=port,
                timeout=timeout,
                accept_new_host_key=options.accept_new_host_key,
                ssh_command=shlex.split(environ.get(SSH_COMMAND_ENV, "")) or ["ssh"],
                passcode=read_passcode(options.stdin or sys.stdin) if options.passcode_stdin else None,
            )
            asked = False
        else:
            config = load_ssh_config() if options.ssh_config is None else load_ssh_config(options.ssh_config)
            # The user goes into the resolution: %r in UserKnownHostsFile and the like name it.
            target = resolve_target(host, port=port, user=options.user or settings.user, config=config)
            user = target.user
            asked = not user
            if asked:
                user = ask_user(ui, host)
                target = resolve_target(host, port=port, user=user, config=config)
            files = fetch_endpoint_files(
                target,
                user,
                settings.pattern,
                ui,
                timeout=timeout,
                accept_new_host_key=options.accept_new_host_key,
                passcode_stdin=(options.stdin or sys.stdin) if options.passcode_stdin else None,
                config=config,
            )
        login = f"{user}@{host}" if user else host
        endpoints = parse_remote_files(files, settings.pattern, login)
        if asked and not options.dry_run:
            save_setting(settings.config_dir, "user", user)
            ui.progress(f"remembered user {user} in config.yaml")
        if options.dry_run:
            return store.preview_replace_all(endpoints)
        return store.replace_all(endpoints, source=f"sync:{login}")


def read_passcode(stdin: IO[str]) -> str:
    """--passcode-stdin for the system ssh: one line, read before ssh starts."""
    line = stdin.readline().strip()
    if not line:
        raise UsageError("--passcode-stdin: stdin is empty; pipe one code, e.g. printf '%s\\n' 123456 |")
    return line


def ask_user(ui: Prompter, host: str) -> str:
    for _ in range(3):
        name = ui.ask(f"Your user name on {host}: ").strip()
        if name and not name.startswith("-") and not any(c.isspace() for c in name):
            return name
    raise UsageError(f"no user name for {host}; pass --user NAME (it is remembered in config.yaml)")


def parse_remote_files(files: list[RemoteFile], pattern: str, login: str) -> list[Endpoint]:
    """Every file parsed and validated, or an error naming the first bad one (nothing stored)."""
    if not files:
        raise RemoteFilesError(
            f"no files matching {pattern} in the home directory of {login}; nothing was changed "
            "(the pattern is the 'pattern' setting)"
        )
    endpoints = []
    seen: dict[str, str] = {}
    for remote in files:
        try:
            endpoint = parse_endpoint_file(remote.data, remote.name)
        except EndpointFileError as exc:
            raise EndpointFileError(f"on {login}: {exc}; nothing was changed") from exc
        # metis_endpoint_1.txt and metis_endpoint_01.txt are one endpoint to a person, not two.
        number = str(int(endpoint.id)) if endpoint.id.isdigit() else endpoint.id
        if number in seen:
            raise RemoteFilesError(
                f"on {login}: {seen[number]} and {remote.name} both name endpoint {number}; "
                "remove one of them; nothing was changed"
            )
        seen[number] = remote.name
        endpoints.append(endpoint)
    return endpoints




