"""A real Secret Service (gnome-keyring) in a private D-Bus session, for tests; see TESTING.md.

    with secret_service(tmp_path, locked=True) as env:   # env: DBUS_SESSION_BUS_ADDRESS and friends
        subprocess.run([...], env={**os.environ, **env})

``SecretServiceSession`` is the same with the daemon under the test's control: ``start_keyring(pw)``
unlocks with ``pw``, ``start_keyring(None)`` leaves the keyring locked with no unlock at all.
``locked=True`` creates the login keyring with one password, then restarts the daemon unlocking it
with another: gnome-keyring still owns the bus name (keyring still selects it), and every call fails
with ``KeyringLocked``. Everything started here is stopped by its PID. Under CI (CI=true) missing
tools fail the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUS_NAME = "org.freedesktop.secrets"
TOOLS = ("dbus-daemon", "dbus-send", "gnome-keyring-daemon", "secret-tool")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt install dbus gnome-keyring libsecret-tools)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SecretServiceSession:
    """A dbus-daemon and a gnome-keyring-daemon of our own, stopped by PID."""

    def __init__(self, directory: Path):
        self.directory = directory
        runtime = directory / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = {**os.environ, "XDG_DATA_HOME": str(directory / "data"), "XDG_RUNTIME_DIR": str(runtime)}
        for name in ("PYTHON_KEYRING_BACKEND", "DISPLAY", "WAYLAND_DISPLAY"):
            self.env.pop(name, None)  # let keyring pick Secret Service, as for a user; no unlock dialog
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env, text=True,
        )
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.bus.stdout.readline().strip()
        self.daemon: subprocess.Popen | None = None

    def start_keyring(self, password: str | None) -> None:
        """password None: not unlocked at all (every call then needs a prompt nobody answers)."""
        if self.daemon is not None:
            _stop(self.daemon)
        command = ["gnome-keyring-daemon", "--foreground", "--components=secrets"]
        if password is not None:
            command.insert(2, "--unlock")
        self.daemon = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=self.env)
        self.daemon.stdin.write((password or "").encode())
        self.daemon.stdin.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = subprocess.run(
                ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                 "org.freedesktop.DBus.NameHasOwner", f"string:{BUS_NAME}"],
                env=self.env, capture_output=True, text=True,
            )
            if "boolean true" in reply.stdout:
                return
            time.sleep(0.05)
        raise RuntimeError("gnome-keyring-daemon did not take org.freedesktop.secrets in time")

    def stop(self) -> None:
        if self.daemon is not None:
            _stop(self.daemon)
        _stop(self.bus)


@contextlib.contextmanager
def secret_service(directory: Path, locked: bool = False) -> Iterator[dict[str, str]]:
    """Yield the environment variables that point a process at a fresh gnome-keyring."""
    require_tools()
    directory.mkdir(parents=True, exist_ok=True)
    session = SecretServiceSession(directory)
    try:
        if locked:
            session.start_keyring("the-right-password")  # creates the login keyring with this password
        session.start_keyring("a-wrong-password" if locked else "the-right-password")
        yield {name: session.env[name] for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")}
    finally:
        session.stop()
