"""Run a command as its parent, for ``run --proxy``: metis-env stays alive while the command runs.

The command gets the core-dump limit metis-env started with (metis-env itself runs with 0). SIGINT,
SIGTERM and SIGHUP sent to metis-env are passed to the command; a terminal's Ctrl-C, which
already reached the command (same process group), is not sent twice. The exit status is the
command's (128+N when signal N ended it). Standard library only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

from .coredump import restore_core_limit
from .errors import CommandNotFoundError

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent (a terminal's Ctrl-C), not kill(2)



def supervise(argv: Sequence[str], env: Mapping[str, str], start: Callable[[], None], stop: Callable[[], None]) -> int:
    """Start the child, then ``start()``; forward signals to the child while it runs; ``stop()`` when it
    has exited. Returns its exit status (128+N when signal N ended it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    waiting = hasattr(signal, "sigtimedwait") and threading.current_thread() is threading.main_thread()
    watched = set(FORWARDED_SIGNALS) | {signal.SIGCHLD}
    if waiting:
        # Signals are taken with sigtimedwait in this thread: blocked here (the proxy's threads inherit
        # the mask) and unblocked in the child before it execs.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        def prepare_child() -> None:  # in the child, between fork and exec
            if waiting:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            restore_core_limit()  # the user's program keeps the core limit it would have had without us

        try:
            child = subprocess.Popen(list(argv), env=dict(env), preexec_fn=prepare_child)
        except OSError as exc:
            raise CommandNotFoundError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        start()
        try:
            if waiting:
                _wait_taking_signals(child, watched)
            else:
                _wait_with_handlers(child)
        finally:
            stop()
    finally:
        if waiting:
            # A Ctrl-C that ended the child is still pending here: it was the child's, not ours.
            while signal.sigtimedwait(watched, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    code = child.returncode
    return 128 - code if code < 0 else code


def _wait_taking_signals(child: subprocess.Popen, watched: set) -> None:
    while child.poll() is None:
        info = signal.sigtimedwait(watched, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        # A terminal's Ctrl-C already reached the child (same process group): sending it again would
        # interrupt the child's own clean-up. A signal sent to metis-env alone is passed on.
        if info.si_signo == signal.SIGINT and info.si_code == _SI_KERNEL:
            continue
        try:
            child.send_signal(info.si_signo)
        except ProcessLookupError:
            pass


def _wait_with_handlers(child: subprocess.Popen) -> None:
    def forward(signo, _frame):  # type: ignore[no-untyped-def]
        try:
            child.send_signal(signo)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                child.wait()
                return
            except InterruptedError:
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


