"""The terminal side of ``ssh.Prompter``: questions on the controlling terminal, progress on stderr.

Prompts read and write ``/dev/tty`` directly, so they work (and stay hidden) when stdout or stdin is
redirected, and stdout never carries a prompt. Without a terminal every question fails with a
UsageError that says which option answers it instead.
"""

from __future__ import annotations

import getpass
import io
import os
import sys
from typing import IO

from .errors import UsageError

TTY = "/dev/tty"


class TerminalPrompter:
    def __init__(self, stderr: IO[str] | None = None, tty_path: str = TTY) -> None:
        self.stderr = stderr or sys.stderr
        self.tty_path = tty_path

    def secret(self, prompt: str) -> str:
        self._open_tty("--passcode-stdin").close()
        return getpass.getpass(prompt)  # opens /dev/tty itself and turns echo off there

    def ask(self, prompt: str) -> str:
        tty = self._open_tty("--user NAME")
        with tty:
            tty.write(prompt)
            tty.flush()
            line = tty.readline()
        if not line:
            raise EOFError("the terminal closed")
        return line.rstrip("\r\n")

    def confirm(self, question: str) -> bool:
        """No terminal: no (the caller then explains the option that says yes)."""
        try:
            self._open_tty("--accept-new-host-key").close()
        except UsageError:
            return False
        for _ in range(3):
            answer = self.ask(f"{question} [yes/no] ").strip().lower()
            if answer in ("yes", "y"):
                return True
            if answer in ("no", "n", ""):
                return False
        return False

    def progress(self, message: str) -> None:
        self.stderr.write(f"metis-env: {message}\n")
        self.stderr.flush()

    def _open_tty(self, instead: str) -> IO[str]:
        try:
            fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            raise UsageError(f"no terminal to ask on; use {instead}") from None
        # A terminal is not seekable: open(fd, "r+") (a BufferedRandom) raises UnsupportedOperation on it.
        return io.TextIOWrapper(open(fd, "r+b", buffering=0), encoding="utf-8", errors="replace", write_through=True)


def read_pasted(stream, limit: int, stderr: IO[str] | None = None) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (binary stdin). At a terminal, say what to do and keep the
    pasted file (its key) off the screen: echo off while reading, restored whatever happens."""
    stderr = stderr or sys.stderr
    try:
        fd = stream.fileno()
        at_terminal = os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        at_terminal = False
    if not at_terminal:
        return stream.read(limit)
    import termios

    before = termios.tcgetattr(fd)
    quiet = list(before)
    quiet[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)  # echo off before the prompt: nothing pasted is shown
    try:
        stderr.write("metis-env: paste the endpoint file (it is not shown), then press Enter and Ctrl-D\n")
        stderr.flush()
        return stream.read(limit)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, before)
