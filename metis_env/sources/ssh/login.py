"""One login with metis-env's own SSH (paramiko): connect (maybe through one jump host), check the host
key before anything is asked, answer keyboard-interactive, read the files over pipelined SFTP."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from ...endpoint import MAX_FILE_BYTES
from ...render import printable
from ...errors import (
    AuthenticationError,
    ConnectionFailedError,
    HostKeyChangedError,
    MetisEnvError,
    RemoteFilesError,
    UnknownHostKeyError,
    UsageError,
)
from ._paramiko import paramiko
from .config import SSHConfig, Target, exception_line, parse_jump, load_ssh_config, MAX_TRIES
from .known_hosts import preferred_algorithms, fingerprint, host_matches, key_label, load_known_hosts
from .prompts import PromptsOnCallerThread
from .remote import Prompter, RemoteFile, natural, kind_phrase, refuse_too_many
from .sftp import DirEntry, FileChangedError, SFTPError, SFTPSession
from .watchdog import Watchdog

MAX_EMPTY_ROUNDS = 8  # OpenSSH's PAM login sends one empty round after the code
MAX_SERVER_TEXT = 300


class _HostileServer(paramiko.SSHException):
    """Raised in paramiko's thread to stop a login the server drags on; ``_Login.refusal`` says why."""


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
        self.watchdog = Watchdog(timeout)
        self.phase = "connecting"
        self.where = ""
        self.transports: list[paramiko.Transport] = []
        self.rounds = self.empty_rounds = 0
        self.shown: set[str] = set()
        self.refusal: str | None = None  # why we stopped a hostile server, when we did

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
        options.key_types = preferred_algorithms(known, options.key_types)

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
        authorities = [k for k in entries if k.marker == "@cert-authority"]
        if authorities:
            # Trust through a host CA must not silently turn into trust on first use.
            raise UnknownHostKeyError(
                f"{authorities[0].where} trusts {name} through a host certificate authority (@cert-authority), "
                "which metis-env's own SSH does not verify; use --via openssh (OpenSSH checks host certificates)"
            )
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
                self.rounds += 1
                if not prompts:
                    self.empty_rounds += 1
                    if self.empty_rounds > MAX_EMPTY_ROUNDS:
                        self.refusal = (
                            f"{target.display} sent {self.empty_rounds} keyboard-interactive rounds that ask nothing "
                            f"(a login takes one or two); stopped there. The login node is broken or hostile; try again later"
                        )
                        raise _HostileServer(self.refusal)
                    self.show_server_text(title, instructions)
                    return []  # nothing for the person to do: the server's clock keeps running
                with self.watchdog.paused():
                    self.show_server_text(title, instructions)
                    answers = [self.read_answer(printable(text), echo) for text, echo in prompts]
                answered = True
                return answers

            try:
                if interactive:
                    remaining = transport.auth_interactive(user, handler)
                else:
                    remaining = transport.auth_password(user, handler("", "", [(f"{user}@{target.hostname}'s password: ", False)])[0])
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException as exc:
                if self.refusal is not None:
                    raise ConnectionFailedError(self.refusal) from exc
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

    def show_server_text(self, *texts: str) -> None:
        """The server's title and instructions on stderr, each distinct text once and cut to one line
        of at most MAX_SERVER_TEXT characters, so that a server cannot flood the terminal."""
        for text in texts:
            text = printable(" ".join(text.split()))
            if text and text not in self.shown:
                self.shown.add(text)
                self.ui.progress(text if len(text) <= MAX_SERVER_TEXT else text[:MAX_SERVER_TEXT] + "...")

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
        session = SFTPSession(channel, on_packet=self.watchdog.restart)
        self.phase_is("listing the home directory")
        entries = session.start_and_list_dir(".")
        matches = sorted((e for e in entries if fnmatch.fnmatchcase(e.name, pattern)), key=lambda e: natural(e.name))
        refuse_too_many([e.name for e in matches], [e.size or 0 for e in matches], target.display, pattern)
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
            problems.append(f"{name} is {kind_phrase(entry.kind)}, not a plain file")
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
    config: SSHConfig | None = None,
) -> list[RemoteFile]:
    """Log in once and return every file in the home directory whose name matches ``pattern``.

    Raises ConnectionFailedError, UnknownHostKeyError, HostKeyChangedError, AuthenticationError,
    RemoteFilesError or UsageError with a one-line message; nothing here writes anything but
    known_hosts."""
    if target.proxy_command:
        raise UsageError(f"ProxyCommand is set for {target.alias} in the ssh config; use --via openssh")
    jump = parse_jump(target.proxy_jump, config or load_ssh_config()) if target.proxy_jump else None
    prompts = PromptsOnCallerThread(ui)
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
    if login.refusal is not None:
        return ConnectionFailedError(login.refusal)
    if login.watchdog.over_total:
        return ConnectionFailedError(
            f"{where} kept the sync going for {login.watchdog.total:g} s of server time without finishing "
            f"(while {login.phase}); stopped there; try again later, or raise --timeout"
        )
    if login.watchdog.expired and login.phase == "logging in" and login.empty_rounds > 1:
        return ConnectionFailedError(
            f"{where} kept sending keyboard-interactive rounds that ask nothing for {login.timeout:g} s "
            "without finishing the login; stopped there; try again later"
        )
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
    reason = exception_line(exc) or type(exc).__name__
    return ConnectionFailedError(f"the connection to {where} broke while {login.phase}: {reason}; try again")
