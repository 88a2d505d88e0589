"""The console-script entry point.

``export``, ``get`` and ``run`` run in every new shell and every direnv reload, so their common forms
(the table below) are answered with the standard library and the store's read side alone; click,
pyyaml, keyring's backend discovery and paramiko are never imported for them. Anything else (help,
other commands, forms not in the table) goes to the click CLI in ``cli.py``. ``tests/test_main.py``
runs both paths on the same inputs and demands the same stdout, stderr and exit code.
"""

from __future__ import annotations

import os
import sys

from .commands import export as commands
from .coredump import no_core_dumps
from .errors import MetisEnvError
from .settings import load_settings, parse_duration, with_overrides

# annotations only (PEP 563): `collections` costs every shell start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

FAST_PATH_FORMS = {
    # command: (options taking a value -> canonical name, flags, positional arguments allowed)
    "export": ({"--model": "model", "-m": "model", "--shell": "shell", "-s": "shell", "--min-ttl": "min_ttl"}, {"--unset": "unset"}, 1),
    "get": ({"--min-ttl": "min_ttl", "--proxy-port": "proxy_port"}, {"--json": "json", "--proxy": "proxy"}, 2),
    "run": ({"--model": "model", "-m": "model", "--min-ttl": "min_ttl"}, {"--proxy": "proxy"}, 1),
}


def parse_fast(argv: Sequence[str]) -> tuple[str, dict, list[str], list[str]] | None:
    """argv -> (command, options, positionals, argv after --), or None if the fast path does not serve it."""
    if not argv or argv[0] not in FAST_PATH_FORMS:
        return None
    command, rest = argv[0], list(argv[1:])
    valued, flags, max_positionals = FAST_PATH_FORMS[command]
    options: dict = {}
    positionals: list[str] = []
    tail: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            if command != "run":
                return None
            tail = rest[i + 1 :]
            break
        name, eq, value = token.partition("=")
        if name in valued and valued[name] not in options:
            if eq and name.startswith("--"):
                options[valued[name]] = value
            elif not eq and i + 1 < len(rest):
                i += 1
                options[valued[name]] = rest[i]
            else:
                return None
        elif token in flags and flags[token] not in options:
            options[flags[token]] = True
        elif token.startswith("-") or len(positionals) == max_positionals:
            return None
        else:
            positionals.append(token)
        i += 1
    if command == "run" and not tail:
        return None
    if command == "get" and (not positionals or positionals[0] not in commands.GET_FIELDS):
        return None  # click words a bad choice better (usage line, the choices)
    if "proxy_port" in options:
        if not options["proxy_port"].isdigit() or not 0 < int(options["proxy_port"]) < 65536:
            return None  # click words a bad value (usage line)
        options["proxy_port"] = int(options["proxy_port"])
    if "min_ttl" in options:
        try:
            options["min_ttl"] = parse_duration(options["min_ttl"], "--min-ttl")
        except MetisEnvError:
            return None  # click words a bad value (usage line)
    return command, options, positionals, tail


def serve_fast(command: str, options: dict, positionals: list[str], tail: list[str]) -> int:
    no_core_dumps()  # the key is about to be in this process's memory
    # --min-ttl is a setting given on the command line, as click's path makes it (settings_from)
    settings = with_overrides(load_settings(), min_ttl=options["min_ttl"]) if "min_ttl" in options else None
    if command == "export":
        spec = positionals[0] if positionals else None
        return commands.export(spec, options.get("model"), options.get("shell"), options.get("unset", False), settings)
    if command == "get":
        return commands.get(positionals[0], positionals[1] if len(positionals) > 1 else None, settings,
                            as_json=options.get("json", False), proxy=options.get("proxy", False),
                            proxy_port=options.get("proxy_port"))
    return commands.run(positionals[0] if positionals else None, options.get("model"), tail, settings,
                        proxy=options.get("proxy", False))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Shell completion (click's protocol, driven by this variable) is click's to answer, whatever argv is.
    parsed = None if "_METIS_ENV_COMPLETE" in os.environ else parse_fast(argv)
    if parsed is None:
        from .cli import run_cli

        return run_cli(argv)
    try:
        return serve_fast(*parsed)
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        from .reporting import debug_requested, report_error  # the error path only

        return report_error(exc, debug_requested(argv))
    finally:
        _flush_stdout()


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``metis-env export | head -0``): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
