"""The click commands: the only module that imports click; each command a few lines over ``commands/``.

The hot commands' common forms never get here (see main.py); this module serves everything else
and every ``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from . import __version__, cli_groups
from .commands import endpoints, export as commands, hooks, sessions
from .commands.config import format_setting
from .coredump import no_core_dumps
from .reporting import debug_requested, report_error, split_global_options, usage_error_line
from .render import DEFAULT_SHELL, SHELLS, failure_code
from .selection import EMPTY_STORE
from .settings import SETTING_NAMES
from .cli_options import CONTEXT, RunCommand, complete_endpoint_id, complete_shell, complete_tool, endpoint_argument, model_option, min_ttl_option, settings_from, store_option, token_store_option
from .store import open_store


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


cli.add_command(cli_groups.proxy_group)  # proxy start / stop / status (cli_groups.py)
cli.add_command(cli_groups.store_group)  # store move
cli.add_command(cli_groups.kernel_group)  # kernel install


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
    sessions.report(endpoints.import_files(open_store(settings), list(files), endpoint_id))
    sessions.remember_store(settings, store or ctx.find_root().params.get("store"))
    sessions.refresh_tool_configs(settings)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema version 1, see docs/commands.md).")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Show the stored endpoints, their models, the age of the data and the key, masked.

    \b
    Example:
      metis-env list
      metis-env list --json | jq -r '.endpoints[].id'
    """
    settings = settings_from(ctx)
    rows = endpoints.list_rows(open_store(settings), settings)
    if as_json:
        click.echo(endpoints.list_json(rows))
    elif rows:
        click.echo(endpoints.format_list(rows), nl=False)
    else:
        click.echo(EMPTY_STORE, err=True)


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
    clients read (OPENAI_API_BASE, SAMBANOVA_API_KEY with SAMBANOVA_API_BASE, ...; see docs/export.md).

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
    return commands.export(endpoint, model, shell, unset, settings, output)


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
    return commands.run(endpoint, model, ctx.meta.get("metis_env.run_argv", []), settings, proxy=proxy)


@cli.command("get")
@click.argument("what", type=click.Choice(commands.GET_FIELDS))
@endpoint_argument
@min_ttl_option
@click.option("--json", "as_json", is_flag=True, help='With key: {"key": ..., "expires_at": ...} (null for endpoint files).')
@click.option("--proxy", is_flag=True, help="key: the local key of this host's broker (joined, or started when none runs); url: the broker's stable address for ENDPOINT. For configs written by configure --proxy.")
@click.option("--proxy-port", type=click.IntRange(1, 65535), metavar="PORT", help="As --proxy, and the broker must listen at PORT (what configs written by configure --proxy run): else no key.")
@click.pass_context
def get_command(ctx: click.Context, what: str, endpoint: str | None, min_ttl: float | None, as_json: bool, proxy: bool,
                proxy_port: int | None) -> int:
    """Print one raw value of an endpoint, for other tools' credential helpers: key, url, models
    (comma-separated), or model (the one export would pick: default_model, else the first).

    \b
    Example:
      url=$(metis-env get url 1)   # with or without a trailing /
      curl -H "Authorization: Bearer $(metis-env get key 1)" "${url%/}/models"
      metis-env get model 1        # the model export would pick
      metis-env get key 1 --proxy  # the broker's local key, never the real one
    """
    return commands.get(what, endpoint, settings_from(ctx, min_ttl=min_ttl), as_json, proxy, proxy_port)


@cli.command("check")
@endpoint_argument
@click.option("--json", "as_json", is_flag=True, help="Print each result as one JSON object per line (keys: see docs/check-and-status.md).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, metavar="SECONDS", help="Limit for the whole check, every request together.")
@click.pass_context
def check_command(ctx: click.Context, endpoint: str | None, as_json: bool, timeout: float) -> None:
    """Prove the stored key works: ask the endpoint for its models and report which are served.
    Without ENDPOINT, every stored endpoint is checked (all at once).

    A gateway endpoint (one per cluster the gateway lists) is asked who you are (whoami) and which
    models are live ({cluster}/jobs); for every endpoint the model export would pick must be live (served).

    Exit status (the first failed endpoint's): 0 ok, 12 key or token refused (sync, or login), 13
    unreachable, 14 timeout, 15 bad answer, 21 the model export would pick is not served; gateway
    endpoints also 19 re-authentication required, 20 bad gateway answer, 21 not live or under
    maintenance, 23 rate-limited.

    \b
    Example:
      metis-env check 1
      metis-env check --json | jq .status
    """
    from .commands.check_report import run_check  # urllib and ssl: ~20 ms only this command needs

    run_check(settings_from(ctx), endpoint, as_json, timeout)


@cli.command("status")
@endpoint_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema version 1, see docs/check-and-status.md).")
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
    from .commands.status import status

    status(settings_from(ctx), endpoint, as_json, timeout)


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON (schema version 1, see docs/doctor.md).")
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
    from .commands import doctor

    # doctor reports a loose config dir, it does not change it: tighten=False
    doctor.doctor(lambda: settings_from(ctx, tighten=False), as_json)


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
    from .commands.demo_serve import demo

    return demo(yes, serve)


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
    sessions.report(changes)
    from .commands.config import drop_forgotten_default

    drop_forgotten_default(settings, {c.id for c in changes if c.status == "removed"})


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
    """Show every setting's effective value, and where it comes from (a YAML comment: default,
    config.yaml, METIS_ENV_<NAME>, or --store).

    \b
    Example:
      metis-env config list
      metis-env config list | grep -v '# default$'
    """
    from .commands.config import config_list as list_settings

    list_settings(settings_from(ctx), ctx.find_root().params.get("store"))


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
    from .commands.config import config_set as set_setting

    set_setting(name, value)


@config_group.command("unset")
@click.argument("name", type=click.Choice(SETTING_NAMES), metavar="NAME")
def config_unset(name: str) -> None:
    """Remove a setting from config.yaml (back to its default)."""
    from .commands.config import config_unset as unset_setting

    unset_setting(name)


@cli.command("configure")
@click.argument("tool", metavar="TOOL", shell_complete=complete_tool)
@endpoint_argument
@model_option
@click.option("--dry-run", is_flag=True, help="Show the diff only; write nothing.")
@click.option("--proxy/--no-proxy", default=None, help="Through this host's broker (as run --proxy), or straight to the endpoint. "
              "Default: through it for opencode and pi on a Metis endpoint, whose requests Metis refuses (422) unless the broker adapts them; straight otherwise.")
@click.pass_context
def configure_command(ctx: click.Context, tool: str, endpoint: str | None, model: str | None, dry_run: bool, proxy: bool | None) -> None:
    """Write an AI tool's own config for an endpoint: aider, claude, codex, llm, opencode or pi.

    Merges metis-env's entries into the tool's config file (where the tool looks, its own variables
    honoured), keeps everything else, shows a unified diff on stderr first, keeps a backup
    (FILE.metis-env.bak) and writes no key: the config names `metis-env get key ENDPOINT` or the
    variables `metis-env run` sets. Running it again changes nothing.

    With --proxy the config names this host's broker (metis-env proxy) at a stable loopback port
    (the proxy_port setting, else one derived from your uid) and `metis-env get key ENDPOINT
    --proxy-port PORT`, which starts the broker when none runs and prints its local key, never the real one: many agents
    on a node then share one broker, which refreshes tokens once and absorbs the gateway's rate
    limits. If another user holds that port, the key command refuses and the tool sends nothing.

    \b
    Example:
      metis-env configure opencode 1 --dry-run
      metis-env configure llm 2 --model Llama-3.3-70B-Instruct
      metis-env configure pi metis          # through the broker: Metis takes pi's requests then
      metis-env configure codex sophia --proxy
    """
    from .commands.sessions import configure

    configure(settings_from(ctx), tool, endpoint, model, dry_run, proxy)


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
    hooks.hook(target, show_path, install)


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
    settings = settings_from(ctx, store=store)
    if gateway:
        sessions.sync_gateway(settings)
        return
    from .prompt import TerminalPrompter
    from .sources.ssh.sync import SyncOptions

    options = SyncOptions(user, host, port, timeout, via, passcode_stdin, accept_new_host_key, dry_run)
    sessions.sync(settings, options, TerminalPrompter(), debug=bool(ctx.find_root().params.get("debug")),
                  store_option=store or ctx.find_root().params.get("store"))


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
    sessions.login(settings_from(ctx, store=store), no_browser, force, from_alcf_tokens, service_account, secret_stdin,
                   store or ctx.find_root().params.get("store"))


@cli.command("logout")
@click.pass_context
def logout_command(ctx: click.Context) -> None:
    """Revoke the Globus tokens at Globus and forget them and the gateway endpoints here.

    Offline, they are forgotten here anyway (with a warning). Endpoint files are not touched.

    \b
    Example:
      metis-env logout
    """
    sessions.logout(settings_from(ctx))


def run_cli(argv: Sequence[str]) -> int:
    """Run the click CLI and map every error to its exit code (see reporting.report_error)."""
    no_core_dumps(undumpable=True)  # most commands hold a key or a passcode at some point
    try:
        result = cli.main(args=list(argv), prog_name="metis-env", standalone_mode=False)
    except click.ClickException as exc:
        command = split_global_options(argv)[1]
        if command[:1] == ["export"]:  # eval "$(metis-env export --bogus)" must fail too
            sys.stdout.write(failure_code(commands.shell_named(command) or DEFAULT_SHELL))
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
