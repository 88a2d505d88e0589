"""metis-env's voice on stderr, and how it words an age. A leaf: standard library only, nothing of ours.

Everything that is not what the user asked for (warnings, notes, progress) goes to stderr, prefixed
``metis-env:``, so that ``eval "$(metis-env export)"`` never eats it.

Example::

    warn("endpoint 1 was last synced 40 days ago")   # metis-env: warning: endpoint 1 was ...
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """One line on stderr: ``metis-env: <message>``."""
    sys.stderr.write(f"metis-env: {message}\n")


def warn(message: str) -> None:
    """One warning on stderr: ``metis-env: warning: <message>``."""
    sys.stderr.write(f"metis-env: warning: {message}\n")


def format_age(days: float | None) -> str:
    """``just now``, ``12 min ago``, ``5 h ago``, ``3 days ago``; ``?`` when unknown."""
    if days is None:
        return "?"
    seconds = days * 86400
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if days < 2:
        return f"{seconds / 3600:.0f} h ago"
    return f"{days:.0f} days ago"
