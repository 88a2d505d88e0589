"""``~/.ssh/config`` as OpenSSH reads it: where to connect for an alias (``Target``), tokens, jump hosts."""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...errors import UsageError

from ._paramiko import paramiko
from .expansion import expand_tokens, expand_value, expansion_tokens
from .openssh_config import known_hosts_files as openssh_known_hosts
from .openssh_config import openssh_client, run_ssh_g

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
        """The name known_hosts files it under: ``host``, ``[host]:port`` off port 22, or HostKeyAlias."""
        if self.host_key_alias:  # OpenSSH: the alias alone, whatever the port
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


# --- ~/.ssh/config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHConfig:
    """The ssh config files a resolution reads; ``openssh`` is the ssh that answers for them
    (``ssh -G``), or None where the fallback parser (paramiko, ``parsed``) does."""

    paths: tuple[str, ...]
    parsed: paramiko.SSHConfig | None = field(default=None, repr=False)
    openssh: str | None = None


def load_ssh_config(
    paths: Sequence[str] = (USER_SSH_CONFIG, SYSTEM_SSH_CONFIG), *, use_openssh: bool | None = None
) -> SSHConfig:
    """The user's then the system's ssh config. Resolved by OpenSSH (``ssh -G``) where an OpenSSH
    client can answer for these files (``use_openssh`` None: when ``openssh_client`` finds one);
    otherwise parsed here as one file (first value wins, as in OpenSSH), ``Include`` expanded."""
    default = (USER_SSH_CONFIG, SYSTEM_SSH_CONFIG)
    openssh = None if use_openssh is False else openssh_client(paths, default)
    if use_openssh and openssh is None:
        openssh = shutil.which("ssh")
    try:
        parsed = parse_ssh_config(paths)
    except UsageError:
        if openssh is None:
            raise
        parsed = None  # OpenSSH answers; it reports a broken config in its own words
    return SSHConfig(tuple(paths), parsed, openssh)


def parse_ssh_config(paths: Sequence[str], first: str = "") -> paramiko.SSHConfig:
    """The fallback parser: paramiko's, over the files with Include expanded and a few of its
    differences from OpenSSH smoothed out (see ``_read_config_text``); ``first`` goes before them."""
    parts = [first] if first else []
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


MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
_KEYWORD = re.compile(r"\s*(\w+)(?:\s*=\s*|\s+)(.*)")


def _read_config_text(path: str, base: str, depth: int) -> str:
    """The file with ``Include`` (also ``Include=...``) expanded in place. After an included file,
    the including file's current ``Host``/``Match`` line is repeated, so that the lines after the
    Include stay in their own block (not the included file's last one). Deeper than OpenSSH's 16
    levels is the error OpenSSH gives, at once (six files including each other took 34 s)."""
    if depth > MAX_INCLUDE_DEPTH:
        raise UsageError(f"cannot read the ssh config: too many recursive configuration includes (in {path}); fix the Include lines")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ""
    out = []
    block = "Host *"
    for line in lines:
        match = _KEYWORD.match(line)
        keyword = match.group(1).lower() if match else ""
        if match and keyword not in ("host", "match", "include"):
            line = _without_comment(line)
        if keyword == "match":
            line = _match_lowercased(match.group(2))
        if keyword in ("host", "match"):
            block = line.strip()
        if keyword == "include":
            for pattern in split_config_words(match.group(2)):
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = os.path.join(base, pattern)
                for included in sorted(glob.glob(pattern)):
                    out.append(_read_config_text(included, base, depth + 1))
            out.append(block)
        elif keyword == "identityfile":
            out.append(_identity_line(match.group(2)))
        elif keyword in _WORD_LIST_KEYWORDS:
            # paramiko strips one pair of outer quotes (`"a b" "c d"` -> `a b" "c d`); a trailing
            # comment word keeps the value whole for split_config_words, which drops it.
            out.append(line + " #")
        else:
            out.append(line)
    return "\n".join(out)


def _without_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (an unquoted word starting with #), as OpenSSH reads it."""
    quote = None
    for i, c in enumerate(line):
        if quote is None and c in "'\"":
            quote = c
        elif c == quote:
            quote = None
        elif quote is None and c == "#" and i > 0 and line[i - 1].isspace():
            return line[:i].rstrip()
    return line


def _match_lowercased(criteria: str) -> str:
    """``Match Host x User y`` as ``Match host x user y``: OpenSSH takes criteria in any case,
    paramiko only in lower case (it took ``Host`` for always true)."""
    words = split_config_words(criteria)
    out, expect_argument = [], False
    for word in words:
        if expect_argument:
            out.append(word)
            expect_argument = False
            continue
        negated = word.startswith("!")
        name = word[1:].lower() if negated else word.lower()
        out.append(("!" if negated else "") + name)
        expect_argument = name not in ("all", "canonical", "final")
    return "Match " + " ".join(f'"{w}"' if any(c.isspace() for c in w) else w for w in out)


_WORD_LIST_KEYWORDS = ("userknownhostsfile", "globalknownhostsfile")
# paramiko replaces every ~ and a few % tokens in IdentityFile its own way (no %p, no %%, ~ anywhere):
# the value reaches it masked, and identity_paths expands it as OpenSSH does.
_MASK = str.maketrans({"%": "\ue000", "~": "\ue001"})
_UNMASK = str.maketrans({"\ue000": "%", "\ue001": "~"})


def _identity_line(value: str) -> str:
    words = split_config_words(value)
    return f'  IdentityFile "{words[0].translate(_MASK)}"' if words else "  IdentityFile"


def _unmasked(value: str) -> str:
    return value.translate(_UNMASK)


def resolve_target(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    config: SSHConfig | None = None,
) -> Target:
    """What OpenSSH would connect to for ``host``: its ``HostName``, ``Port``, ``User``, ... from the ssh
    config; ``port`` and ``user`` given here win, as ``ssh -p`` and ``ssh -l`` do."""
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise UsageError(f"{host!r} is not a host name")
    config = load_ssh_config() if config is None else config
    if config.openssh is not None:
        return _target_from_openssh(host, port, user, config)
    parsed = config.parsed
    if port or user:
        # ssh -p/-l set Port/User before any config line is read, so Match user, %r and %p see them:
        # the same as a first block that sets them.
        given = (f"  Port {port}\n" if port else "") + (f"  User {user}\n" if user else "")
        parsed = parse_ssh_config(config.paths, first=f"Host *\n{given}")
    try:
        options = parsed.lookup(host)
    except Exception as exc:  # Match exec without invoke installed, bad tokens, ...
        if "invoke" in str(exc):
            raise UsageError(
                "the ssh config has a Match exec line, which metis-env's fallback ssh config reader does not run; "
                "use --via openssh, or let OpenSSH read the config (ssh installed, $HOME your home directory)"
            ) from None
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
        global_known_hosts_files=known_hosts_paths(options.get("globalknownhostsfile"), tokens, keyword="GlobalKnownHostsFile")
        or DEFAULT_GLOBAL_KNOWN_HOSTS,
        hash_known_hosts=str(options.get("hashknownhosts", "no")).lower() == "yes",
        strict_host_key_checking=_strictness(options.get("stricthostkeychecking", "ask")),
        identity_files=identity_paths([_unmasked(v) for v in options.get("identityfile", ())], tokens) or DEFAULT_IDENTITIES,
        identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
    )


def _target_from_openssh(host: str, port: int | None, user: str | None, config: SSHConfig) -> Target:
    """The Target from ``ssh -G``'s answer. IdentityFile's tokens are expanded here (``ssh -G``
    prints them as written); a User equal to the local name counts as unset (OpenSSH prints it as the
    default), so that sync asks once."""
    config_file = None if len(config.paths) != 1 else config.paths[0]
    answer = run_ssh_g(config.openssh, host, port=port, user=user, config_file=config_file)
    options = answer.options

    def one(key: str) -> str | None:
        values = options.get(key)
        return None if not values or values[0].lower() == "none" else values[0]

    try:
        final_port = int(one("port") or 22)
        connect_timeout = float(one("connecttimeout")) if one("connecttimeout") else None
    except ValueError:
        raise UsageError(f"ssh -G {host}: cannot read its Port or ConnectTimeout") from None
    hostname = one("hostname") or host
    final_user = user or one("user")
    if not user and final_user == getpass.getuser():
        final_user = None
    alias = one("hostkeyalias")
    tokens = expansion_tokens(alias=host, hostname=hostname, port=final_port, user=final_user, host_key_alias=alias)
    read = config.paths if config_file is None else (config_file,)
    user_files = openssh_known_hosts(
        one_line(options, "userknownhostsfile"), answer.expanded_user_known_hosts,
        [*keyword_values(read, "UserKnownHostsFile"), list(DEFAULT_KNOWN_HOSTS)],
    )
    global_files = openssh_known_hosts(
        one_line(options, "globalknownhostsfile"), (),
        [*keyword_values(read, "GlobalKnownHostsFile"), list(DEFAULT_GLOBAL_KNOWN_HOSTS)], keyword="GlobalKnownHostsFile",
    )
    # OpenSSH takes ~ from the password database (``$HOME`` is the same here unless a test forces OpenSSH).
    identities = tuple(_tilde_for_display(_openssh_tilde(p)) for p in identity_paths(options.get("identityfile", []), tokens))
    return Target(
        alias=host,
        hostname=hostname,
        port=final_port,
        user=final_user,
        connect_timeout=connect_timeout,
        proxy_jump=one("proxyjump"),
        proxy_command=one("proxycommand"),
        host_key_alias=alias,
        known_hosts_files=tuple(_tilde_for_display(path) for path in user_files) or ("/dev/null",),
        global_known_hosts_files=tuple(_tilde_for_display(_openssh_tilde(p)) for p in global_files) or ("/dev/null",),
        hash_known_hosts=(one("hashknownhosts") or "no").lower() == "yes",
        strict_host_key_checking=_strictness(one("stricthostkeychecking") or "ask"),
        identity_files=identities or DEFAULT_IDENTITIES,
        identities_only=(one("identitiesonly") or "no").lower() == "yes",
    )


def one_line(options: dict[str, list[str]], key: str) -> str | None:
    values = options.get(key)
    return values[0] if values else None


def _openssh_tilde(path: str) -> str:
    """A leading ``~`` or ``~user`` as OpenSSH's ``tilde_expand`` reads it: from the password database."""
    if not path.startswith("~"):
        return path
    name, slash, rest = path[1:].partition("/")
    try:
        home = (pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())).pw_dir
    except KeyError:
        return path
    return home.rstrip("/") + "/" + rest.lstrip("/") if slash else home


def _tilde_for_display(path: str) -> str:
    """OpenSSH's expanded ``/home/ada/.ssh/known_hosts`` shown as ``~/.ssh/known_hosts``, where ``~``
    opens the same file (``$HOME`` is the password database's home, as OpenSSH takes it)."""
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/")
    except KeyError:
        return path
    if home and path.startswith(home + "/") and os.path.realpath(os.path.expanduser("~")) == os.path.realpath(home):
        return "~" + path[len(home):]
    return path


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


def known_hosts_paths(value: str | None, tokens: dict[str, str], *, keyword: str = "UserKnownHostsFile") -> tuple[str, ...]:
    """UserKnownHostsFile/GlobalKnownHostsFile as OpenSSH reads them: several files, quoted paths with
    spaces; in UserKnownHostsFile ``${VAR}`` and ``%`` tokens expanded (OpenSSH expands neither in
    GlobalKnownHostsFile). A leading ``~`` stays for display (expanded when opened)."""
    if value is None:
        return ()
    words = split_config_words(value)
    if [w.lower() for w in words] == ["none"]:
        return ("/dev/null",)
    if keyword != "UserKnownHostsFile":
        return tuple(words)
    return tuple(expand_value(word, tokens, os.environ, keyword=keyword) for word in words)


def identity_paths(values: Sequence[str], tokens: dict[str, str]) -> tuple[str, ...]:
    """IdentityFile values as OpenSSH opens them: ``none`` skipped, ``~`` leading only, ``${VAR}`` and
    ``%`` tokens expanded (an unset variable stops, as OpenSSH stops)."""
    return tuple(expand_value(v, tokens, os.environ, keyword="IdentityFile") for v in values if v.lower() != "none")


def keyword_values(paths: Sequence[str], keyword: str) -> list[list[str]]:
    """Every value ``keyword`` has anywhere in these config files (Include followed, whatever block),
    split into words as OpenSSH splits them: what an ``ssh -G`` answer can have come from."""
    values = []
    for path in paths:
        full = os.path.expanduser(path)
        try:
            text = _read_config_text(full, os.path.dirname(full), depth=0)
        except UsageError:
            continue
        for line in text.splitlines():
            match = _KEYWORD.match(line)
            if match and match.group(1).lower() == keyword.lower():
                try:
                    values.append(split_config_words(match.group(2)))
                except UsageError:
                    continue
    return values


def _parse_jump(spec: str, config: SSHConfig) -> tuple[Target, str]:
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


parse_jump = _parse_jump  # doctor asks what sync would: the same refusal, word for word


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
