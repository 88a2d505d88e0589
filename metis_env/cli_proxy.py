"""``metis-env proxy start|stop|status``: the click face of the node broker (``commands/proxy.py``,
``metis_env/broker/``), kept out of ``cli.py`` so that each stays small."""

from __future__ import annotations

import click

from .cli_options import CONTEXT, complete_shell, endpoint_argument, model_option, settings_from
from .render import SHELLS


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
@click.pass_context
def proxy_start_command(ctx: click.Context, endpoint: str | None, model: str | None, shell: str | None,
                        foreground: bool, idle_exit: float | None) -> int:
    """Start this host's broker, or join the one that runs, and print the code that points clients
    at it: OPENAI_BASE_URL, OPENAI_API_BASE, its local key as OPENAI_API_KEY, MODEL_NAME, NO_PROXY.

    \b
    Example:
      eval "$(metis-env proxy start metis)"
      metis-env proxy start sophia --shell fish | source
      metis-env proxy start --foreground --idle-exit 86400
    """
    from .commands import proxy

    return proxy.start(settings_from(ctx), endpoint, model, shell, foreground, idle_exit)


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
