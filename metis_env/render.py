"""Environment variables -> code for one shell or format; one renderer per target in one registry. Pure.

Every value is quoted for its target so that nothing in it (quotes, ``$()``, backticks, newlines) can
run in the user's shell; every statement ends with ``;`` so that the unquoted ``eval $(...)`` works too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from .errors import UsageError


def quote_posix(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


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
    return "".join(f"export {name}={quote_posix(value)};\n" for name, value in env.items())


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


def render_unset(shell: str, names: Sequence[str]) -> str:
    return RENDERERS[shell][1](names)


def failure_code(shell: str) -> str:
    """What export prints on stdout when it fails, so that ``eval "$(metis-env export)"`` fails too."""
    return RENDERERS[shell][2]


def shell_from_env(shell_path: str | None) -> str:
    """``$SHELL`` -> a renderer name; bash syntax when it is unknown."""
    name = (shell_path or "").replace("\\", "/").rsplit("/", 1)[-1].lower()
    if name.endswith(".exe"):
        name = name[:-4]
    name = SHELL_ALIASES.get(name, name)
    return name if name in RENDERERS and name not in ("dotenv", "json") else "bash"


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
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
