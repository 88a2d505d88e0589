"""The click commands: the only module that imports click; each command a few lines over actions.

The hot commands' common forms never get here (see main.py); this module serves everything else
and every ``--help``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence

import click

from . import __version__, actions, hooks
from .errors import MetisEnvError, UsageError
from .coredump import no_core_dumps
from .reporting import debug_requested, report_error, split_global_options, usage_error_line
from .render import DEFAULT_SHELL, SHELLS, failure_code, normalize_shell
from .settings import SETTING_NAMES, STORES, Settings, coerce_setting, env_name, load_settings, save_setting, with_overrides
from .store import open_store

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def settings_from(ctx: click.Context, **overrides) -> Settings:
    """Settings from config.yaml and METIS_ENV_*, then the group's and the command's options."""
    root = ctx.find_root()
    base = with_overrides(load_settings(), store=root.params.get("store"))
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

    from .hooks import endpoint_candidates

    return [CompletionItem(v, help=h) for v, h in endpoint_candidates(incomplete)]


def complete_endpoint_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on an argument that takes ids only (forget)."""
    from click.shell_completion import CompletionItem

    from .hooks import endpoint_candidates

    return [CompletionItem(v, help=h) for v, h in endpoint_candidates(incomplete, ids_only=True)]


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on --model: the models of the endpoint named so far (else the default one, else all)."""
    import os

    from click.shell_completion import CompletionItem, get_completion_class

    from .hooks import model_candidates

    spec = ctx.params.get("endpoint")
    protocol = get_completion_class(os.environ.get("_METIS_ENV_COMPLETE", "").partition("_")[0])
    if spec is None and protocol is not None:
        # click stops parsing at an option still waiting for its value ("1 --model <TAB>") before it
        # has read ENDPOINT: read the words again without that option.
        args, _incomplete = protocol(cli, {}, "metis-env", "_METIS_ENV_COMPLETE").get_completion_args()
        if ctx.info_name in args:
            rest = args[args.index(ctx.info_name) + 1 :]
            rest = rest[:-1] if rest and rest[-1] in param.opts else rest
            sub = ctx.command.make_context(ctx.info_name, rest, parent=ctx.parent, resilient_parsing=True)
            spec = sub.params.get("endpoint")
    return [CompletionItem(v, help=h) for v, h in model_candidates(incomplete, spec)]


def complete_shell(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """TAB on --shell: the output syntaxes."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(name) for name in SHELLS if name.startswith(incomplete.lower())]


def endpoint_argument(func):
    return click.argument("endpoint", required=False, shell_complete=complete_endpoint)(func)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .settings import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value, "duration")
    except MetisEnvError:
        raise click.BadParameter("expected a duration such as 90m, 12h or 2d (or seconds)") from None


def min_ttl_option(func):
    return click.option(
        "--min-ttl", "min_ttl", metavar="DURATION", callback=_duration,
        help="Refresh a gateway token now unless it has at least this much life left (90m, 12h, 2d; setting min_ttl).",
    )(func)


def model_option(func):
    return click.option("--model", "-m", metavar="NAME", shell_complete=complete_model, help="One of the endpoint's models (default: the configured one, else the first).")(func)


@click.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show tracebacks (never secrets) for errors.")
@store_option
@click.version_option(__version__, prog_name="metis-env")
def cli(debug: bool, store: str | None) -> None:
    """Credentials for ALCF's Metis inference endpoints: sync once, use from any shell.

    \b
    metis-env sync                     # one MobilePASS+ login fetches every endpoint file
    eval "$(metis-env export 1)"       # OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME in this shell
    metis-env run 1 -- python chat.py  # or only for one command
    """


@cli.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE... | -")
@click.option("--id", "endpoint_id", metavar="ID", help="The endpoint id (default: N of metis_endpoint_N.txt); needed with '-' and for a file named otherwise.")
@store_option
@click.pass_context
def import_command(ctx: click.Context, files: Sequence[str], endpoint_id: str | None, store: str | None) -> None:
    """Store endpoint files copied by hand, or pasted on stdin with '-'.

    metis_endpoint_N.txt becomes endpoint N. All files are checked before anything is stored; the
    key goes to the store (the OS keyring, or keys.json with --store file), the rest to endpoints.yaml.

    \b
    Example:
      metis-env import ~/Downloads/metis_endpoint_1.txt ~/Downloads/metis_endpoint_2.txt
      metis-env import --id 1 - < metis_endpoint_1.txt
    """
    settings = settings_from(ctx, store=store)
    changes = actions.import_files(open_store(settings), list(files), endpoint_id)
    for line in actions.describe_changes(changes):
        click.echo(line, err=True)
    _refresh_tool_configs(settings)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema version 1, see README).")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Show the stored endpoints, their models, the age of the data and the key, masked.

    \b
    Example:
      metis-env list
      metis-env list --json | jq -r '.endpoints[].id'
    """
    settings = settings_from(ctx)
    rows = actions.list_rows(open_store(settings), settings)
    if as_json:
        click.echo(json.dumps({"version": 1, "endpoints": rows}, indent=2, ensure_ascii=False))
    elif rows:
        click.echo(actions.format_list(rows), nl=False)
    else:
        click.echo("no endpoints stored yet; run metis-env sync (or metis-env import FILE)", err=True)


@cli.command("export")
@endpoint_argument
@model_option
@click.option("--shell", "-s", "shell", metavar="|".join(SHELLS), shell_complete=complete_shell, help="Output syntax (default: code that bash, zsh, sh and fish all read alike).")
@click.option("--unset", is_flag=True, help="Print the code that removes the same variables.")
@click.option("--output", "-o", metavar="FILE", help="Write the code to FILE (mode 0600, atomically) instead of stdout, e.g. a .env file.")
@min_ttl_option
@click.pass_context
def export_command(ctx: click.Context, endpoint: str | None, model: str | None, shell: str | None, unset: bool,
                   output: str | None, min_ttl: float | None) -> int:
    """Print shell code that sets OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME and the names other
    clients read (OPENAI_API_BASE, SAMBANOVA_API_KEY with SAMBANOVA_API_BASE, ...; see the README).

    ENDPOINT is the number (1), the file stem (metis_endpoint_1) or a model name that one endpoint
    serves; by default the configured default endpoint, else the only one. On failure stdout holds
    only 'false', so that eval fails too.

    \b
    Example:
      eval "$(metis-env export 1)"
      metis-env export 2 --model Llama-4-Maverick-17B-128E-Instruct --shell fish | source
      eval "$(metis-env export --unset)"
      metis-env export 1 --shell dotenv --output .env
      eval "$(metis-env export metis --min-ttl 40h)"   # a job of 40 h: no refresh needed
    """
    settings = settings_from(ctx, min_ttl=min_ttl)
    return actions.export_command(endpoint, model, shell, unset, settings, output)


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


@cli.command("run", cls=RunCommand)
@endpoint_argument
@model_option
@click.option("--proxy", is_flag=True, help="Give the command a loopback proxy and a local key instead of the real key (long jobs: the token is refreshed).")
@min_ttl_option
@click.pass_context
def run_command(ctx: click.Context, endpoint: str | None, model: str | None, proxy: bool, min_ttl: float | None) -> int:
    """Run a command with the endpoint's variables in its environment (never in its arguments).

    The command replaces metis-env, so its signals and exit status pass straight through. With
    --proxy, metis-env stays the parent: the command gets OPENAI_BASE_URL = this host's broker on
    127.0.0.1 (joined, or started when none runs: see metis-env proxy) and OPENAI_API_KEY = its local
    key; the broker sends the real key (a gateway token refreshed before it expires), routes each
    request by its model and paces requests under the gateway's rate limit. Signals are forwarded and
    the exit status passed on.

    \b
    Example:
      metis-env run 1 -- python chat_completion.py "What is an extinction vortex?"
      metis-env run 2 --model Llama-3.3-70B-Instruct -- ./my_agent.sh
      metis-env run --proxy metis -- python long_job.py      # runs for days; the token is refreshed
    """
    settings = settings_from(ctx, min_ttl=min_ttl)
    return actions.run_subcommand(endpoint, model, ctx.meta.get("metis_env.run_argv", []), settings, proxy=proxy)


@cli.group("proxy", context_settings=CONTEXT)
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


@cli.command("get")
@click.argument("what", type=click.Choice(actions.GET_FIELDS))
@endpoint_argument
@min_ttl_option
@click.option("--json", "as_json", is_flag=True, help='With key: {"key": ..., "expires_at": ...} (null for endpoint files).')
@click.pass_context
def get_command(ctx: click.Context, what: str, endpoint: str | None, min_ttl: float | None, as_json: bool) -> int:
    """Print one raw value (key, url or models) of an endpoint, for other tools' credential helpers.

    \b
    Example:
      url=$(metis-env get url 1)   # with or without a trailing /
      curl -H "Authorization: Bearer $(metis-env get key 1)" "${url%/}/models"
    """
    return actions.get_command(what, endpoint, settings_from(ctx, min_ttl=min_ttl), as_json)


@cli.command("check")
@endpoint_argument
@click.option("--json", "as_json", is_flag=True, help="Print each result as one JSON object per line (keys: see README).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, metavar="SECONDS", help="Limit for the whole check, every request together.")
@click.pass_context
def check_command(ctx: click.Context, endpoint: str | None, as_json: bool, timeout: float) -> None:
    """Prove the stored key works: ask the endpoint for its models and report which are served.
    Without ENDPOINT, every stored endpoint is checked (all at once).

    A gateway endpoint (one per cluster the gateway lists) is asked who you are (whoami) and which
    models are live ({cluster}/jobs); the model export would pick must be live.

    Exit status (the first failed endpoint's): 0 ok, 12 key or token refused (sync, or login), 13
    unreachable, 14 timeout, 15 bad answer; gateway endpoints also 19 re-authentication required,
    20 bad gateway answer, 21 not live or under maintenance, 23 rate-limited.

    \b
    Example:
      metis-env check 1
      metis-env check --json | jq .status
    """
    from .check_report import check_all, raise_for_results  # urllib and ssl: ~20 ms only this command needs
    from .status import check_targets, remember

    settings = settings_from(ctx)
    store = open_store(settings)
    specs = [endpoint] if endpoint is not None else list(store.endpoints()) or [None]
    results = check_all(check_targets(store, settings, specs), timeout)
    remember(settings, results, "check")
    for result in results:
        click.echo(result.to_json() if as_json else result.summary())
    raise_for_results(results, at_terminal=not as_json and sys.stdout.isatty())


@cli.command("status")
@endpoint_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema version 1, see README).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, metavar="SECONDS", help="Limit for each connect and read.")
@click.pass_context
def status_command(ctx: click.Context, endpoint: str | None, as_json: bool, timeout: float) -> None:
    """Say which models are live, starting, queued or offline (every stored endpoint by default).

    Gateway endpoints are asked {cluster}/jobs; an endpoint file's endpoint is checked as check
    does (served: live, not served: offline). export and run warn, from what status saw in the
    last minutes, when the model they give is not live.

    \b
    Example:
      metis-env status metis
      metis-env status --json | jq '.endpoints[].models'
    """
    from .status import format_table, raise_for_report, run_status, to_json

    settings = settings_from(ctx)
    report = run_status(open_store(settings), settings, endpoint, timeout)
    click.echo(to_json(report.results) if as_json else format_table(report.results), nl=as_json)
    raise_for_report(report)


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON (schema version 1, see README).")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Say why metis-env does or does not work here: keyring, config files, SSH, data age, hooks.

    Each finding is one line; a warning or a problem ends with its fix. Exit status 17 when
    something is broken, 0 otherwise (warnings alone included).

    \b
    Example:
      metis-env doctor
      metis-env doctor --json | jq -r '.findings[] | select(.status != "ok") | .fix'
    """
    from . import doctor, files

    files.TIGHTEN_ON_READ = False  # doctor reports a loose config dir, it does not change it
    settings, settings_findings = doctor.load_settings_or_defaults(lambda: settings_from(ctx))
    findings = doctor.run_checks(settings, settings_findings=settings_findings)
    click.echo(doctor.format_json(findings) if as_json else doctor.format_report(findings), nl=False)
    doctor.raise_for_findings(findings)


@cli.command("demo")
@click.option("--yes", "-y", is_flag=True, help="Type the demo passcode, accept the demo host key and approve the demo Globus login without asking (CI).")
@click.option("--serve", is_flag=True, help="Only start the demo Globus login, gateway and endpoints, until Ctrl-C, to try login, status and export by hand.")
def demo_command(yes: bool, serve: bool) -> int:
    """See the whole flow work on this machine, with no ALCF account: sync, login, status, export.

    A login node (SSH with one-time codes, SFTP), two OpenAI-compatible endpoints, a Globus login
    and an ALCF gateway run on 127.0.0.1 inside this process; the real sync and the real
    login --no-browser store their keys and tokens in a throwaway config dir. Your own config,
    keyring and ~/.ssh are never touched; everything is deleted at the end.

    \b
    Example:
      metis-env demo          # you type the one-time code it shows
      metis-env demo --yes    # no questions (CI), a few seconds
      metis-env demo --serve  # then, in another shell: . /tmp/metis-env-demo-.../env.sh; metis-env login
    """
    if serve:
        from .demo_serve import serve_demo

        return serve_demo(sys.stderr)
    from .demo import run_demo

    return run_demo(yes=yes)


@cli.command("forget")
@click.argument("endpoints", nargs=-1, metavar="ENDPOINT...", shell_complete=complete_endpoint_id)
@click.option("--all", "forget_all", is_flag=True, help="Forget every stored endpoint.")
@click.pass_context
def forget_command(ctx: click.Context, endpoints: Sequence[str], forget_all: bool) -> None:
    """Delete endpoints' keys from the store and their metadata.

    \b
    Example:
      metis-env forget 2
      metis-env forget --all
    """
    if bool(endpoints) == forget_all:
        raise click.UsageError("name the endpoints to forget, or give --all")
    settings = settings_from(ctx)
    changes = open_store(settings).forget(None if forget_all else list(endpoints))
    for line in actions.describe_changes(changes):
        click.echo(line, err=True)
    _drop_forgotten_default(settings, {c.id for c in changes if c.status == "removed"})


def _drop_forgotten_default(settings: Settings, forgotten: set) -> None:
    """A default_endpoint that names a forgotten endpoint goes with it, so export does not point at nothing."""
    from .settings import read_config_file

    if settings.default_endpoint not in forgotten:
        return
    if os.environ.get(env_name("default_endpoint")):
        actions.warn(f"{env_name('default_endpoint')}={settings.default_endpoint} names an endpoint that is forgotten now; unset it")
    elif read_config_file(config_path(settings)).get("default_endpoint") == settings.default_endpoint:
        save_setting(settings.config_dir, "default_endpoint", None)
        click.echo(f"metis-env: default_endpoint {settings.default_endpoint} removed from {config_path(settings)} (that endpoint is forgotten)", err=True)


@cli.group("config", context_settings=CONTEXT)
def config_group() -> None:
    """Read and change settings in config.yaml (each also overridable by METIS_ENV_<NAME>).

    \b
    Example:
      metis-env config set default_endpoint 1
      metis-env config list
    """


@config_group.command("list")
@click.pass_context
def config_list(ctx: click.Context) -> None:
    """Show every setting's effective value."""
    settings = settings_from(ctx)
    click.echo(f"config_dir: {settings.config_dir}")
    for name in SETTING_NAMES:
        click.echo(f"{name}: {format_setting(getattr(settings, name))}")


@config_group.command("get")
@click.argument("name", type=click.Choice(SETTING_NAMES), metavar="NAME")
@click.pass_context
def config_get(ctx: click.Context, name: str) -> None:
    """Print one setting's effective value."""
    click.echo(format_setting(getattr(settings_from(ctx), name)))


@config_group.command("set")
@click.argument("name", type=click.Choice(SETTING_NAMES), metavar="NAME")
@click.argument("value")
def config_set(name: str, value: str) -> None:
    """Set a setting in config.yaml, and say what was written where.

    \b
    Example:
      metis-env config set default_endpoint 2
      metis-env config set stale_after_days 14
    """
    settings = load_settings()
    if name == "default_endpoint":
        stored = open_store(settings).endpoints()  # the metadata only: no keyring
        if value not in stored:
            from .errors import NotFoundError

            listed = f"stored: {', '.join(stored)}" if stored else "none is stored yet (metis-env sync)"
            raise NotFoundError(f"no endpoint {value!r} is stored, so it cannot be the default; {listed}")
    save_setting(settings.config_dir, name, value)
    shown = value if os.environ.get(env_name(name)) else format_setting(getattr(load_settings(), name))
    click.echo(f"metis-env: {name} set to {shown} in {config_path(settings)}", err=True)
    if os.environ.get(env_name(name)):
        actions.warn(f"{env_name(name)} is set in the environment and overrides config.yaml")


@config_group.command("unset")
@click.argument("name", type=click.Choice(SETTING_NAMES), metavar="NAME")
def config_unset(name: str) -> None:
    """Remove a setting from config.yaml (back to its default)."""
    from .settings import read_config_file

    settings = load_settings()
    default = format_setting(getattr(Settings(config_dir=settings.config_dir), name)) or "none"
    if name not in read_config_file(config_path(settings)):
        click.echo(f"metis-env: {name} is not set in {config_path(settings)}; its default is {default}", err=True)
        return
    save_setting(settings.config_dir, name, None)
    click.echo(f"metis-env: {name} removed from {config_path(settings)}; its default is {default}", err=True)


def format_setting(value) -> str:
    """A setting as config list shows it: 30, not 30.0; nothing for None."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def config_path(settings: Settings) -> str:
    from .paths import config_file

    return str(config_file(settings.config_dir))


def complete_tool(_ctx, _param, incomplete: str) -> list[str]:
    from .configure import TOOLS

    return [tool for tool in TOOLS if tool.startswith(incomplete)]


@cli.command("configure")
@click.argument("tool", metavar="TOOL", shell_complete=complete_tool)
@endpoint_argument
@model_option
@click.option("--dry-run", is_flag=True, help="Show the diff only; write nothing.")
@click.pass_context
def configure_command(ctx: click.Context, tool: str, endpoint: str | None, model: str | None, dry_run: bool) -> None:
    """Write an AI tool's own config for an endpoint: aider, claude, codex, llm, opencode or pi.

    Merges metis-env's entries into the tool's config file (where the tool looks, its own variables
    honoured), keeps everything else, shows a unified diff on stderr first, keeps a backup
    (FILE.metis-env.bak) and writes no key: the config names `metis-env get key ENDPOINT` or the
    variables `metis-env run` sets. Running it again changes nothing.

    \b
    Example:
      metis-env configure opencode 1 --dry-run
      metis-env configure llm 2 --model Llama-3.3-70B-Instruct
    """
    from . import configure

    settings = settings_from(ctx)
    outcome = configure.configure_tool(open_store(settings), settings, tool, endpoint, model, dry_run)
    for line in configure.report(outcome, dry_run):
        click.echo(line, err=True)


def _refresh_tool_configs(settings: Settings) -> None:
    """After an update: rewrite the configs configure wrote whose endpoint changed (see configure)."""
    from .configure import refresh_configured_tools

    for line in refresh_configured_tools(open_store(settings), settings):
        click.echo(line, err=True)


@cli.command("hook")
@click.argument("target", type=click.Choice(hooks.TARGETS))
@click.option("--path", "show_path", is_flag=True, help="Print where the shipped file is, instead of its content.")
@click.option("--install", is_flag=True, help="Copy it where the shell or direnv reads it, and say where.")
def hook_command(target: str, show_path: bool, install: bool) -> None:
    """Print the shell integration for TARGET: metis-use, metis-unuse and TAB completion for a
    shell, or 'use metis' for direnv's .envrc files.

    \b
    Example:
      metis-env hook bash --install      # then, in ~/.bashrc: source ~/.local/share/metis-env/metis-env.bash
      metis-env hook fish --install      # fish reads ~/.config/fish/conf.d by itself
      metis-env hook direnv --install    # then, in an .envrc: use metis 1 --model NAME
      eval "$(metis-env hook zsh)"       # or this in ~/.zshrc (one metis-env start per shell)
    """
    if show_path and install:
        raise click.UsageError("give --path or --install, not both")
    if install:
        path, status = hooks.install(target)
        click.echo(f"metis-env: {hooks.install_message(target, path, status)}", err=True)
    elif show_path:
        click.echo(str(hooks.hook_path(target)))
    else:
        click.echo(hooks.hook_text(target), nl=False)


@cli.command("sync")
@click.option("--user", metavar="NAME", help="Your ALCF user name (default: config, ~/.ssh/config, else asked once; remembered in config.yaml after a sync that works).")
@click.option("--host", metavar="HOST", help="Login node or ~/.ssh/config alias (default: sambanova.alcf.anl.gov).")
@click.option("--port", type=click.IntRange(1, 65535), metavar="N", help="SSH port (default: ~/.ssh/config, else 22).")
@click.option("--passcode-stdin", is_flag=True, help="Read one passcode from stdin instead of the terminal (for scripts; no retry).")
@click.option("--accept-new-host-key", is_flag=True, help="Trust and remember an unknown host key without asking (a changed key is still refused).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Give up when the server is silent this long (default 30).")
@click.option("--dry-run", is_flag=True, help="Fetch and show what would change; store nothing.")
@click.option("--via", type=click.Choice(["paramiko", "openssh"]), help="metis-env's own SSH (default), or the system ssh to reuse an open ControlMaster connection.")
@click.option("--gateway", is_flag=True, help="Ask the ALCF gateway for its endpoints and models again (after metis-env login); no SSH.")
@store_option
@click.pass_context
def sync_command(ctx: click.Context, user, host, port, passcode_stdin, accept_new_host_key, timeout, dry_run, via, gateway, store) -> None:
    """Log in once (one MobilePASS+ passcode) and store every endpoint file in your ALCF home.

    The host key is checked before the passcode is asked for; all files are checked before anything
    is stored, and the stored set is then replaced whole (endpoints gone upstream are removed).

    \b
    Example:
      metis-env sync --user alice
      metis-env sync --via openssh                 # reuse an open ControlMaster: no passcode
      printf '%s\\n' "$CODE" | metis-env sync --passcode-stdin
      metis-env sync --gateway                     # the gateway's endpoint list, with the stored token
    """
    if gateway:
        from .sources.gateway.session import sync_gateway

        settings = settings_from(ctx, store=store)
        for line in actions.describe_changes(sync_gateway(settings, open_store(settings))):
            click.echo(line, err=True)
        _refresh_tool_configs(settings)
        return
    from .sources import ssh
    from .prompt import TerminalPrompter
    from .sources.ssh.sync import SyncOptions, run_sync

    ssh.set_debug_logging(bool(ctx.find_root().params.get("debug")))
    options = SyncOptions(user, host, port, timeout, via, passcode_stdin, accept_new_host_key, dry_run)
    settings = settings_from(ctx, store=store)
    changes = run_sync(settings, options, TerminalPrompter())
    for line in actions.describe_changes(changes, dry_run):
        click.echo(line, err=True)
    if not dry_run:
        _refresh_tool_configs(settings)
        _remember_user(settings, user)


def _remember_user(settings: Settings, user: str | None) -> None:
    """--user is remembered in config.yaml after a sync that worked, as a prompted name is, unless a
    user is configured already (config.yaml or METIS_ENV_USER). Quietly: the sync's report is
    the last thing on stderr, and `config list` shows it."""
    from .settings import read_config_file
    from .paths import config_file

    if not user or os.environ.get(env_name("user")) or read_config_file(config_file(settings.config_dir)).get("user"):
        return
    save_setting(settings.config_dir, "user", user)


@cli.command("login")
@click.option("--no-browser", is_flag=True, help="Print the login URL on stderr and read the code from stdin (SSH, scripts, no terminal).")
@click.option("--force", is_flag=True, help="Log in again even if a login is stored (after ALCF's 30-day re-authentication).")
@click.option("--from-alcf-tokens", is_flag=True, help="Adopt the login alcf-tokens keeps in ~/.globus (read only; its file is never written).")
@click.option("--service-account", "service_account", metavar="CLIENT_ID", help="Log in as a Globus service account (a confidential client ALCF allow-listed): no browser, no 30-day re-login.")
@click.option("--secret-stdin", is_flag=True, help="Read the service account's client secret from stdin (else a hidden prompt).")
@token_store_option
@click.pass_context
def login_command(ctx: click.Context, no_browser: bool, force: bool, from_alcf_tokens: bool, service_account: str | None,
                  secret_stdin: bool, store: str | None) -> None:
    """Log in to Globus for the ALCF Inference Service gateway, then store its endpoints (one per cluster it lists).

    A browser opens where one can (never over SSH); otherwise the URL is printed on stderr and the
    code it shows is read from stdin. The tokens go to the OS keyring (or the file store); the
    endpoint list comes from the gateway's list-endpoints.

    \b
    Example:
      metis-env login
      metis-env login --no-browser            # on a login node: open the URL anywhere, paste the code
      metis-env login --from-alcf-tokens      # already logged in with alcf-tokens
      metis-env login --service-account CLIENT_ID --secret-stdin < secret.txt   # cron, jobs
      eval "$(metis-env export metis)"
    """
    from .sources.gateway import session

    settings = settings_from(ctx, store=store)
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
    for line in actions.describe_changes(changes):
        click.echo(line, err=True)
    _refresh_tool_configs(settings)


@cli.command("logout")
@click.pass_context
def logout_command(ctx: click.Context) -> None:
    """Revoke the Globus tokens at Globus and forget them and the gateway endpoints here.

    Offline, they are forgotten here anyway (with a warning). Endpoint files are not touched.

    \b
    Example:
      metis-env logout
    """
    from .sources.gateway.session import logout

    settings = settings_from(ctx)
    for line in actions.describe_changes(logout(settings, open_store(settings))):
        click.echo(line, err=True)


@cli.group("kernel", context_settings=CONTEXT)
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
    from .kernel import install_kernel

    settings = settings_from(ctx)  # a kernel for an endpoint that is not stored would die as it starts
    actions.choose_endpoint(open_store(settings).endpoints(), endpoint, settings, "kernel install")
    folder = install_kernel(endpoint, name=name, display_name=display_name, sys_prefix=sys_prefix, python=python)
    click.echo(f"metis-env: installed kernel {os.path.basename(folder)} in {folder}", err=True)


def _shell_named(command: Sequence[str]) -> str | None:
    """The --shell an export command line names, if it names a known one."""
    for i, token in enumerate(command):
        value = None
        if token in ("--shell", "-s") and i + 1 < len(command):
            value = command[i + 1]
        elif token.startswith("--shell="):
            value = token.split("=", 1)[1]
        if value is not None:
            try:
                return normalize_shell(value)
            except MetisEnvError:
                return None
    return None


def run_cli(argv: Sequence[str]) -> int:
    """Run the click CLI and map every error to its exit code (see reporting.report_error)."""
    no_core_dumps(undumpable=True)  # most commands hold a key or a passcode at some point
    try:
        result = cli.main(args=list(argv), prog_name="metis-env", standalone_mode=False)
    except click.ClickException as exc:
        command = split_global_options(argv)[1]
        if command[:1] == ["export"]:  # eval "$(metis-env export --bogus)" must fail too
            sys.stdout.write(failure_code(_shell_named(command) or DEFAULT_SHELL))
        if isinstance(exc, click.exceptions.NoArgsIsHelpError):
            exc.show()  # `metis-env` alone: the help is the answer
        elif isinstance(exc, click.UsageError):
            path = exc.ctx.command_path if exc.ctx is not None else None
            if path in (None, "metis-env") and command[:1] and command[0] in cli.commands:
                path = f"metis-env {command[0]}"  # an option's missing value is blamed on the group
            path = path or "metis-env"
            sys.stderr.write(usage_error_line(exc.format_message(), path))
        else:
            sys.stderr.write(usage_error_line(exc.format_message(), None))
        return exc.exit_code
    except click.exceptions.Abort:
        sys.stderr.write("metis-env: interrupted\n")
        return 130
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        return report_error(exc, debug_requested(argv))
    return result if isinstance(result, int) else 0
