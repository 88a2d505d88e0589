"""Environment variables -> code for one shell or format; one renderer per target in one registry. Pure.

Every value is quoted for its target so that nothing in it (quotes, ``$()``, backticks, newlines) can
run in the user's shell; every statement ends with ``;`` so that the unquoted ``eval $(...)`` works too.

The POSIX renderer (bash, zsh, sh and export's default) writes code that fish evaluates the same way
(fish's ``export`` function, its quoting rules): the shell that evaluates ``eval "$(metis-env export)"``
is not always the one ``$SHELL`` names (a bash script run by a fish user), so the default must not
depend on guessing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from .errors import UsageError
from .text import shown


def quote_posix(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


# Characters that an unquoted ``eval $(...)`` would split on or glob with (bash's extglob ``+(...)``
# included) before eval parses the text: none of them is ever written as itself (see quote_portable).
_SPLIT_OR_GLOB = frozenset(" \t*?[(")


def quote_portable(value: str) -> str:
    r"""A value as one word that bash, zsh, dash, ksh and fish all read back byte for byte (newlines
    excepted, which fish's ``export`` cannot take: see check_portable).

    Plain runs go in single quotes; ``'``, ``\`` and ``$`` go outside them, in double quotes, where
    both families read them alike (fish 3.6 misreads a ``$`` in single quotes after ``"$(...)"``); a blank or a glob character is written as ``"$(printf '\NNN')"``, so
    that the text holds no blank and no glob character at all and an unquoted ``eval $(...)`` can
    neither split a value nor expand a glob into file names. Example: ``k'; x *`` ->
    ``'k'"'"';'"$(printf '\040')"'x'"$(printf '\040')""$(printf '\052')"``.
    """
    parts: list[str] = []
    run: list[str] = []
    for ch in value:
        if ch in "'\\$" or ch in _SPLIT_OR_GLOB:
            if run:
                parts.append("'" + "".join(run) + "'")
                run = []
            if ch == "'":
                parts.append('"\'"')
            elif ch == "\\":
                parts.append('"\\\\"')
            elif ch == "$":
                parts.append('"\\$"')
            else:
                parts.append(f'"$(printf \'\\{ord(ch):03o}\')"')
        else:
            run.append(ch)
    if run or not parts:
        parts.append("'" + "".join(run) + "'")
    return "".join(parts)


def check_portable(env: Mapping[str, str]) -> None:
    """Refuse what the default (shell-neutral) code cannot carry: fish's ``export`` splits a value at a
    newline and then sets nothing; endpoint files never hold one, so this only fails closed."""
    for name, value in env.items():
        if "\n" in value:
            raise UsageError(f"the value of {name} holds a newline, which only a named shell can take: add --shell bash (or zsh, sh, fish)")


def quote_fish(value: str) -> str:
    # Inside fish single quotes only \\ and \' are escapes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_powershell(value: str) -> str:
    # PowerShell treats the typographic quotes U+2018/U+2019/U+201A/U+201B like ' : double them all.
    out = []
    for ch in value:
        out.append(ch * 2 if ch in "'\u2018\u2019\u201a\u201b" else ch)
    return "'" + "".join(out) + "'"


def render_posix(env: Mapping[str, str]) -> str:
    return "".join(f"export {name}={quote_portable(value)};\n" for name, value in env.items())


def unset_posix(names: Sequence[str]) -> str:
    return "".join(f"unset {name};\n" for name in names)


def render_fish(env: Mapping[str, str]) -> str:
    return "".join(f"set -gx {name} {quote_fish(value)};\n" for name, value in env.items())


def unset_fish(names: Sequence[str]) -> str:
    # A bare `set -e` of a variable that is not set returns status 4; `unset` in sh returns 0.
    return "".join(f"if set -q {name}; set -e {name}; end;\n" for name in names)


def render_powershell(env: Mapping[str, str]) -> str:
    return "".join(f"$Env:{name} = {quote_powershell(value)};\n" for name, value in env.items())


def unset_powershell(names: Sequence[str]) -> str:
    return "".join(f"Remove-Item -ErrorAction SilentlyContinue Env:{name};\n" for name in names)


def render_dotenv(env: Mapping[str, str]) -> str:
    # Single quotes: docker compose takes them literally; python-dotenv reads \\ and \' inside them
    # as escapes and still expands ${VAR} unless interpolate=False (it has no escape for "$").
    return "".join(f"{name}={quote_fish(value)}\n" for name, value in env.items())


def unset_dotenv(names: Sequence[str]) -> str:
    raise UsageError("--unset does not apply to --shell dotenv; delete the lines from the file instead")


def render_json(env: Mapping[str, str]) -> str:
    return json.dumps(dict(env), indent=2, ensure_ascii=False) + "\n"


def unset_json(names: Sequence[str]) -> str:
    return json.dumps({name: None for name in names}, indent=2) + "\n"


RENDERERS: dict[str, tuple[Callable[[Mapping[str, str]], str], Callable[[Sequence[str]], str], str]] = {
    # name: (set, unset, what to print on stdout when export fails)
    "bash": (render_posix, unset_posix, "false\n"),
    "zsh": (render_posix, unset_posix, "false\n"),
    "sh": (render_posix, unset_posix, "false\n"),
    "fish": (render_fish, unset_fish, "false\n"),
    "powershell": (render_powershell, unset_powershell, "$global:LASTEXITCODE = 1; throw 'metis-env export failed';\n"),
    "dotenv": (render_dotenv, unset_dotenv, ""),
    "json": (render_json, unset_json, ""),
}
SHELLS = tuple(RENDERERS)
SHELL_ALIASES = {"ksh": "sh", "dash": "sh", "mksh": "sh", "pwsh": "powershell", "env": "dotenv"}


def render(shell: str, env: Mapping[str, str]) -> str:
    return RENDERERS[shell][0](env)


def render_switch(shell: str, env: Mapping[str, str], others: Sequence[str], portable: bool = False) -> str:
    """What export prints: code that sets ``env``, then removes ``others`` (names an export of another
    endpoint, or an alias, may have set and this one does not), so that after it exactly ``env``'s
    names are set: a switch from an endpoint file to a gateway endpoint must not leave the file's key
    in ``SAMBANOVA_API_KEY``. dotenv and JSON carry values only (a file, data): nothing to remove.
    ``portable``: the default syntax, whose removal fish must read too (see unset_portable)."""
    code = render(shell, env)
    if not others or shell in ("dotenv", "json"):
        return code
    return code + (unset_portable(others) if portable else render_unset(shell, others))


def unset_portable(names: Sequence[str]) -> str:
    r"""Code that removes ``names`` in bash, zsh, sh (dash, ksh) and fish alike, as the default syntax
    must (``unset`` is no fish command, ``set -e`` means errexit in sh). ``'\\'`` is two backslashes
    in POSIX shells and one in fish (whose single quotes take ``\\``), ``"\\"`` one in both: so the
    test tells the two families apart by syntax, never by a variable, and each line runs in one family
    only. The POSIX line is last, so that the code's status is 0 in every shell (fish's ``set -e``
    returns 4 when a name was not set). Holds no blank that matters and no glob character, so the
    unquoted ``eval $(...)`` reads it the same. Example for ``["A", "B"]``::

        test '\\' != "\\" || set -e A B;
        test '\\' = "\\" || unset A B;
    """
    joined = " ".join(names)
    family_test = "test '" + "\\" * 2 + "' {} \"" + "\\" * 2 + "\""  # test '\\' OP "\\"
    return f"{family_test.format('!=')} || set -e {joined};\n{family_test.format('=')} || unset {joined};\n"


def render_unset(shell: str, names: Sequence[str]) -> str:
    return RENDERERS[shell][1](names)


def failure_code(shell: str) -> str:
    """What export prints on stdout when it fails, so that ``eval "$(metis-env export)"`` fails too."""
    return RENDERERS[shell][2]


DEFAULT_SHELL = "sh"
"""export's syntax without --shell: the POSIX renderer, whose code every POSIX shell and fish read alike."""


def normalize_shell(name: str) -> str:
    """A --shell value -> a renderer name, or UsageError listing the choices."""
    lowered = name.lower()
    lowered = SHELL_ALIASES.get(lowered, lowered)
    if lowered not in RENDERERS:
        raise UsageError(f"unknown shell {name!r}; choose one of: {', '.join(SHELLS)}")
    return lowered


def printable(text: str) -> str:
    """Text for the terminal (error lines, server prompts, file names) with control and bidi characters
    shown as escapes: ``metis_endpoint_1\\n.txt``, an ESC sequence or U+202E must not split a line or
    drive the user's terminal."""
    return shown(text, None)  # the one escaping primitive (text.py), without its length bound
