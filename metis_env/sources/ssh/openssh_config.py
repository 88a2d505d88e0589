"""The ssh config resolved by OpenSSH itself: ``ssh -G HOST`` (with ``-p``/``-l`` when given) prints
every setting OpenSSH would use, after Host/Match (exec, final, canonical), Include, tokens and
defaults, and never connects. Where an OpenSSH client is installed this is the resolver;
paramiko's parser (``config.py``) is only the fallback.

    answer = run_ssh_g("ssh", "metis", port=None, user="alice", config_file=None)
    answer.options["hostname"]  # ['sambanova.alcf.anl.gov']
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SshG:
    """What ``ssh -vvv -G`` said: ``options`` as ``{keyword: [values]}`` (IdentityFile and the like have
    several), and each UserKnownHostsFile it expanded, in order, as ``(as written, expanded)``: the
    one place OpenSSH prints those paths one by one (its ``-G`` line joins them with spaces)."""

    options: dict[str, list[str]]
    expanded_user_known_hosts: tuple[tuple[str, str], ...] = ()


_EXPANDED = "debug3: expanded UserKnownHostsFile '"


def run_ssh_g(
    ssh: str, host: str, *, port: int | None, user: str | None, config_file: str | None
) -> SshG:
    """``ssh -vvv -G``'s answer (the ``-vvv`` only for its ``expanded UserKnownHostsFile`` lines)."""
    argv = [ssh, "-vvv", "-G", "-T"]
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
    messages = result.stderr.decode("utf-8", "surrogateescape").splitlines()
    if result.returncode != 0:
        lines = [printable(line.strip()) for line in messages if line.strip()]
        lines = [line for line in lines if not line.startswith(("Pseudo-terminal", "debug", "OpenSSH_"))]
        reason = lines[0] if lines else f"exit status {result.returncode}"
        raise UsageError(f"OpenSSH refuses the ssh config for {host}: {reason}; fix it (ssh -G {host} shows the same)")
    options: dict[str, list[str]] = {}
    for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
        key, _, value = line.partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value)
    expanded = tuple(_expanded_pair(line[len(_EXPANDED):]) for line in messages if line.startswith(_EXPANDED))
    return SshG(options, expanded)


def _expanded_pair(text: str) -> tuple[str, str]:
    """``a' -> 'b'`` -> ``("a", "b")``. A path holding ``' -> '`` itself makes no pair that any
    candidate matches (see ``known_hosts_files``), so a wrong split here cannot pass unnoticed."""
    written, _, expanded = text[:-1].partition("' -> '") if text.endswith("'") else (text, "", "")
    return written, expanded


def known_hosts_files(
    printed: str | None,
    expanded: Sequence[tuple[str, str]],
    candidates: Sequence[Sequence[str]],
    keyword: str = "UserKnownHostsFile",
) -> tuple[str, ...]:
    """The files of ``ssh -G``'s ``printed`` line, which joins them with spaces (so that a path with a
    space in it cannot be told from two paths). ``candidates`` are the word lists the config could
    have given (every such line of the config files, dequoted, and OpenSSH's default); the one that,
    with OpenSSH's own ``expanded`` pairs put in, prints exactly that line is the answer. None, or two
    that split it differently: an error (a guess here would check the host key against the wrong
    files)."""
    if printed is None:
        return ()
    answers = set()
    for words in candidates:
        files = _with_expansions(words, expanded)
        if files is not None and " ".join(files) == printed:
            answers.add(files)
    if len(answers) == 1:
        files = answers.pop()
        return ("/dev/null",) if [f.lower() for f in files] == ["none"] else files
    if not answers and " " not in printed:
        return (printed,) if printed.lower() != "none" else ("/dev/null",)
    raise UsageError(
        f"cannot tell which files OpenSSH's {keyword} {printed!r} names (ssh -G joins them with spaces); "
        "put that path in quotes on one line of the ssh config, or use --via openssh"
    )


def _with_expansions(words: Sequence[str], expanded: Sequence[tuple[str, str]]) -> tuple[str, ...] | None:
    """``words`` as OpenSSH expanded them: it prints a pair for each word its expansion changed, in
    order, and nothing for the others; None when the pairs do not fit these words."""
    out, pending = [], list(expanded)
    for word in words:
        if pending and pending[0][0] == word:
            out.append(pending.pop(0)[1])
        else:
            out.append(word)
    return None if pending else tuple(out)
