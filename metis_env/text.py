"""metis-env's voice on stderr, and how it words an age. A leaf: standard library only, nothing of ours.

Everything that is not what the user asked for (warnings, notes, progress) goes to stderr, prefixed
``metis-env:``, so that ``eval "$(metis-env export)"`` never eats it.

Example::

    warn("endpoint 1 was last synced 40 days ago")   # metis-env: warning: endpoint 1 was ...

``shown(name)`` is the one primitive for a name someone else chose (a model of ``{cluster}/jobs``, an
identity): every character a terminal could act on or that could break a line or a table row (C0/C1
controls, ESC, line and paragraph separators, bidi overrides, other non-printables) is shown as its
Python escape, and the result is bounded.

    shown("gpt-oss-120b")                     # 'gpt-oss-120b'
    shown("x\\nmetis  fake-model  live")      # 'x\\\\nmetis  fake-model  live' (one line)
    shown("\\x1b]0;pwned\\x07m")               # '\\\\x1b]0;pwned\\\\x07m'
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


MAX_SHOWN = 120


def shown(name: str, limit: int | None = MAX_SHOWN) -> str:
    """``name`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``), cut to
    ``limit`` characters with ``…`` (None: not cut): one inert line, whatever the name holds."""
    if not name.isprintable():
        name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return name if limit is None or len(name) <= limit else name[: limit - 1] + "…"
