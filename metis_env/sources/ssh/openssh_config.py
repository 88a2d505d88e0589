"""The ssh config resolved by OpenSSH itself: ``ssh -G HOST`` (with ``-p``/``-l`` when given) prints
every setting OpenSSH would use, after Host/Match (exec, final, canonical), Include, tokens and
defaults, and never connects. Where an OpenSSH client is installed this is the resolver;
paramiko's parser (``config.py``) is only the fallback.

    options = run_ssh_g("ssh", "metis", port=None, user="alice", config_file=None)
    options["hostname"]  # ['sambanova.alcf.anl.gov']
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence

from ...errors import UsageError
from ...render import printable

SSH_G_TIMEOUT = 20.0  # Match exec commands run too


def openssh_client(paths: Sequence[str], default_paths: Sequence[str]) -> str | None:
    """The ssh that can answer for these config files, or None (then the fallback parser).

    OpenSSH takes ``~`` from the password database, not from $HOME: when the two differ (a test, a
    moved HOME) it would read other files than the ones metis-env names, so it is not asked. It reads
    one file (``-F``) or the user's and the system's."""
    if tuple(paths) != tuple(default_paths) and len(paths) != 1:
        return None
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return None
    if os.path.realpath(os.path.expanduser("~")) != os.path.realpath(home):
        return None
    return shutil.which("ssh")


def run_ssh_g(
    ssh: str, host: str, *, port: int | None, user: str | None, config_file: str | None
) -> dict[str, list[str]]:
    """``ssh -G``'s answer as ``{keyword: [values]}`` (IdentityFile and the like have several)."""
    argv = [ssh, "-G", "-T"]
    if config_file is not None:
        argv += ["-F", os.path.expanduser(config_file)]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    argv += ["--", host]
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=SSH_G_TIMEOUT, check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"ssh -G {host} (how OpenSSH reads the ssh config) did not finish in {SSH_G_TIMEOUT:g} s; check Match exec lines") from None
    except OSError as exc:
        raise UsageError(f"cannot run {ssh} -G: {exc.strerror or exc}") from exc
    if result.returncode != 0:
        lines = [printable(line.strip()) for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Pseudo-terminal")]
        reason = lines[0] if lines else f"exit status {result.returncode}"
        raise UsageError(f"OpenSSH refuses the ssh config for {host}: {reason}; fix it (ssh -G {host} shows the same)")
    options: dict[str, list[str]] = {}
    for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
        key, _, value = line.partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value)
    return options


def known_hosts_files(printed: str | None, own: Sequence[str]) -> tuple[str, ...]:
    """``ssh -G`` prints the files joined by spaces, so a path with a space in it is ambiguous: take
    our own expansion of the same value when it prints the same line, else split on spaces."""
    if printed is None:
        return ()
    expanded = [os.path.expanduser(path) for path in own]
    if expanded and " ".join(expanded) == printed:
        return tuple(own)
    return tuple(printed.split())
