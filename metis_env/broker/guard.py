"""What keeps a local proxy usable when another local user (without its key) or a hostile upstream
tries to abuse it: a cap on connections with deadlines per phase, paths confined below the
endpoint's base URL, and the real key taken out of everything relayed back.

    guard = ConnectionGuard(Limits())      # one per server; guard.watch() runs in a thread
    confine_path("chat/completions")       # -> "chat/completions"; "../x", "%2e%2e/x" -> None
    Redactor(keys).feed(chunk)             # a streamed answer, with no key split across chunks

Standard library only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import unquote

from ..check import redact


class Limits(NamedTuple):
    """What one client may hold. Seconds, except ``max_connections`` and ``max_body`` (bytes)."""

    header_timeout: float = 10.0  # from accept to the end of the first request's headers
    idle_timeout: float = 60.0  # between the requests of a kept-alive connection (headers included)
    body_timeout: float = 60.0  # to read a request's whole body, once its key was accepted
    max_connections: int = 1024  # beyond it, the oldest connection that has shown no key is cut
    max_body: int = 32 * 1024 * 1024  # the gateway takes 10 MB; an endpoint file's server may take more


class _Tracked:
    __slots__ = ("deadline", "trusted")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.trusted = False


class ConnectionGuard:
    """Open connections in arrival order, each with a deadline for its current phase (None while a
    request is forwarded or answered: a generation may take minutes). A watchdog thread cuts a
    connection whose deadline passed; a new connection beyond the cap cuts the oldest untrusted one
    (one that never presented the local key), so idle connections from another user cannot starve
    the job's own."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._changed = threading.Condition()
        self._open: dict[socket.socket, _Tracked] = {}
        self._stopped = False
        self.cut_count = 0

    def __len__(self) -> int:
        with self._changed:
            return len(self._open)

    def admit(self, conn: socket.socket) -> bool:
        """Track a new connection (its header deadline starts now); False: refuse it (every slot is
        held by a client that has the key)."""
        with self._changed:
            if len(self._open) >= self.limits.max_connections:
                # The oldest that never showed the key; else the oldest kept-alive one between requests.
                # A request being served (no deadline) is never cut for a newcomer.
                victim = next((c for c, t in self._open.items() if not t.trusted), None) or next(
                    (c for c, t in self._open.items() if t.deadline is not None), None)
                if victim is None:
                    return False
                self._cut(victim)
            self._open[conn] = _Tracked(self._clock() + self.limits.header_timeout)
            self._changed.notify()
        return True

    def expect(self, conn: socket.socket, seconds: float | None) -> None:
        """The connection's next phase must end within ``seconds`` (None: no deadline)."""
        with self._changed:
            tracked = self._open.get(conn)
            if tracked is not None:
                tracked.deadline = None if seconds is None else self._clock() + seconds
                self._changed.notify()

    def trust(self, conn: socket.socket) -> None:
        with self._changed:
            tracked = self._open.get(conn)
            if tracked is not None:
                tracked.trusted = True

    def release(self, conn: socket.socket) -> None:
        with self._changed:
            self._open.pop(conn, None)

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def watch(self) -> None:
        """Cut connections past their deadline until ``stop()``; run it in a thread of its own."""
        with self._changed:
            while not self._stopped:
                now = self._clock()
                for conn in [c for c, t in self._open.items() if t.deadline is not None and t.deadline <= now]:
                    self._cut(conn)
                deadlines = [t.deadline for t in self._open.values() if t.deadline is not None]
                self._changed.wait(max(0.01, min(deadlines) - now) if deadlines else None)

    def _cut(self, conn: socket.socket) -> None:
        # shutdown, not close: the handler's thread owns the descriptor; its read ends at once.
        self._open.pop(conn, None)
        self.cut_count += 1
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def confine_path(path: str) -> str | None:
    """``path`` (what follows the base URL) when it stays below the base URL however often a server
    percent-decodes it; None when any decoding of it has a ``.`` or ``..`` segment (``;`` parameters
    included), a backslash, a control character, or is still encoded after four rounds."""
    text = path
    for _round in range(5):
        if "\\" in text or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            return None
        if any(segment.split(";")[0] in (".", "..") for segment in text.split("/")):
            return None
        try:
            decoded = unquote(text, errors="strict") if "%" in text else text
        except UnicodeDecodeError:
            return None
        if decoded == text:
            return path
        text = decoded
    return None


class Redactor:
    """Takes the real keys out of a streamed answer without holding it back: only a chunk's tail that
    could be the start of a key waits for the next chunk (an SSE event ends in a blank line, which
    never does)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k for k in keys if k]
        self._needles = [k.encode() for k in self._keys]
        self._pending = b""

    def __repr__(self) -> str:
        return f"Redactor(keys={len(self._keys)})"

    def feed(self, chunk: bytes) -> bytes:
        data = redact(self._pending + chunk, self._keys)
        hold = 0
        for needle in self._needles:
            for size in range(min(len(needle) - 1, len(data)), hold, -1):
                if data.endswith(needle[:size]):
                    hold = size
                    break
        self._pending = data[len(data) - hold:] if hold else b""
        return data[: len(data) - hold]

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return data
