"""Keep keys out of core dumps: a crashing metis-env that holds a key must not write it to a core
file (or hand it to systemd-coredump or apport, which honour the limit).

The hot path (export, get, run) sets ``RLIMIT_CORE`` to 0 through ``resource`` (a fraction of a
millisecond); the other commands also make the process not dumpable (``prctl(PR_SET_DUMPABLE, 0)``,
through ctypes: ~3 ms, which only commands that already pay for click can afford). ``run`` gives the
command it starts the limit it had before: the user's program is not ours to restrict.

    no_core_dumps()                  # export: no core file from here on
    restore_core_limit()             # run: just before exec
"""

from __future__ import annotations

_previous: tuple[int, int] | None = None
PR_SET_DUMPABLE = 4


def no_core_dumps(undumpable: bool = False) -> None:
    """Soft RLIMIT_CORE 0 (and, with ``undumpable``, PR_SET_DUMPABLE 0 on Linux); never fails."""
    global _previous
    try:
        import resource
    except ImportError:  # Windows: no core files to speak of
        return
    try:
        limits = resource.getrlimit(resource.RLIMIT_CORE)
        if limits[0] != 0:
            resource.setrlimit(resource.RLIMIT_CORE, (0, limits[1]))
            _previous = _previous or limits
    except (OSError, ValueError):
        pass
    if undumpable:
        import sys

        if sys.platform.startswith("linux"):
            try:
                import ctypes

                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            except (OSError, AttributeError):
                pass


def restore_core_limit() -> None:
    """Give a child about to be exec'd the core limit this process started with (dumpable is reset by
    exec itself)."""
    global _previous
    if _previous is None:
        return
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, _previous)
    except (OSError, ValueError):
        pass
    _previous = None
