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


def natural(name: str) -> tuple:
    """Sort key for file names in natural order: ``metis_endpoint_2.txt`` before ``metis_endpoint_10.txt``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


MAX_FILES = 256  # endpoint files one sync takes; ALCF hands out a handful
MAX_TOTAL_BYTES = 4 * 1024 * 1024  # all of them together (each is at most endpoint.MAX_FILE_BYTES)


def kind_phrase(kind: str) -> str:
    """``directory`` -> ``a directory``, ``unknown`` -> ``of no type the listing names``."""
    if kind == "unknown":
        return "of no file type the listing names"
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def refuse_too_many(names: list[str], sizes: list[int], where: str, pattern: str) -> None:
    """Bound what a (possibly hostile) login node can make a sync hold: files, bytes, names with ``/``."""
    from ...errors import RemoteFilesError
    from ...render import printable

    odd = [n for n in names if "/" in n or "\0" in n]
    if odd:
        raise RemoteFilesError(
            f"on {where}: the listing holds the name {printable(odd[0])}, which is not a file name in the "
            "home directory (it has a /); the server is broken or hostile; nothing was read"
        )
    if len(names) > MAX_FILES:
        raise RemoteFilesError(
            f"on {where}: {len(names)} files match {pattern}, over the limit of {MAX_FILES}; nothing was read"
        )
    total = sum(sizes)
    if total > MAX_TOTAL_BYTES:
        raise RemoteFilesError(
            f"on {where}: the files matching {pattern} hold {total} bytes together, over the "
            f"{MAX_TOTAL_BYTES // (1024 * 1024)} MiB limit; nothing was read"
        )
