"""``~/.ssh/config`` as OpenSSH reads it: where to connect for an alias (``Target``), tokens, jump hosts."""

from __future__ import annotations

import getpass
import glob
import hashlib
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import UsageError

from ._paramiko import paramiko

MAX_TRIES = 3
USER_SSH_CONFIG = "~/.ssh/config"
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


@dataclass(frozen=True)
class Target:
    """Where to connect, after ``~/.ssh/config``: what OpenSSH would use for ``alias``."""

    alias: str
    hostname: str
    port: int = 22
    user: str | None = None
    connect_timeout: float | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None
    host_key_alias: str | None = None
    known_hosts_files: tuple[str, ...] = DEFAULT_KNOWN_HOSTS
    global_known_hosts_files: tuple[str, ...] = DEFAULT_GLOBAL_KNOWN_HOSTS
    hash_known_hosts: bool = False
    strict_host_key_checking: str = "ask"  # yes | accept-new | no | ask, as in ssh_config
    identity_files: tuple[str, ...] = DEFAULT_IDENTITIES
    identities_only: bool = False

    @property
    def display(self) -> str:
        where = self.hostname if self.port == 22 else f"{self.hostname}:{self.port}"
        return where if self.alias == self.hostname else f"{self.alias} ({where})"

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts files it under: ``host``, or ``[host]:port`` off port 22."""
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 else f"[{name}]:{self.port}"


# --- ~/.ssh/config -----------------------------------------------------------------------------


def load_ssh_config(paths: Sequence[str] = (USER_SSH_CONFIG, SYSTEM_SSH_CONFIG)) -> paramiko.SSHConfig:
    """The user's then the system's ssh config as one (first value wins, as in OpenSSH), with
    ``Include`` expanded (paramiko does not read it)."""
    parts = []
    for path in paths:
        full = os.path.expanduser(path)
        base = os.path.dirname(full)
        text = _read_config_text(full, base, depth=0)
        if text:
            parts.append(text)
    # A fresh "Host *" keeps the user file's last block from running into the system file.
    text = "\nHost *\n".join(parts)
    try:
        return paramiko.SSHConfig.from_text(text)
    except Exception as exc:
        raise UsageError(f"cannot read the ssh config ({', '.join(paths)}): {_one_line(exc)}; fix it or use --via openssh") from exc


def _read_config_text(path: str, base: str, depth: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ""
    out = []
    for line in lines:
        words = line.strip().split(None, 1)
        if words and words[0].lower() == "include" and len(words) == 2 and depth < 8:
            for pattern in words[1].split():
                pattern = os.path.expanduser(pattern.strip('"'))
                if not os.path.isabs(pattern):
                    pattern = os.path.join(base, pattern)
                for included in sorted(glob.glob(pattern)):
                    out.append(_read_config_text(included, base, depth + 1))
        elif words and words[0].lower().rstrip("=").split("=")[0] in _WORD_LIST_KEYWORDS:
            # paramiko strips one pair of outer quotes (`"a b" "c d"` -> `a b" "c d`); a trailing
            # comment word keeps the value whole for split_config_words, which drops it.
            out.append(line + " #")
        else:
            out.append(line)
    return "\n".join(out)


_WORD_LIST_KEYWORDS = ("userknownhostsfile", "globalknownhostsfile")


def resolve_target(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    config: paramiko.SSHConfig | None = None,
) -> Target:
    """What OpenSSH would connect to for ``host``: its ``HostName``, ``Port``, ``User``, ... from the ssh
    config; ``port`` and ``user`` given here win, as ``ssh -p`` and ``ssh -l`` do."""
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise UsageError(f"{host!r} is not a host name")
    config = load_ssh_config() if config is None else config
    try:
        options = config.lookup(host)
    except Exception as exc:  # Match exec without invoke installed, bad tokens, ...
        raise UsageError(f"cannot apply the ssh config for {host}: {_one_line(exc)}; use --via openssh") from exc

    def number(name: str) -> float | None:
        value = options.get(name)
        if value is None or str(value).lower() == "none":
            return None
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"ssh config for {host}: {name} {value!r} is not a number") from None

    config_port = number("port")
    hostname = options.get("hostname", host)
    final_port = int(port or config_port or 22)
    final_user = user or options.get("user")
    tokens = expansion_tokens(
        alias=host, hostname=hostname, port=final_port, user=final_user, host_key_alias=options.get("hostkeyalias")
    )
    proxy_jump = options.get("proxyjump")
    if proxy_jump is not None and proxy_jump.lower() == "none":
        proxy_jump = None
    return Target(
        alias=host,
        hostname=hostname,
        port=final_port,
        user=final_user,
        connect_timeout=number("connecttimeout"),
        proxy_jump=proxy_jump,
        proxy_command=options.get("proxycommand"),
        host_key_alias=options.get("hostkeyalias"),
        known_hosts_files=known_hosts_paths(options.get("userknownhostsfile"), tokens) or DEFAULT_KNOWN_HOSTS,
        global_known_hosts_files=known_hosts_paths(options.get("globalknownhostsfile"), tokens) or DEFAULT_GLOBAL_KNOWN_HOSTS,
        hash_known_hosts=str(options.get("hashknownhosts", "no")).lower() == "yes",
        strict_host_key_checking=_strictness(options.get("stricthostkeychecking", "ask")),
        identity_files=tuple(options.get("identityfile", ())) or DEFAULT_IDENTITIES,
        identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
    )


def _strictness(value: str) -> str:
    value = value.lower()
    return {"true": "yes", "false": "no", "off": "no"}.get(value, value if value in ("yes", "accept-new", "no") else "ask")


def split_config_words(value: str) -> list[str]:
    """A config value split into words as OpenSSH's ``argv_split`` does: whitespace separates,
    ``"..."`` and ``'...'`` quote, a backslash escapes a quote, a backslash or (unquoted) a space, and an
    unquoted word starting with ``#`` ends the line (a trailing comment)."""
    words: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i].isspace():
            i += 1
            continue
        if value[i] == "#":
            break
        word, quote = [], None
        while i < n:
            c = value[i]
            if c == "\\" and i + 1 < n and (value[i + 1] in "\\'\"" or (quote is None and value[i + 1] == " ")):
                word.append(value[i + 1])
                i += 2
                continue
            if quote is None and c.isspace():
                break
            if quote is None and c in "'\"":
                quote = c
            elif c == quote:
                quote = None
            else:
                word.append(c)
            i += 1
        if quote is not None:
            raise UsageError(f"ssh config: unterminated quote in {value!r}")
        words.append("".join(word))
    return words


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


def expand_tokens(value: str, tokens: dict[str, str]) -> str:
    """``%x`` replaced from ``tokens`` (``%%`` is ``%``); an unknown token is an error, as in OpenSSH."""

    def one(match: re.Match) -> str:
        if match.group(1) not in tokens:
            raise UsageError(f"ssh config: unknown token %{match.group(1)} in {value!r}")
        return tokens[match.group(1)]

    if value.endswith("%") and not value.endswith("%%"):
        raise UsageError(f"ssh config: a lone % ends {value!r}")
    return re.sub(r"%(.)", one, value)


def known_hosts_paths(value: str | None, tokens: dict[str, str]) -> tuple[str, ...]:
    """UserKnownHostsFile/GlobalKnownHostsFile as OpenSSH reads them: several files, quoted paths with
    spaces, ``%`` tokens expanded. A leading ``~`` stays for display (expanded when opened)."""
    if value is None:
        return ()
    words = split_config_words(value)
    if [w.lower() for w in words] == ["none"]:
        return ("/dev/null",)
    return tuple(expand_tokens(word, tokens) for word in words)


def _parse_jump(spec: str, config: paramiko.SSHConfig) -> tuple[Target, str]:
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` -> the jump target and its user."""
    if "," in spec:
        raise UsageError(
            f"ProxyJump {spec} has more than one hop; metis-env's own SSH goes through one jump host: use --via openssh"
        )
    body = spec[len("ssh://") :] if spec.startswith("ssh://") else spec
    user, _, hostport = body.rpartition("@")
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", hostport)
    if not match:
        raise UsageError(f"ProxyJump {spec!r} is not [user@]host[:port]")
    host = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4)
    jump = resolve_target(host, port=int(port) if port else None, user=user or None, config=config)
    if jump.proxy_jump or jump.proxy_command:
        raise UsageError(f"the jump host {host} has its own ProxyJump/ProxyCommand; use --via openssh")
    return jump, jump.user or getpass.getuser()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
