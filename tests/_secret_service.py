"""A real Secret Service (gnome-keyring) in a private D-Bus session, for tests; see TESTING.md.

    with secret_service(tmp_path, locked=True) as env:   # env: DBUS_SESSION_BUS_ADDRESS and friends
        subprocess.run([...], env={**os.environ, **env})

``locked=True`` creates the login keyring with one password, then restarts the daemon unlocking it
with another: gnome-keyring still owns the bus name (keyring still selects it), and every call fails
with ``KeyringLocked``. Everything started here is stopped by its PID.
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


def available() -> bool:
    return all(shutil.which(tool) for tool in ("dbus-daemon", "gnome-keyring-daemon", "dbus-send"))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_bus_name(env: dict[str, str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
             "org.freedesktop.DBus.NameHasOwner", f"string:{BUS_NAME}"],
            env=env, capture_output=True, text=True,
        )
        if "boolean true" in reply.stdout:
            return
        time.sleep(0.05)
    raise RuntimeError("gnome-keyring-daemon did not take org.freedesktop.secrets in time")


@contextlib.contextmanager
def _keyring_daemon(env: dict[str, str], password: str) -> Iterator[None]:
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        assert daemon.stdin is not None
        daemon.stdin.write(password.encode())
        daemon.stdin.close()
        _wait_for_bus_name(env)
        yield
    finally:
        _stop(daemon)


@contextlib.contextmanager
def secret_service(directory: Path, locked: bool = False) -> Iterator[dict[str, str]]:
    """Yield the environment variables that point a process at a fresh gnome-keyring."""
    if not available():
        pytest.skip("dbus-daemon and gnome-keyring-daemon are needed (apt install dbus gnome-keyring)")
    directory.mkdir(parents=True, exist_ok=True)
    runtime = directory / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(directory / "data"),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        assert bus.stdout is not None
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        if locked:
            with _keyring_daemon(env, "the-right-password"):
                pass  # creates the login keyring with this password
            password = "a-wrong-password"
        else:
            password = "the-right-password"
        with _keyring_daemon(env, password):
            yield {name: env[name] for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")}
    finally:
        _stop(bus)
