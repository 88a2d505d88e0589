"""A clock per phase of a login that closes the connection when the server stays silent."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class _Watchdog:
    """Closes the connection when the server stays silent for ``timeout`` seconds in one phase.

    paramiko's own timeouts leave gaps (``start_client`` returns silently, ``invoke_subsystem`` waits
    forever) and its auth timeout would also count the time a person takes to type a code; this
    clock restarts at each phase and stops while a prompt is open."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
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
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
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
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self.expired = True
                    break
                self._cond.wait(remaining)
            victims = list(self._victims) if self.expired else []
        for victim in victims:
            with contextlib.suppress(Exception):
                victim.close()
