"""What the login node hands back: the files, in natural order, and the prompts protocol of the package."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol


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


def _natural(name: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))
