"""paramiko, imported once for the whole package (without ``invoke``), and its log kept off stderr."""

from __future__ import annotations

import logging
import sys


def _import_paramiko():
    """paramiko, without the ``invoke`` package: paramiko imports it (45 ms here, with asyncio and
    unittest.mock) only to run ``Match exec`` lines of an ssh config. A config that has one gets a
    clear error naming --via openssh, where OpenSSH runs it natively."""
    saved = sys.modules.get("invoke", _ABSENT)
    sys.modules["invoke"] = None  # type: ignore[assignment]  # makes `import invoke` fail fast
    try:
        import paramiko as module
    finally:
        if saved is _ABSENT:
            del sys.modules["invoke"]
        else:
            sys.modules["invoke"] = saved
    return module


_ABSENT = object()
paramiko = _import_paramiko()


# paramiko logs its transport thread's failures with full tracebacks; with no handler anywhere,
# Python's last-resort handler would print them to stderr in the middle of our one-line errors.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_handler: logging.Handler = logging.NullHandler()
_paramiko_log.addHandler(_paramiko_handler)
_paramiko_log.propagate = False


def set_debug_logging(enabled: bool) -> None:
    """Show paramiko's own log on stderr (``--debug``), or keep it silent (the default)."""
    global _paramiko_handler
    _paramiko_log.removeHandler(_paramiko_handler)
    _paramiko_handler = logging.StreamHandler() if enabled else logging.NullHandler()
    _paramiko_log.addHandler(_paramiko_handler)
    _paramiko_log.setLevel(logging.DEBUG if enabled else logging.WARNING)
