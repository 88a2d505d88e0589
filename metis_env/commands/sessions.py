"""``sync``, ``login``, ``logout`` and ``configure``: the sources fetch, the store keeps, and these say
what changed (on stderr) and rewrite the tool configs ``configure`` wrote whose endpoint changed.

Example::

    sync(settings, options, prompter)      # endpoint 1: new ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from ..records import Change
from ..errors import UsageError
from ..settings import Settings, coerce_setting, env_name, read_config_file, save_setting
from ..store import open_store
from ..paths import config_file
from .endpoints import describe_changes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def echo_lines(lines: Iterable[str]) -> None:
    """Each line on stderr, as it comes (a long refresh shows its progress)."""
    for line in lines:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def report(changes: Sequence[Change], dry_run: bool = False) -> None:
    """One line per endpoint on stderr: what the update did to it."""
    echo_lines(describe_changes(changes, dry_run))


def refresh_tool_configs(settings: Settings) -> None:
    """After an update: rewrite the configs configure wrote whose endpoint changed (see configure)."""
    from ..configure import refresh_configured_tools

    echo_lines(refresh_configured_tools(open_store(settings), settings))


def sync_gateway(settings: Settings) -> None:
    """``sync --gateway``: the gateway's endpoint list again, with the stored token."""
    from ..sources.gateway.session import sync_gateway as fetch

    report(fetch(settings, open_store(settings)))
    refresh_tool_configs(settings)


def sync(settings: Settings, options: Any, prompter: Any, debug: bool, store_option: str | None = None) -> None:
    """``sync`` over SSH (``options``: sources.ssh.sync.SyncOptions)."""
    from ..sources import ssh
    from ..sources.ssh.sync import run_sync

    ssh.set_debug_logging(debug)
    changes = run_sync(settings, options, prompter)
    report(changes, options.dry_run)
    if not options.dry_run:
        refresh_tool_configs(settings)
        remember_user(settings, options.user)
        remember_store(settings, store_option)


def remember_user(settings: Settings, user: str | None) -> None:
    """--user is remembered in config.yaml after a sync that worked, as a prompted name is, unless a
    user is configured already (config.yaml or METIS_ENV_USER). Quietly: the sync's report is
    the last thing on stderr, and `config list` shows it."""
    if not user or os.environ.get(env_name("user")) or read_config_file(config_file(settings.config_dir)).get("user"):
        return
    save_setting(settings.config_dir, "user", user)


def remember_store(settings: Settings, given: str | None) -> None:
    """A --store that wrote keys (import, sync, login; ``given``) is remembered in config.yaml, as --user
    is: the next export must look where the keys went. Said on stderr, since it changes later commands."""
    if not given or os.environ.get(env_name("store")):
        return
    path = config_file(settings.config_dir)
    if read_config_file(path).get("store", "keyring") == given:
        return
    save_setting(settings.config_dir, "store", given)
    sys.stderr.write(f"metis-env: store: {given} saved in {path} (later commands use it; metis-env config set store ... changes it)\n")


def login(settings: Settings, no_browser: bool, force: bool, from_alcf_tokens: bool, service_account: str | None = None,
          secret_stdin: bool = False, store_option: str | None = None) -> None:
    """``login``: Globus (a person's login, alcf-tokens' adopted, or a service account's), then the
    gateway's endpoints."""
    from ..sources.gateway import session

    if service_account is None:
        if secret_stdin:
            raise UsageError("--secret-stdin goes with --service-account CLIENT_ID")
        changes = session.login(settings, open_store(settings), no_browser=no_browser, force=force, from_alcf_tokens=from_alcf_tokens)
    else:
        if from_alcf_tokens:
            raise UsageError("--service-account and --from-alcf-tokens are two different logins; give one")
        client_id = coerce_setting("globus_client_id", service_account, "--service-account")
        secret = session.read_client_secret(secret_stdin, client_id)
        changes = session.login_service_account(settings, open_store(settings), client_id, secret, force=force)
    report(changes)
    remember_store(settings, store_option)
    refresh_tool_configs(settings)


def logout(settings: Settings) -> None:
    """``logout``: revoke and forget the Globus tokens and the gateway endpoints."""
    from ..sources.gateway.session import logout as log_out

    report(log_out(settings, open_store(settings)))


def configure(settings: Settings, tool: str, spec: str | None, model: str | None, dry_run: bool, proxy: bool | None = None) -> None:
    """``configure TOOL``: write the tool's own config for an endpoint (see configure/), say what was done."""
    from .. import configure as tools

    outcome = tools.configure_tool(open_store(settings), settings, tool, spec, model, dry_run, proxy=proxy)
    echo_lines(tools.report(outcome, dry_run))
