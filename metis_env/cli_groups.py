"""Two command groups' click faces, kept out of ``cli.py`` so that each stays small: ``metis-env proxy
start|stop|status`` (the node broker: ``commands/proxy.py``, ``metis_env/broker/``) ``metis-env store
move`` (``commands/store_move.py``) and ``metis-env kernel install`` (``commands/kernel.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from .cli_options import CONTEXT, complete_endpoint_id, complete_shell, endpoint_argument, min_ttl_option, model_option, settings_from
from .render import SHELLS
from .settings import STORES


@click.group("proxy", context_settings=CONTEXT)
def proxy_group() -> None:
    """The node broker: one loopback proxy per user per host that holds the real keys for every job,
    shell and notebook there (gateway tokens refreshed, requests paced under the rate limit)."""


@proxy_group.command("start")
@endpoint_argument
@model_option
@click.option("--shell", "-s", "shell", metavar="|".join(SHELLS), shell_complete=complete_shell, help="Output syntax (default: code that bash, zsh, sh and fish all read alike).")
@click.option("--foreground", is_flag=True, help="Be the broker in this process until stopped (systemd, Jupyter servers, services).")
@click.option("--idle-exit", type=click.FloatRange(min=0.0, min_open=True), metavar="SECONDS", help="Exit after this long with no client (default 600).")
@min_ttl_option
@click.pass_context
def proxy_start_command(ctx: click.Context, endpoint: str | None, model: str | None, shell: str | None,
                        foreground: bool, idle_exit: float | None, min_ttl: float | None) -> int:
    """Start this host's broker, or join the one that runs, and print the code that points clients
    at it: OPENAI_BASE_URL, OPENAI_API_BASE, its local key as OPENAI_API_KEY, MODEL_NAME, NO_PROXY.

    \b
    Example:
      eval "$(metis-env proxy start metis)"
      metis-env proxy start sophia --shell fish | source
      metis-env proxy start --foreground --idle-exit 86400
      metis-env proxy start metis --min-ttl 30h     # a token good for 30 h now; refreshed 30 h before expiry
    """
    from .commands import proxy

    return proxy.start(settings_from(ctx, min_ttl=min_ttl), endpoint, model, shell, foreground, idle_exit)


@proxy_group.command("stop")
def proxy_stop_command() -> int:
    """Stop this host's broker (clients then get connection refused).

    \b
    Example:
      metis-env proxy stop
    """
    from .commands import proxy

    return proxy.stop()


@proxy_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def proxy_status_command(as_json: bool) -> int:
    """Show this host's broker: uptime, clients, requests, token refreshes, upstream 429s absorbed,
    queue length and the rate it sends at.

    \b
    Example:
      metis-env proxy status --json
    """
    from .commands import proxy

    return proxy.status(as_json)


@click.group("store", context_settings=CONTEXT)
def store_group() -> None:
    """Where the keys are kept: the OS keyring or the file store (keys.json)."""


@store_group.command("move")
@click.argument("endpoints", nargs=-1, metavar="[ENDPOINT...]", shell_complete=complete_endpoint_id)
@click.option("--to", "to", type=click.Choice(STORES), required=True, help="The store to move the keys into.")
@click.pass_context
def store_move_command(ctx: click.Context, endpoints: Sequence[str], to: str) -> None:
    """Move keys (default: every endpoint's, and the gateway's tokens) into the other store.

    For a laptop about to be used over ssh, where no keyring answers: move the keys into the file
    store while the keyring is unlocked. All or nothing; the old entries are deleted only after the
    new ones are in place. A gateway endpoint takes the login's tokens, so all gateway endpoints move
    together. Later syncs, imports and logins write where the store setting says (config set store).

    \b
    Example:
      metis-env store move --to file
      metis-env store move --to keyring 1 2
    """
    from .commands.store_move import describe_moves, move_keys
    from .store import open_store

    settings = settings_from(ctx)
    for line in describe_moves(move_keys(open_store(settings), to, list(endpoints)), to):
        click.echo(line, err=True)


@click.group("kernel", context_settings=CONTEXT)
def kernel_group() -> None:
    """Jupyter kernels that stay logged in: they run under metis-env run --proxy."""


@kernel_group.command("install")
@endpoint_argument
@click.option("--name", help="The kernel's name (default: metis-env-ENDPOINT, or metis-env).")
@click.option("--display-name", help="The name Jupyter shows (default: Python 3 (metis-env ENDPOINT)).")
@click.option("--user", "sys_prefix", flag_value=False, default=False, help="Install for this user (the default).")
@click.option("--sys-prefix", "sys_prefix", flag_value=True, help="Install into the kernel Python's sys.prefix (a venv or conda env of your own).")
@click.option("--python", metavar="PATH", help="The Python the kernel runs, with ipykernel (default: metis-env's own).")
@click.pass_context
def kernel_install_command(ctx: click.Context, endpoint: str | None, name: str | None, display_name: str | None,
                           sys_prefix: bool, python: str | None) -> None:
    """Write a Jupyter kernelspec whose kernel stays logged in for as long as it runs.

    The kernel starts under metis-env run --proxy ENDPOINT: it gets OPENAI_BASE_URL (a proxy on
    127.0.0.1), a local key and MODEL_NAME, and the real key or gateway token, refreshed before it
    expires, stays in metis-env. kernel.json holds no key or token.

    \b
    Example:
      metis-env kernel install metis
      metis-env kernel install sophia --name sophia --display-name "Python (Sophia)" --sys-prefix
    """
    from .commands.kernel import install

    install(settings_from(ctx), endpoint, name, display_name, sys_prefix, python)
