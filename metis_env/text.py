"""Words from outside (a gateway, Globus, a server) made safe to show on a terminal.

``shown(name)`` is the one primitive for a name someone else chose (a model of ``{cluster}/jobs``, an
identity): every character a terminal could act on or that could break a line or a table row (C0/C1
controls, ESC, line and paragraph separators, bidi overrides, other non-printables) is shown as its
Python escape, and the result is bounded. Standard library only, no imports from metis_env.

    shown("gpt-oss-120b")                     # 'gpt-oss-120b'
    shown("x\\nmetis  fake-model  live")      # 'x\\\\nmetis  fake-model  live' (one line)
    shown("\\x1b]0;pwned\\x07m")               # '\\\\x1b]0;pwned\\\\x07m'
"""

from __future__ import annotations

MAX_SHOWN = 120


def shown(name: str, limit: int | None = MAX_SHOWN) -> str:
    """``name`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``), cut to
    ``limit`` characters with ``…`` (None: not cut): one inert line, whatever the name holds."""
    if not name.isprintable():
        name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return name if limit is None or len(name) <= limit else name[: limit - 1] + "…"
