"""The click face's shared parts: the settings a command runs with, the options and arguments several
commands take, run's argument parsing (``RunCommand``), and their TAB completion (click's protocol; the candidates come from commands/hooks.py).
With cli.py and cli_groups.py, the only modules that import click.
"""

from __future__ import annotations

import os
import shlex

import click

from .commands import hooks
from .render import SHELLS
from .settings import STORES, Settings, load_settings, with_overrides


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
"""The click context settings of every group (cli.py, cli_groups.py)."""


def settings_from(ctx: click.Context, *, tighten: bool = True, **overrides) -> Settings:
    """Settings from config.yaml and METIS_ENV_*, then the group's and the command's options."""
    root = ctx.find_root()
    base = with_overrides(load_settings(tighten=tighten), store=root.params.get("store"))
    return with_overrides(base, **overrides)


def store_option(func, kept: str = "API keys"):
    return click.option(
        "--store",
        type=click.Choice(STORES),
        default=None,
        help=f"Where {kept} are kept: the OS keyring (default) or a 0600 file in the config dir (for headless machines).",
    )(func)


def token_store_option(func):
    return store_option(func, kept="Globus tokens")


def complete_endpoint(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on ENDPOINT: ids and models from endpoints.yaml alone (no keyring, no network)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(v, help=h) for v, h in hooks.endpoint_candidates(incomplete)]


def complete_endpoint_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on an argument that takes ids only (forget)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(v, help=h) for v, h in hooks.endpoint_candidates(incomplete, ids_only=True)]


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on --model: the models of the endpoint named so far (else the default one, else all)."""
    from click.shell_completion import CompletionItem, get_completion_class

    spec = ctx.params.get("endpoint")
    protocol = get_completion_class(os.environ.get("_METIS_ENV_COMPLETE", "").partition("_")[0])
    if spec is None and protocol is not None:
        # click stops parsing at an option still waiting for its value ("1 --model <TAB>") before it
        # has read ENDPOINT: read the words again without that option.
        args, _incomplete = protocol(ctx.find_root().command, {}, "metis-env", "_METIS_ENV_COMPLETE").get_completion_args()
        if ctx.info_name in args:
            rest = args[args.index(ctx.info_name) + 1 :]
            rest = rest[:-1] if rest and rest[-1] in param.opts else rest
            sub = ctx.command.make_context(ctx.info_name, rest, parent=ctx.parent, resilient_parsing=True)
            spec = sub.params.get("endpoint")
    return [CompletionItem(v, help=h) for v, h in hooks.model_candidates(incomplete, spec)]


def complete_shell(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on --shell: the output syntaxes."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(name) for name in SHELLS if name.startswith(incomplete.lower())]


def complete_tool(_ctx, _param, incomplete: str) -> list[str]:
    """TAB on configure's TOOL: the tools it knows."""
    from .configure import TOOLS

    return [tool for tool in TOOLS if tool.startswith(incomplete)]


def endpoint_argument(func):
    return click.argument("endpoint", required=False, shell_complete=complete_endpoint)(func)


def duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--min-ttl's value in seconds (90m, 12h, 2d, or seconds), or click's usage error."""
    from .errors import MetisEnvError
    from .settings import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value, "duration")
    except MetisEnvError:
        raise click.BadParameter("expected a duration such as 90m, 12h or 2d (or seconds)") from None


def min_ttl_option(func):
    return click.option(
        "--min-ttl", "min_ttl", metavar="DURATION", callback=duration_value,
        help="Refresh a gateway token now unless it has at least this much life left (90m, 12h, 2d; setting min_ttl).",
    )(func)


def model_option(func):
    return click.option("--model", "-m", metavar="NAME", shell_complete=complete_model, help="One of the endpoint's models (default: the configured one, else the first).")(func)


class RunCommand(click.Command):
    """`run`'s arguments are split at the first ``--``: options and ENDPOINT before it, the command
    after it, untouched (its own options included)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args and "--help" not in args[: args.index("--")] and "-h" not in args[: args.index("--")]:
            cut = args.index("--")
            ctx.meta["metis_env.run_argv"] = args[cut + 1 :]
            args = args[:cut]
        elif not ctx.resilient_parsing and not any(a in ("--help", "-h") for a in args):
            words = [i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in ("--model", "-m", "--min-ttl"))]
            if len(words) <= 1:  # `run 1`: an endpoint and no command at all
                raise click.UsageError("nothing to run: give the command after --: metis-env run [ENDPOINT] [--model NAME] -- COMMAND [ARGS]...", ctx)
            cut = words[1]  # the command starts at the second plain word: keep all of it, quoted
            ours, theirs = (" ".join(shlex.quote(a) for a in part) for part in (args[:cut], args[cut:]))
            raise click.UsageError(f"put -- before the command: metis-env run {ours} -- {theirs}", ctx)
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[--proxy] [ENDPOINT] [--model NAME] -- COMMAND [ARGS]...")
