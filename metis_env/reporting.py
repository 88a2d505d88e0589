"""How a failure reaches the user: one line on stderr and an exit code. Shared by the fast path
(main.py) and the click CLI (cli.py), so that neither imports the other; standard library only.

    metis-env: error: no endpoint or model '7' is stored; stored endpoints: 1, 2
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .errors import MetisEnvError
from .render import printable


def report_error(exc: BaseException, debug: bool) -> int:
    """The one place where an error becomes a line on stderr and an exit code."""
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, MetisEnvError):
        sys.stderr.write(f"metis-env: error: {printable(str(exc))}\n")
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("metis-env: interrupted\n")
        return 130
    if isinstance(exc, BrokenPipeError):
        return 141
    sys.stderr.write(
        f"metis-env: internal error ({type(exc).__name__}); this is a bug: please report it, with the output of "
        "the same command run with --debug\n"
    )
    return 1


def usage_error_line(message: str, command_path: str | None) -> str:
    """A command-line mistake (click's Usage/Try/Error block) as one line, the help hint at its end:
    ``No such option '--bogus'.`` -> ``metis-env: error: no such option '--bogus'; see metis-env check --help``."""
    text = printable(" ".join(message.split()))  # click's "Choose from:\n\tbash,\n\t..." too
    head, said, tail = text.partition(". Did you mean ")
    if said and tail.endswith("?"):  # "No such command 'exprot'. Did you mean 'export'?" -> "... 'exprot' (did you mean 'export'?)"
        text = f"{head} (did you mean {tail})"
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    hint = f"; see {command_path} --help" if command_path else ""
    return f"metis-env: error: {text}{hint}\n"


GLOBAL_OPTIONS_WITH_VALUE = ("--store",)
"""The click group's options that take a value (see cli.cli): needed to find where the command starts."""


def split_global_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--store file --debug export 1`` -> (``--store file --debug``, ``export 1``)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_OPTIONS_WITH_VALUE else 1
    return list(argv[:i]), list(argv[i:])


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in split_global_options(argv)[0] or os.environ.get("METIS_ENV_DEBUG", "") not in ("", "0")
