"""A clock per phase of a login that closes the connection when the server stays silent."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


TOTAL_FACTOR = 4  # the whole login may take this many --timeout of server time


class Watchdog:
    """Closes the connection when the server stays silent for ``timeout`` seconds in one phase.

    paramiko's own timeouts leave gaps (``start_client`` returns silently, ``invoke_subsystem`` waits
    forever) and its auth timeout would also count the time a person takes to type a code; this
    clock restarts at each phase and stops while a prompt is open."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
        # The whole login's server time (prompts excluded) is bounded too: a server that keeps each
        # phase just alive (a byte at a time, endless empty rounds) cannot hold a sync forever.
        self.total = TOTAL_FACTOR * timeout
        self.over_total = False
        self._total_deadline: float | None = None
        self._paused_at = 0.0
        self._victims: list = []
        self._deadline: float | None = None
        self._paused = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="metis-env-watchdog", daemon=True)

    def watch(self, closeable) -> None:
        with self._cond:
            self._victims.append(closeable)

    def start(self) -> None:
        self._total_deadline = time.monotonic() + self.total
        self.restart()
        self._thread.start()

    def restart(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.timeout
            self._cond.notify()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._cond:
            self._paused += 1
            if self._paused == 1:
                self._paused_at = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
                if self._paused == 0 and self._total_deadline is not None:
                    self._total_deadline += time.monotonic() - self._paused_at
                self._deadline = time.monotonic() + self.timeout
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._paused or self._deadline is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                remaining = self._deadline - now
                if self._total_deadline is not None and self._total_deadline - now < remaining:
                    remaining = self._total_deadline - now
                    if remaining <= 0:
                        self.over_total = True
                if remaining <= 0:
                    self.expired = True
                    break
                self._cond.wait(remaining)
            victims = list(self._victims) if self.expired else []
        for victim in victims:
            with contextlib.suppress(Exception):
                victim.close()
