"""Prompts asked on the caller's thread while paramiko's transport thread waits for them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .remote import Prompter, RemoteFile

class _Cancelled(Exception):
    """The person interrupted a prompt; the caller's thread raises the real KeyboardInterrupt."""


class PromptsOnCallerThread:
    """Runs the login in a worker thread and answers its prompts on the calling thread.

    paramiko calls the keyboard-interactive handler from its transport thread. Prompting there would
    leave the terminal without echo if Ctrl-C arrived (the signal goes to the main thread, the thread
    holding the terminal dies with the process before getpass restores it); here every prompt runs
    on the caller's thread, where Ctrl-C interrupts it cleanly."""

    def __init__(self, ui: Prompter) -> None:
        self.ui = ui
        self.owner = threading.current_thread()
        self.requests: queue.Queue = queue.Queue()

    def secret(self, prompt: str) -> str:
        return self._call("secret", prompt)

    def confirm(self, question: str) -> bool:
        return self._call("confirm", question)

    def ask(self, prompt: str) -> str:
        return self._call("ask", prompt)

    def progress(self, message: str) -> None:
        self._call("progress", message)

    def _call(self, method: str, argument):
        if threading.current_thread() is self.owner:
            return getattr(self.ui, method)(argument)
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.requests.put((method, argument, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def run(self, work: Callable[[], list[RemoteFile]], on_interrupt: Callable[[], None]) -> list[RemoteFile]:
        outcome: list = []

        def worker() -> None:
            try:
                outcome.append((True, work()))
            except BaseException as exc:  # handed to the caller's thread, raised there
                outcome.append((False, exc))
            self.requests.put(None)

        thread = threading.Thread(target=worker, name="metis-env-login", daemon=True)
        thread.start()
        try:
            while True:
                item = self.requests.get()
                if item is None:
                    break
                method, argument, reply = item
                try:
                    reply.put((True, getattr(self.ui, method)(argument)))
                except BaseException as exc:
                    # Ctrl-C is the caller's to raise: the asking thread (maybe paramiko's) only
                    # needs to stop, quietly, which an Exception lets it do.
                    reply.put((False, exc if isinstance(exc, Exception) else _Cancelled()))
                    raise
        except BaseException:
            on_interrupt()
            raise
        thread.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value
