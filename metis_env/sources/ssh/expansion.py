"""OpenSSH's expansions of ssh_config values, as ``ssh`` does them for UserKnownHostsFile and
IdentityFile: a leading ``~``, then ``${VAR}`` and ``%`` tokens in one pass (``vdollar_percent_expand``
in OpenSSH's misc.c: a variable's value is not expanded again), an unset variable an error.

    tokens = expansion_tokens(alias="metis", hostname="login.example", port=22, user="ada", host_key_alias=None)
    expand_value("${HOME}/.ssh/id_%h", tokens, {"HOME": "/home/ada"}, keyword="IdentityFile")
    # '/home/ada/.ssh/id_login.example'
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Mapping

from ...errors import UsageError


def expansion_tokens(*, alias: str, hostname: str, port: int, user: str | None, host_key_alias: str | None) -> dict[str, str]:
    """The ``%`` tokens OpenSSH expands in UserKnownHostsFile, IdentityFile and the like (ssh_config(5)
    TOKENS), for one connection. ``%C`` is OpenSSH 9.2's hash of ``%l%h%p%r``."""
    local_user = getpass.getuser()
    remote_user = user or local_user
    local_host = socket.gethostname()
    return {
        "%": "%",
        "C": hashlib.sha1(f"{local_host}{hostname}{port}{remote_user}".encode()).hexdigest(),
        "d": os.path.expanduser("~"),
        "h": hostname,
        "i": str(os.getuid()),
        "k": host_key_alias or alias,
        "L": local_host.split(".")[0],
        "l": local_host,
        "n": alias,
        "p": str(port),
        "r": remote_user,
        "u": local_user,
    }


def expand_tokens(value: str, tokens: Mapping[str, str]) -> str:
    """``%x`` replaced from ``tokens`` (``%%`` is ``%``); an unknown token is an error, as in OpenSSH."""
    return _expand(value, tokens, None, "")


def expand_value(value: str, tokens: Mapping[str, str], environ: Mapping[str, str], *, keyword: str) -> str:
    """``${VAR}`` and ``%x`` expanded in one pass, as OpenSSH does for ``keyword``; a leading ``~``
    stays (expanded when the file is opened). An unset variable is OpenSSH's fatal error, in one line."""
    if value.startswith("~"):
        return "~" + _expand(value[1:], tokens, environ, keyword)
    return _expand(value, tokens, environ, keyword)


def _expand(value: str, tokens: Mapping[str, str], environ: Mapping[str, str] | None, keyword: str) -> str:
    out: list[str] = []
    i, n = 0, len(value)
    where = f"{keyword} {value}" if keyword else repr(value)
    while i < n:
        c = value[i]
        if environ is not None and c == "$" and value[i + 1 : i + 2] == "{":
            end = value.find("}", i + 2)
            if end == -1:
                raise UsageError(f"ssh config: {where}: an environment variable is missing its closing '}}' (OpenSSH refuses it too); fix the line")
            name = value[i + 2 : end]
            if not name:
                raise UsageError(f"ssh config: {where}: an empty ${{}} (OpenSSH refuses it too); fix the line")
            if name not in environ:
                raise UsageError(
                    f"ssh config: {where}: the environment variable {name} is not set, so OpenSSH stops here "
                    "(\"invalid environment variable expansion\"); set it, or fix the line"
                )
            out.append(environ[name])
            i = end + 1
            continue
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 == n:
            raise UsageError(f"ssh config: a lone % ends {where}")
        token = value[i + 1]
        if token not in tokens:
            raise UsageError(f"ssh config: unknown token %{token} in {where}")
        out.append(tokens[token])
        i += 2
    return "".join(out)
