"""An interactive shell on a pseudo-terminal, driven as a person would: type keys, wait for text.

Every wait is for something the shell prints (never for a time); the deadline only ends a test that
is already broken, with everything the terminal showed in the message.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEADLINE = 120.0
"""Seconds a broken test may hang before it fails (a busy CI machine may take a while to start a shell)."""


class Terminal:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, as a person's
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def expect(self, text: bytes) -> bytes:
        """Read until ``text`` appears after what earlier calls consumed; returns what came before it."""
        return self.expect_any(text)[1]

    def expect_any(self, *texts: bytes) -> tuple[bytes, bytes]:
        """Read until one of ``texts`` appears -> (the first to appear, what came before it)."""
        text = texts[0]
        end = time.monotonic() + DEADLINE
        while not any(t in self.seen for t in texts):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the terminal never showed {text!r}; it showed:\n{self.seen.decode(errors='replace')}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the shell ended before showing {text!r}; it showed:\n{self.seen.decode(errors='replace')}")
            self.seen += chunk
        text = min((t for t in texts if t in self.seen), key=self.seen.index)
        before, _, self.seen = self.seen.partition(text)
        return text, before

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
