"""Log in to the login node and fetch the endpoint files: the only module that imports paramiko.

One connection, one passcode. The target comes from ``~/.ssh/config`` as OpenSSH reads it; the host key
is checked against known_hosts before anything is asked; keyboard-interactive answers every round the
server sends and a refused code is retried on the same connection; the files are listed and read with
pipelined SFTP requests (``sftp.py``). Prompts go through a ``Prompter``: this module never touches the
terminal. ``fetch_with_openssh`` does the same job through the system ``ssh`` so that an open
ControlMaster connection is reused.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import getpass
import glob
import hashlib
import hmac
import logging
import math
import os
import queue
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from .endpoint import MAX_FILE_BYTES
from .render import printable, quote_posix
from .errors import (
    AuthenticationError,
    ConnectionFailedError,
    HostKeyChangedError,
    MetisEnvError,
    RemoteFilesError,
    UnknownHostKeyError,
    UsageError,
)
from .sftp import DirEntry, FileChangedError, SFTPError, SFTPSession


def _import_paramiko():
    """paramiko, without the ``invoke`` package: paramiko imports it (45 ms here, with asyncio and
    unittest.mock) only to run ``Match exec`` lines of an ssh config. A config that has one gets a
    clear error naming --via openssh, where OpenSSH runs it natively."""
    saved = sys.modules.get("invoke", _ABSENT)
    sys.modules["invoke"] = None  # type: ignore[assignment]  # makes `import invoke` fail fast
    try:
        import paramiko as module
    finally:
        if saved is _ABSENT:
            del sys.modules["invoke"]
        else:
            sys.modules["invoke"] = saved
    return module


_ABSENT = object()
paramiko = _import_paramiko()


MAX_TRIES = 3
USER_SSH_CONFIG = "~/.ssh/config"
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")

# paramiko logs its transport thread's failures with full tracebacks; with no handler anywhere,
# Python's last-resort handler would print them to stderr in the middle of our one-line errors.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_handler: logging.Handler = logging.NullHandler()
_paramiko_log.addHandler(_paramiko_handler)
_paramiko_log.propagate = False


def set_debug_logging(enabled: bool) -> None:
    """Show paramiko's own log on stderr (``--debug``), or keep it silent (the default)."""
    global _paramiko_handler
    _paramiko_log.removeHandler(_paramiko_handler)
    _paramiko_handler = logging.StreamHandler() if enabled else logging.NullHandler()
    _paramiko_log.addHandler(_paramiko_handler)
    _paramiko_log.setLevel(logging.DEBUG if enabled else logging.WARNING)


class Prompter(Protocol):
    """How this module talks to the person running it (the CLI: hidden input on /dev/tty, stderr)."""

    def secret(self, prompt: str) -> str:
        """Read a value without echo (a passcode)."""

    def confirm(self, question: str) -> bool:
        """Ask yes/no."""

    def ask(self, prompt: str) -> str:
        """Read a visible value (a user name, an echoed server prompt)."""

    def progress(self, message: str) -> None:
        """Say what is happening (one line on stderr)."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    data: bytes = field(repr=False)


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


# --- known_hosts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownKey:
    patterns: tuple[str, ...]
    key_type: str
    blob: bytes
    marker: str | None
    where: str


def load_known_hosts(paths: Sequence[str]) -> list[KnownKey]:
    """Every key line of the files that exist, in OpenSSH's format (hashed names, patterns, markers)."""
    keys = []
    for path in paths:
        full = os.path.expanduser(path)
        try:
            with open(full, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = fields.pop(0) if fields[0].startswith("@") else None
            if len(fields) < 3:
                continue
            try:
                blob = base64.b64decode(fields[2], validate=True)
            except ValueError:
                continue
            keys.append(KnownKey(tuple(fields[0].split(",")), fields[1], blob, marker, f"{path}:{number}"))
    return keys


def host_matches(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH's rule: some pattern matches and no negated (``!``) pattern does."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = _hashed_name_matches(pattern, name)
        else:
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
            hit = re.fullmatch(regex, name.lower()) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _hashed_name_matches(entry: str, name: str) -> bool:
    try:
        _, _, salt, digest = entry.split("|")
        expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(expected, base64.b64decode(digest))
    except ValueError:
        return False


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def key_label(key_type: str) -> str:
    """``ssh-ed25519`` -> ``ED25519``, as OpenSSH names key types to people."""
    labels = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}
    return labels.get(key_type, "ECDSA" if key_type.startswith("ecdsa-") else key_type)


def _preferred_algorithms(known: Sequence[KnownKey], offered: Sequence[str]) -> tuple[str, ...]:
    """Ask the server for a key type we already know first, as OpenSSH does, so that a known host is
    not mistaken for a new one because it also has a key of another type."""
    first: list[str] = []
    for entry in known:
        names = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if entry.key_type == "ssh-rsa" else (entry.key_type,)
        first += [n for n in names if n in offered and n not in first]
    return tuple(first) + tuple(n for n in offered if n not in first)


# --- the session -------------------------------------------------------------------------------


class _Watchdog:
    """Closes the connection when the server stays silent for ``timeout`` seconds in one phase.

    paramiko's own timeouts leave gaps (``start_client`` returns silently, ``invoke_subsystem`` waits
    forever) and its auth timeout would also count the time a person takes to type a code; this
    clock restarts at each phase and stops while a prompt is open."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
        self._victims: list = []
        self._deadline: float | None = None
        self._paused = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="metis-env-watchdog", daemon=True)

    def watch(self, closeable) -> None:
        with self._cond:
            self._victims.append(closeable)

    def start(self) -> None:
        self.restart()
        self._thread.start()

    def restart(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.timeout
            self._cond.notify()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._cond:
            self._paused += 1
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
                self._deadline = time.monotonic() + self.timeout
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._paused or self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self.expired = True
                    break
                self._cond.wait(remaining)
            victims = list(self._victims) if self.expired else []
        for victim in victims:
            with contextlib.suppress(Exception):
                victim.close()


class _Login:
    """One fetch: connect (maybe through a jump host), check the host key, log in, read the files."""

    def __init__(
        self,
        ui: Prompter,
        timeout: float,
        accept_new_host_key: bool,
        passcode_stdin: IO[str] | None,
        max_tries: int,
    ) -> None:
        self.ui = ui
        self.timeout = timeout
        self.accept_new_host_key = accept_new_host_key
        self.passcode_stdin = passcode_stdin
        self.max_tries = 1 if passcode_stdin is not None else max_tries
        self.watchdog = _Watchdog(timeout)
        self.phase = "connecting"
        self.where = ""
        self.transports: list[paramiko.Transport] = []

    def phase_is(self, phase: str, where: str | None = None) -> None:
        self.phase = phase
        if where is not None:
            self.where = where
        self.watchdog.restart()

    # connection --------------------------------------------------------------------------------

    def open_socket(self, target: Target) -> socket.socket:
        self.phase_is("connecting", target.display)
        timeout = min(self.timeout, target.connect_timeout or self.timeout)
        try:
            sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
        except socket.gaierror as exc:
            raise ConnectionFailedError(
                f"cannot resolve {target.hostname}: {exc.strerror}; check --host or HostName in ~/.ssh/config"
            ) from exc
        except socket.timeout as exc:
            raise ConnectionFailedError(
                f"{target.display}: no answer to the connection in {timeout:g} s; check the network (VPN?) or raise --timeout"
            ) from exc
        except OSError as exc:
            raise ConnectionFailedError(f"cannot connect to {target.display}: {exc.strerror or exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.watchdog.watch(sock)
        return sock

    def log_in(self, target: Target, user: str, sock) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        self.transports.append(transport)
        self.watchdog.watch(transport)
        # paramiko's own clocks run a little longer than the watchdog's, so that a silent server is
        # reported as a timeout rather than as a broken banner.
        transport.banner_timeout = transport.handshake_timeout = self.timeout + 5
        transport.auth_timeout = None  # the watchdog times the server, not the person typing
        known = [k for k in load_known_hosts(target.known_hosts_files + target.global_known_hosts_files)
                 if k.marker is None and host_matches(k.patterns, target.known_hosts_name)]
        options = transport.get_security_options()
        options.key_types = _preferred_algorithms(known, options.key_types)

        self.phase_is("exchanging keys", target.display)
        transport.start_client(timeout=self.timeout)
        try:
            key = transport.get_remote_server_key()
        except paramiko.SSHException:
            if transport.is_active():  # start_client gave up waiting without saying so
                raise socket.timeout() from None
            raise
        self.check_host_key(target, key)
        self.phase_is("logging in", target.display)
        self.ui.progress(f"authenticating as {user}")
        self.authenticate(transport, target, user)
        return transport

    # host key ----------------------------------------------------------------------------------

    def check_host_key(self, target: Target, key: paramiko.PKey) -> None:
        name = target.known_hosts_name
        label = f"{key_label(key.get_name())} {fingerprint(key)}"
        entries = [k for k in load_known_hosts(target.known_hosts_files + target.global_known_hosts_files)
                   if host_matches(k.patterns, name)]
        blob = key.asbytes()
        if any(k.marker == "@revoked" and k.blob == blob for k in entries):
            raise HostKeyChangedError(f"the host key of {name} ({label}) is marked @revoked in known_hosts; refusing to connect")
        plain = [k for k in entries if k.marker is None]
        if any(k.blob == blob and k.key_type == key.get_name() for k in plain):
            self.ui.progress(f"host key ok ({label})")
            return
        same_type = [k for k in plain if k.key_type == key.get_name()]
        if same_type or plain:
            old = (same_type or plain)[0]
            raise HostKeyChangedError(
                f"HOST KEY CHANGED for {name}: it now sends {label}, but {old.where} has a different "
                f"{key_label(old.key_type)} key; someone may be intercepting the connection. If the change is "
                f"expected, remove the old key with: ssh-keygen -R '{name}'"
            )
        self.ui.progress(f"the authenticity of {name} can't be established; its {label.replace(' ', ' key fingerprint is ', 1)}")
        # --accept-new-host-key is like ssh -o StrictHostKeyChecking=accept-new: it wins over the config.
        strictness = "accept-new" if self.accept_new_host_key else target.strict_host_key_checking
        if strictness == "yes":
            raise UnknownHostKeyError(
                f"the host key of {name} ({label}) is not known and StrictHostKeyChecking is yes in the ssh "
                "config; check it with ALCF, then add it (ssh-keyscan) or run with --accept-new-host-key"
            )
        if strictness == "ask":
            with self.watchdog.paused():
                trusted = self.ui.confirm(f"Trust {name} and remember its key in {target.known_hosts_files[0]}?")
            if not trusted:
                raise UnknownHostKeyError(
                    f"the host key of {name} ({label}) is not known and was not accepted; "
                    "check it with ALCF, then run again with --accept-new-host-key or answer yes"
                )
        self.remember_host_key(target, key)

    def remember_host_key(self, target: Target, key: paramiko.PKey) -> None:
        path = Path(os.path.expanduser(target.known_hosts_files[0]))
        name = target.known_hosts_name
        recorded = paramiko.HostKeys.hash_host(name) if target.hash_known_hosts else name
        line = f"{recorded} {key.get_name()} {key.get_base64()}\n"
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        line = "\n" + line
                handle.write(line.encode())
        except OSError as exc:
            self.ui.progress(f"warning: could not add {name} to {path}: {exc.strerror}")
            return
        self.ui.progress(f"added {name} ({key_label(key.get_name())}) to {path}")

    # authentication ----------------------------------------------------------------------------

    def authenticate(self, transport: paramiko.Transport, target: Target, user: str) -> None:
        keys = list(self.candidate_keys(target))
        allowed = ["keyboard-interactive"]
        if keys:
            # Asking which methods the server takes costs two round trips in paramiko: only worth
            # it when there is a key to offer before a passcode.
            try:
                transport.auth_none(user)
                return
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
            if "publickey" in allowed:
                allowed = self.try_keys(transport, user, keys) or allowed
                if transport.is_authenticated():
                    return
        for _ in range(2):
            try:
                if "keyboard-interactive" in allowed:
                    return self.answer_prompts(transport, target, user, interactive=True)
                if "password" in allowed:
                    return self.answer_prompts(transport, target, user, interactive=False)
                break
            except paramiko.BadAuthenticationType as exc:
                allowed = [m for m in exc.allowed_types if m != "keyboard-interactive"]
        if allowed == ["publickey"]:
            raise AuthenticationError(f"{target.display} accepts only SSH keys and refused yours (user {user}); use ssh-agent or --via openssh")
        raise AuthenticationError(
            f"{target.display} offers only {', '.join(allowed) or 'no'} authentication; metis-env can use "
            "keyboard-interactive, password or SSH keys (try --via openssh)"
        )

    def try_keys(self, transport: paramiko.Transport, user: str, keys: Sequence[paramiko.PKey]) -> list[str]:
        for key in keys:
            try:
                remaining = transport.auth_publickey(user, key)
            except paramiko.AuthenticationException:
                if not transport.is_active():
                    raise
                continue
            return remaining  # [] when logged in, else the methods still required
        return []

    def candidate_keys(self, target: Target) -> Iterator[paramiko.PKey]:
        if not target.identities_only:
            with contextlib.suppress(Exception):
                yield from paramiko.Agent().get_keys()
        for path in target.identity_files:
            full = os.path.expanduser(path)
            if not os.path.exists(full):
                continue
            try:
                key = paramiko.PKey.from_path(full)
            except (paramiko.PasswordRequiredException, TypeError):  # from_path says TypeError for OpenSSH-format keys
                self.ui.progress(f"skipping {path}: it is encrypted (add it to ssh-agent to use it)")
                continue
            except Exception:  # not a key paramiko can read; OpenSSH would skip it too
                continue
            yield key

    def answer_prompts(self, transport: paramiko.Transport, target: Target, user: str, interactive: bool) -> None:
        for attempt in range(1, self.max_tries + 1):
            answered = False

            def handler(title: str, instructions: str, prompts: Sequence[tuple[str, bool]]) -> list[str]:
                nonlocal answered
                with self.watchdog.paused():
                    for text in (title, instructions):
                        if text and text.strip():
                            self.ui.progress(printable(text.strip()))
                    answers = [self.read_answer(printable(text), echo) for text, echo in prompts]
                answered = answered or bool(prompts)
                return answers

            try:
                if interactive:
                    remaining = transport.auth_interactive(user, handler)
                else:
                    remaining = transport.auth_password(user, handler("", "", [(f"{user}@{target.hostname}'s password: ", False)])[0])
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException as exc:
                if self.watchdog.expired:
                    raise
                closed = not transport.is_active()
                if closed and attempt < self.max_tries and answered and "EOF" in str(exc):
                    raise ConnectionFailedError(
                        f"{target.display} closed the connection after the passcode was sent; "
                        "wait for a new code and run sync again"
                    ) from exc
                if closed and not answered:
                    raise
                tries = "the passcode" if attempt == 1 else f"{attempt} passcodes"
                if attempt == self.max_tries or closed:
                    raise AuthenticationError(
                        f"{target.display} refused {tries} for {user}; check the user name and wait for a "
                        "fresh code before trying again"
                    ) from exc
                self.ui.progress(
                    f"{target.display} refused that passcode; wait for the next code ({self.max_tries - attempt} "
                    f"{'try' if self.max_tries - attempt == 1 else 'tries'} left)"
                )
                continue
            if transport.is_authenticated():
                return
            if remaining:
                raise AuthenticationError(
                    f"{target.display} wants another step after the passcode ({', '.join(remaining)}); use --via openssh"
                )

    def read_answer(self, prompt: str, echo: bool) -> str:
        if self.passcode_stdin is not None and not echo:
            line = self.passcode_stdin.readline()
            if not line:
                raise UsageError("--passcode-stdin: stdin is empty; pipe one code, e.g. printf '%s\\n' 123456 |")
            return line.strip()
        return self.ui.ask(prompt) if echo else self.ui.secret(prompt)

    # files -------------------------------------------------------------------------------------

    def fetch(self, transport: paramiko.Transport, target: Target, pattern: str) -> list[RemoteFile]:
        self.phase_is("opening the SFTP channel")
        channel = transport.open_session(timeout=self.timeout)
        channel.settimeout(self.timeout)
        # OpenSSH opens a session channel with a zero window until the subsystem runs, so nothing can
        # be sent ahead of its reply: wait for it, then send INIT and OPENDIR together.
        channel.invoke_subsystem("sftp")
        session = SFTPSession(channel)
        self.phase_is("listing the home directory")
        entries = session.start_and_list_dir(".")
        matches = sorted((e for e in entries if fnmatch.fnmatchcase(e.name, pattern)), key=lambda e: _natural(e.name))
        _refuse_unusable(matches, target)
        if not matches:
            return []
        self.phase_is("reading the endpoint files")
        done = 0

        def on_file_done(name: str) -> None:
            nonlocal done
            done += 1
            self.watchdog.restart()
            self.ui.progress(f"fetched {done}/{len(matches)} {printable(name)}")

        try:
            contents = session.read_files([(e.name, e.size or 0) for e in matches], on_file_done)
        except FileChangedError as exc:
            raise RemoteFilesError(f"{target.display}: {exc}; run sync again") from exc
        with contextlib.suppress(Exception):
            channel.close()
        return [RemoteFile(e.name, data) for e, data in zip(matches, contents)]

    def close(self) -> None:
        self.watchdog.stop()
        for transport in reversed(self.transports):
            with contextlib.suppress(Exception):
                transport.close()


def _refuse_unusable(matches: Sequence[DirEntry], target: Target) -> None:
    problems = []
    for entry in matches:
        name = printable(entry.name)
        if entry.kind != "file":
            problems.append(f"{name} is a {entry.kind}, not a plain file")
        elif entry.size is None:
            problems.append(f"{name} has no size in the listing")
        elif entry.size > MAX_FILE_BYTES:
            problems.append(f"{name} is {entry.size} bytes, over the {MAX_FILE_BYTES // 1024} KiB limit")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RemoteFilesError(
            f"on {target.display}: {problems[0]}{more}; endpoint files must be plain files in the home "
            "directory; nothing was read"
        )


class _Cancelled(Exception):
    """The person interrupted a prompt; the caller's thread raises the real KeyboardInterrupt."""


class _PromptsOnCallerThread:
    """Runs the login in a worker thread and answers its prompts on the calling thread.

    paramiko calls the keyboard-interactive handler from its transport thread. Prompting there would
    leave the terminal without echo if Ctrl-C arrived (the signal goes to the main thread, the thread
    holding the terminal dies with the process before getpass restores it); here every prompt runs
    on the caller's thread, where Ctrl-C interrupts it cleanly."""

    def __init__(self, ui: Prompter) -> None:
        self.ui = ui
        self.owner = threading.current_thread()
        self.requests: queue.Queue = queue.Queue()

    def secret(self, prompt: str) -> str:
        return self._call("secret", prompt)

    def confirm(self, question: str) -> bool:
        return self._call("confirm", question)

    def ask(self, prompt: str) -> str:
        return self._call("ask", prompt)

    def progress(self, message: str) -> None:
        self._call("progress", message)

    def _call(self, method: str, argument):
        if threading.current_thread() is self.owner:
            return getattr(self.ui, method)(argument)
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.requests.put((method, argument, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def run(self, work: Callable[[], list[RemoteFile]], on_interrupt: Callable[[], None]) -> list[RemoteFile]:
        outcome: list = []

        def worker() -> None:
            try:
                outcome.append((True, work()))
            except BaseException as exc:  # handed to the caller's thread, raised there
                outcome.append((False, exc))
            self.requests.put(None)

        thread = threading.Thread(target=worker, name="metis-env-login", daemon=True)
        thread.start()
        try:
            while True:
                item = self.requests.get()
                if item is None:
                    break
                method, argument, reply = item
                try:
                    reply.put((True, getattr(self.ui, method)(argument)))
                except BaseException as exc:
                    # Ctrl-C is the caller's to raise: the asking thread (maybe paramiko's) only
                    # needs to stop, quietly, which an Exception lets it do.
                    reply.put((False, exc if isinstance(exc, Exception) else _Cancelled()))
                    raise
        except BaseException:
            on_interrupt()
            raise
        thread.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


def fetch_endpoint_files(
    target: Target,
    user: str,
    pattern: str,
    ui: Prompter,
    *,
    timeout: float = 30.0,
    accept_new_host_key: bool = False,
    passcode_stdin: IO[str] | None = None,
    max_tries: int = MAX_TRIES,
    config: paramiko.SSHConfig | None = None,
) -> list[RemoteFile]:
    """Log in once and return every file in the home directory whose name matches ``pattern``.

    Raises ConnectionFailedError, UnknownHostKeyError, HostKeyChangedError, AuthenticationError,
    RemoteFilesError or UsageError with a one-line message; nothing here writes anything but
    known_hosts."""
    if target.proxy_command:
        raise UsageError(f"ProxyCommand is set for {target.alias} in the ssh config; use --via openssh")
    jump = _parse_jump(target.proxy_jump, config or load_ssh_config()) if target.proxy_jump else None
    prompts = _PromptsOnCallerThread(ui)
    login = _Login(prompts, timeout, accept_new_host_key, passcode_stdin, max_tries)

    def work() -> list[RemoteFile]:
        try:
            if jump is not None:
                jump_target, jump_user = jump
                prompts.progress(f"connecting to {jump_target.display} (jump host)")
                jump_transport = login.log_in(jump_target, jump_user, login.open_socket(jump_target))
                login.phase_is("opening a channel through the jump host", target.display)
                try:
                    sock = jump_transport.open_channel(
                        "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
                    )
                except paramiko.ChannelException as exc:
                    raise ConnectionFailedError(
                        f"the jump host {jump_target.display} could not reach {target.hostname}:{target.port}: {exc.text}"
                    ) from exc
                prompts.progress(f"connecting to {target.display} through {jump_target.display}")
            else:
                prompts.progress(f"connecting to {target.display}")
                sock = login.open_socket(target)
            transport = login.log_in(target, user, sock)
            return login.fetch(transport, target, pattern)
        except MetisEnvError:
            raise
        except (SFTPError, paramiko.SSHException, EOFError, OSError) as exc:
            raise _broken(login, exc) from exc

    login.watchdog.start()
    try:
        return prompts.run(work, on_interrupt=login.close)
    finally:
        login.close()


def _broken(login: _Login, exc: BaseException) -> MetisEnvError:
    where = login.where or "the login node"
    if login.watchdog.expired or isinstance(exc, socket.timeout):
        return ConnectionFailedError(
            f"{where} stopped answering while {login.phase} (nothing for {login.timeout:g} s); "
            "try again later, or raise --timeout"
        )
    if isinstance(exc, SFTPError) and login.phase == "reading the endpoint files":
        return RemoteFilesError(f"{where}: {exc}")
    closed = isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError))
    if closed or (login.transports and not login.transports[-1].is_active()):
        # paramiko words this many ways ("No existing session", "Socket is closed", EOF, reset).
        return ConnectionFailedError(f"{where} closed the connection while {login.phase}; try again")
    reason = _one_line(exc) or type(exc).__name__
    return ConnectionFailedError(f"the connection to {where} broke while {login.phase}: {reason}; try again")


# --- the system ssh ----------------------------------------------------------------------------

_REMOTE_SCRIPT = r"""
LC_ALL=C; export LC_ALL
cd || exit 97
pattern=%(pattern)s
token=%(token)s
for f in * .[!.]* ..?*; do
  case $f in $pattern) ;; *) continue ;; esac
  size=0
  if [ -L "$f" ]; then kind=link
  elif [ -d "$f" ]; then kind=directory
  elif [ -f "$f" ]; then kind=file; size=$(wc -c < "$f") || exit 98; size=$((size + 0))
  elif [ -e "$f" ]; then kind=special
  else continue
  fi
  printf '\n%%s %%s %%s %%s\n%%s\n' "$token" "$kind" "$size" "${#f}" "$f"
  if [ "$kind" = file ] && [ "$size" -le %(max)d ]; then
    dd if="$f" bs=%(limit)d count=1 2>/dev/null || exit 98
  fi
  printf '\n%%s end\n' "$token"
done
printf '\n%%s done\n' "$token"
"""


def fetch_with_openssh(
    host: str,
    pattern: str,
    ui: Prompter,
    *,
    user: str | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    accept_new_host_key: bool = False,
    ssh_command: Sequence[str] = ("ssh",),
    passcode: str | None = None,
) -> list[RemoteFile]:
    """Run the system ssh once; it prints every matching file between random boundary lines.

    OpenSSH does its own config, host-key check and prompts (on the terminal), and reuses an open
    ControlMaster connection, so then no passcode is asked at all. Only the host, the user name and
    the port go into argv; the script (with the pattern) goes to the remote ``sh`` on stdin. A
    ``passcode`` (--passcode-stdin) reaches ssh through a one-shot askpass (``_OneCodeAskpass``)."""
    token = secrets.token_hex(16)
    script = _REMOTE_SCRIPT % {
        "pattern": quote_posix(pattern),
        "token": token,
        "max": MAX_FILE_BYTES,
        "limit": MAX_FILE_BYTES + 1,
    }
    alive = max(1, math.ceil(timeout / 3))
    argv = [*ssh_command, "-T", "-o", f"ConnectTimeout={max(1, math.ceil(timeout))}",
            "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3"]
    if accept_new_host_key:
        argv += ["-o", "StrictHostKeyChecking=accept-new"]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    if passcode is not None:
        argv += ["-o", "NumberOfPasswordPrompts=1"]
    argv += ["--", host, "sh -s"]
    ui.progress(f"running {ssh_command[0]} {host} (an open ControlMaster connection needs no passcode)")
    # ServerAlive catches a dead link, not a remote `sh` stuck on a hung home directory: bound the
    # whole run too, leaving a person two minutes to type a code at ssh's own prompt.
    limit = 4 * timeout + (0 if passcode is not None else 120)
    try:
        with _OneCodeAskpass(passcode) as env:
            result = subprocess.run(
                argv, input=script.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False,
                timeout=limit,
            )
    except subprocess.TimeoutExpired:
        raise ConnectionFailedError(
            f"{ssh_command[0]} {host} did not finish within {limit:g} s; check the login node, or raise --timeout"
        ) from None
    except OSError as exc:
        raise ConnectionFailedError(f"cannot run {ssh_command[0]}: {exc.strerror or exc}; install OpenSSH or use --via paramiko") from exc
    messages = result.stderr.decode("utf-8", "replace")
    for line in messages.splitlines():
        if line.strip():
            ui.progress(f"ssh: {printable(line.strip())}")
    if result.returncode != 0:
        raise _ssh_failure(host, result.returncode, messages)
    files = parse_boundary_output(result.stdout, token, host)
    if files:
        ui.progress(f"fetched {len(files)}/{len(files)}")
    return files


class _OneCodeAskpass:
    """Hands one passcode to ssh through SSH_ASKPASS without argv, environment or a file holding it:
    the askpass script reads a FIFO in a private directory, which a thread here writes once and then
    removes, so a second question (a refused code) gets nothing. Host-key questions are declined
    (ssh then says so and fails). Without a passcode: ssh's own environment, untouched."""

    _SCRIPT = """#!/bin/sh
case "$1" in *"continue connecting"*) exit 1 ;; esac
[ -p '{fifo}' ] && exec cat '{fifo}'
exit 1
"""

    def __init__(self, passcode: str | None) -> None:
        self.passcode = passcode
        self.directory: str | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> dict[str, str] | None:
        if self.passcode is None:
            return None
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="metis-env-askpass-")  # 0700
        fifo = os.path.join(self.directory, "code")
        os.mkfifo(fifo, 0o600)
        script = os.path.join(self.directory, "askpass")
        with open(os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700), "w") as handle:
            handle.write(self._SCRIPT.format(fifo=fifo))
        self.thread = threading.Thread(target=self._serve, args=(fifo,), name="metis-env-askpass", daemon=True)
        self.thread.start()
        return {**os.environ, "SSH_ASKPASS": script, "SSH_ASKPASS_REQUIRE": "force"}

    def _serve(self, fifo: str) -> None:
        while not self.stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until askpass opens it
            except OSError:
                self.stop.wait(0.01)
                continue
            with contextlib.suppress(OSError):
                os.unlink(fifo)
                os.set_blocking(fd, True)
                os.write(fd, f"{self.passcode}\n".encode())
            os.close(fd)
            return

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.directory is not None:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)


def _ssh_failure(host: str, code: int, messages: str) -> MetisEnvError:
    if "IDENTIFICATION HAS CHANGED" in messages or "has changed and you have requested strict" in messages:
        return HostKeyChangedError(f"ssh refused {host}: its host key changed (see ssh's warning above)")
    if "Host key verification failed" in messages or "No ED25519 host key is known" in messages:
        return UnknownHostKeyError(
            f"ssh could not verify the host key of {host}; connect once with ssh, or run with --accept-new-host-key"
        )
    if "Permission denied" in messages or "Too many authentication failures" in messages:
        return AuthenticationError(f"ssh could not log in to {host} (see ssh's message above)")
    if code in (97, 98):
        return RemoteFilesError(f"the remote shell on {host} could not read the home directory or a file in it")
    return ConnectionFailedError(f"ssh to {host} failed with exit status {code} (see ssh's message above)")


def parse_boundary_output(output: bytes, token: str, host: str) -> list[RemoteFile]:
    """Parse what ``_REMOTE_SCRIPT`` printed; refuse what is not a plain file of at most 64 KiB."""
    marker = b"\n" + token.encode() + b" "
    if marker + b"done\n" not in output:
        raise ConnectionFailedError(f"the output of ssh {host} ended early (no end marker); try again")
    files: list[RemoteFile] = []
    problems = []
    position = output.find(marker)
    while position != -1:
        start = position + len(marker)
        header_end = output.find(b"\n", start)
        header = output[start:header_end].split()
        if header == [b"done"]:
            break
        try:
            kind, size, name_length = header[0].decode(), int(header[1]), int(header[2])
        except (IndexError, ValueError):
            raise ConnectionFailedError(f"cannot parse the output of ssh {host}: a header is malformed") from None
        name_bytes = output[header_end + 1 : header_end + 1 + name_length]
        name = name_bytes.decode("utf-8", "surrogateescape")
        body_start = header_end + 1 + name_length + 1
        end = output.find(marker + b"end\n", body_start - 1)
        if end == -1:
            raise ConnectionFailedError(f"cannot parse the output of ssh {host}: {printable(name)} has no end marker")
        data = output[body_start:end]
        if kind != "file":
            problems.append(f"{printable(name)} is a {kind.replace('link', 'symbolic link')}, not a plain file")
        elif size > MAX_FILE_BYTES:
            problems.append(f"{printable(name)} is {size} bytes, over the {MAX_FILE_BYTES // 1024} KiB limit")
        elif len(data) != size:
            raise RemoteFilesError(f"on {host}: {printable(name)} changed while it was being read; run sync again")
        else:
            files.append(RemoteFile(name, data))
        position = output.find(marker, end + len(marker) + 4)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RemoteFilesError(
            f"on {host}: {problems[0]}{more}; endpoint files must be plain files in the home directory; nothing was read"
        )
    return sorted(files, key=lambda f: _natural(f.name))


# --- small helpers -----------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _natural(name: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


__all__ = [
    "Prompter",
    "RemoteFile",
    "Target",
    "fetch_endpoint_files",
    "fetch_with_openssh",
    "fingerprint",
    "host_matches",
    "load_known_hosts",
    "load_ssh_config",
    "parse_boundary_output",
    "resolve_target",
    "set_debug_logging",
]
