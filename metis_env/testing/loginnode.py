"""An in-process SSH login node on 127.0.0.1: keyboard-interactive one-time codes and SFTP in a folder.

It behaves like the ALCF login node as far as ``metis-env sync`` can tell (a ``Password:`` prompt
that wants a one-time code, then OpenSSH's empty second round, SFTP rooted in the home directory), and
it can misbehave on request: drop the connection or stop answering at a chosen stage.

    with LoginNode(home, "alice", secret) as node:
        port = node.port
        code = node.expected_code()      # what the user's token would show now

Codes are RFC 4226 HOTP (counter, like pam_oath's ``HOTP`` users) or RFC 6238 TOTP, computed here
with hmac; a code is accepted once, and three refusals end the connection (OpenSSH's MaxAuthTries).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import logging
import os
import posixpath
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .hostile_sftp import SFTP_ATTACKS, HostileSFTP

logging.getLogger("paramiko").addHandler(logging.NullHandler())

STAGES = ("banner", "handshake", "auth", "listdir", "read")


def hotp(secret: bytes, counter: int, digits: int = 6) -> str:
    """RFC 4226: the code a counter-based token shows for ``counter``."""
    mac = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp(secret: bytes, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    """RFC 6238: the code a time-based token shows at ``at`` (default now)."""
    return hotp(secret, int((time.time() if at is None else at) // step), digits)


def generate_host_key() -> paramiko.PKey:
    """A fresh Ed25519 host key (paramiko cannot generate Ed25519 itself)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode("ascii")))


@dataclass
class Faults:
    """Where the node misbehaves. Stages: ``banner`` (hang only: accept, then never speak),
    ``handshake`` (after key exchange, at the client's first request), ``auth`` (when the answer to the prompt arrives),
    ``listdir`` (the directory listing), ``read`` (the second file read request: mid-transfer)."""

    drop_at: str | None = None
    hang_at: str | None = None
    # A hostile node, after the host key is accepted: ``empty_rounds`` zero-prompt keyboard-interactive
    # rounds (each with ``instructions``) after the code is accepted, -1 for endless; ``sftp`` one of
    # SFTP_ATTACKS, answered by a raw SFTP server instead of paramiko's.
    empty_rounds: int = 0
    instructions: str = ""
    sftp: str | None = None
    delay: float = 0.0  # seconds before each hostile round or SFTP page: alive, never finishing

    def __post_init__(self) -> None:
        for stage in (self.drop_at, self.hang_at):
            if stage is not None and stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
        if self.sftp is not None and self.sftp not in SFTP_ATTACKS:
            raise ValueError(f"unknown SFTP attack {self.sftp!r}; one of {', '.join(SFTP_ATTACKS)}")




@dataclass
class Counters:
    """What happened so far, for assertions ("a sync uses exactly one code")."""

    connections: int = 0
    prompts: int = 0
    codes_accepted: int = 0
    codes_refused: int = 0
    reads: int = 0


class LoginNode:
    """A login node for ``user`` whose home is ``root_dir``, taking one-time codes made from ``secret``
    (bytes, or a hex string as pam_oath's users file and ``oathtool`` take it)."""

    def __init__(
        self,
        root_dir: str | os.PathLike,
        user: str,
        secret: bytes | str,
        host_key: paramiko.PKey | None = None,
        faults: Faults | None = None,
        *,
        mode: str = "hotp",
        counter: int = 0,
        window: int = 10,
        prompt: str = "Password: ",
        auth_methods: tuple[str, ...] = ("keyboard-interactive",),
        max_auth_tries: int = 3,
        port: int = 0,
        forwarding: bool = False,
        authorized_keys: tuple[paramiko.PKey, ...] = (),
    ) -> None:
        if mode not in ("hotp", "totp"):
            raise ValueError("mode is 'hotp' or 'totp'")
        self.root_dir = Path(root_dir)
        self.user = user
        self.secret = bytes.fromhex(secret) if isinstance(secret, str) else secret
        self.host_key = host_key or generate_host_key()
        self.faults = faults or Faults()
        self.mode = mode
        self.window = window
        self.prompt = prompt
        self.auth_methods = auth_methods
        self.max_auth_tries = max_auth_tries
        self.forwarding = forwarding  # act as a jump host: direct-tcpip to 127.0.0.1 ports
        self.authorized_keys = authorized_keys  # for "publickey" in auth_methods
        self.counters = Counters()
        self.port = port
        self._next_counter = counter  # HOTP: the lowest counter still valid
        self._used_steps: set[int] = set()  # TOTP: time steps already used (no replay)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> int:
        """Listen on 127.0.0.1 (the given port, or a free one) and return the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="loginnode-accept", daemon=True)
        self._accept_thread.start()
        return self.port

    def stop(self) -> None:
        """Close the listener and every connection; release anything hanging."""
        self._stopping.set()
        if self._listener is not None:
            try:  # close() alone does not wake a thread blocked in accept() on Linux: the join took 5 s
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None

    def __enter__(self) -> LoginNode:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- codes -----------------------------------------------------------------------------------

    def expected_code(self) -> str:
        """The code the user's token would show next (HOTP) or now (TOTP)."""
        with self._lock:
            if self.mode == "hotp":
                return hotp(self.secret, self._next_counter)
            return totp(self.secret)

    def host_key_line(self, host: str = "127.0.0.1") -> str:
        """This node's known_hosts line, as OpenSSH writes it (``[host]:port`` for a non-22 port)."""
        name = host if self.port == 22 else f"[{host}]:{self.port}"
        return f"{name} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def check_code(self, code: str) -> bool:
        code = code.strip()
        with self._lock:
            if self.mode == "hotp":
                for counter in range(self._next_counter, self._next_counter + self.window):
                    if hmac.compare_digest(hotp(self.secret, counter), code):
                        self._next_counter = counter + 1
                        self.counters.codes_accepted += 1
                        return True
            else:
                now = int(time.time() // 30)
                for step in (now - 1, now, now + 1):
                    if step not in self._used_steps and hmac.compare_digest(hotp(self.secret, step), code):
                        self._used_steps.add(step)
                        self.counters.codes_accepted += 1
                        return True
            self.counters.codes_refused += 1
            return False

    # -- faults ----------------------------------------------------------------------------------

    def _fault(self, stage: str, transport: paramiko.Transport) -> bool:
        """Apply the fault for ``stage``; True if the connection was dropped."""
        if self.faults.hang_at == stage:
            self._stopping.wait()
            return True
        if self.faults.drop_at == stage:
            transport.close()
            return True
        return False

    # -- connections -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="loginnode-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.counters.connections += 1
        if self.faults.hang_at == "banner":
            self._stopping.wait()
            sock.close()
            return
        transport = paramiko.Transport(sock)
        transport.add_server_key(self.host_key)
        if self.faults.sftp is not None:
            transport.set_subsystem_handler("sftp", HostileSFTP, self.faults.sftp, self.faults.delay)
        else:
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _HomeSFTP, self, transport)
        with self._lock:
            if self._stopping.is_set():
                transport.close()
                return
            self._transports.append(transport)
        server = _Server(self, transport)
        try:
            transport.start_server(server=server)
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()
            return
        while self.forwarding and transport.is_active() and not self._stopping.is_set():
            channel = transport.accept(0.2)
            upstream = server.forwards.pop(channel.get_id(), None) if channel is not None else None
            if upstream is not None:
                for source, sink in ((channel, upstream), (upstream, channel)):
                    threading.Thread(target=_pump, args=(source, sink, channel, upstream), daemon=True).start()


def _pump(source, sink, channel, upstream) -> None:
    """Copy one direction of a forwarded connection until either end closes, then close both."""
    with contextlib.suppress(Exception):  # a peer going away is how every forward ends
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    for end in (channel, upstream):
        with contextlib.suppress(Exception):
            end.close()


class _Server(paramiko.ServerInterface):
    def __init__(self, node: LoginNode, transport: paramiko.Transport) -> None:
        self.node = node
        self.transport = transport
        self.failures = 0
        self.requests = 0
        self.forwards: dict[int, socket.socket] = {}
        self._empty_rounds = 0

    def _first_request(self) -> bool:
        """True (and the connection dropped) if the handshake fault applies: a client's first auth
        request comes after the key exchange has ended on both sides."""
        first, self.requests = self.requests == 0, self.requests + 1
        return first and self.node._fault("handshake", self.transport)

    def check_auth_none(self, username: str) -> int:
        self._first_request()
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return ",".join(self.node.auth_methods)

    def check_auth_interactive(self, username: str, submethods: str):
        if self._first_request() or "keyboard-interactive" not in self.node.auth_methods:
            return paramiko.AUTH_FAILED
        self.username = username
        with self.node._lock:
            self.node.counters.prompts += 1
        return paramiko.InteractiveQuery("", "", (self.node.prompt, False))

    def check_auth_interactive_response(self, responses):
        if self.node._fault("auth", self.transport):
            return paramiko.AUTH_FAILED
        if getattr(self, "_answered", False):
            rounds = self.node.faults.empty_rounds
            if rounds and self._empty_rounds != rounds:  # a hostile node: one more round, asking nothing
                self._empty_rounds += 1
                self.node._stopping.wait(self.node.faults.delay)
                return paramiko.InteractiveQuery("", self.node.faults.instructions)
            # OpenSSH with PAM: the code was already checked; this answers the empty second round.
            self._answered = False
            return paramiko.AUTH_SUCCESSFUL
        ok = len(responses) == 1 and self.username == self.node.user and self.node.check_code(responses[0])
        if ok:
            self._answered = True
            return paramiko.InteractiveQuery("", "")
        return self._refused()

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self._first_request() or "publickey" not in self.node.auth_methods or username != self.node.user:
            return paramiko.AUTH_FAILED
        if any(key.asbytes() == k.asbytes() for k in self.node.authorized_keys):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        if self._first_request() or "password" not in self.node.auth_methods:
            return paramiko.AUTH_FAILED
        if self.node._fault("auth", self.transport):
            return paramiko.AUTH_FAILED
        with self.node._lock:
            self.node.counters.prompts += 1
        if username == self.node.user and self.node.check_code(password):
            return paramiko.AUTH_SUCCESSFUL
        return self._refused()

    def _refused(self) -> int:
        self.failures += 1
        if self.failures >= self.node.max_auth_tries:
            # OpenSSH disconnects after MaxAuthTries; let the failure reply go out first.
            threading.Timer(0.05, self.transport.close).start()
        return paramiko.AUTH_FAILED

    def check_channel_direct_tcpip_request(self, chanid: int, origin, destination) -> int:
        host, port = destination
        if not self.node.forwarding or host not in ("127.0.0.1", "localhost"):
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        upstream.settimeout(None)
        self.forwards[chanid] = upstream
        return paramiko.OPEN_SUCCEEDED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _HomeSFTP(paramiko.SFTPServerInterface):
    """SFTP rooted in the node's folder, read-only; listings use lstat, as OpenSSH's sftp-server does."""

    def __init__(self, server, node: LoginNode, transport: paramiko.Transport, *args, **kwargs) -> None:
        super().__init__(server, *args, **kwargs)
        self.node = node
        self.transport = transport
        self.reads = 0

    def _real(self, path: str) -> str:
        relative = posixpath.normpath("/" + path).lstrip("/")
        return os.path.join(self.node.root_dir, relative)

    def canonicalize(self, path: str) -> str:
        return posixpath.normpath("/" + path)

    def list_folder(self, path: str):
        if self.node._fault("listdir", self.transport):
            return paramiko.SFTP_FAILURE
        real = self._real(path)
        try:
            return [
                paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(real, name)), name)
                for name in sorted(os.listdir(real))
            ]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def stat(self, path: str):
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def lstat(self, path: str):
        try:
            return paramiko.SFTPAttributes.from_stat(os.lstat(self._real(path)))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def open(self, path: str, flags: int, attr):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            return paramiko.SFTP_PERMISSION_DENIED
        try:
            readfile = open(self._real(path), "rb")  # noqa: SIM115 - closed by SFTPHandle.close
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        handle = _FaultyHandle(self, flags)
        handle.readfile = readfile
        handle.filename = path
        return handle


class _FaultyHandle(paramiko.SFTPHandle):
    def __init__(self, session: _HomeSFTP, flags: int) -> None:
        super().__init__(flags)
        self.session = session

    def read(self, offset: int, length: int):
        node = self.session.node
        with node._lock:
            node.counters.reads += 1
        self.session.reads += 1
        if self.session.reads == 2 and node._fault("read", self.session.transport):
            return paramiko.SFTP_FAILURE
        return super().read(offset, length)

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))

