"""Helpers for the sync tests against the in-process login node (metis_env.testing.loginnode):
a node serving two ALCF-shaped endpoint files, a prompter that answers from a script, the CLI run
in-process, and a byte-for-byte snapshot of the store."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from metis_env import main as metis_main
from metis_env import prompt
from metis_env.testing.loginnode import Faults, LoginNode
from tests.conftest import ENDPOINT_1, ENDPOINT_2, REPO

SECRET_HEX = "3132333435363738393031323334353637383930"  # RFC 4226's test secret
USER = "alice"


class ScriptedPrompter(prompt.TerminalPrompter):
    """The real progress output (stderr); questions answered from a script and recorded."""

    def __init__(self, codes: list[str | Callable[[], str]], confirm: bool = False, user: str = USER) -> None:
        super().__init__()
        self.codes = list(codes)
        self.confirm_answer = confirm
        self.user = user
        self.asked: list[tuple[str, str]] = []

    def secret(self, text: str) -> str:
        self.asked.append(("secret", text))
        if not self.codes:
            raise AssertionError(f"asked for one code too many: {text!r}")
        code = self.codes.pop(0)
        return code() if callable(code) else code

    def ask(self, text: str) -> str:
        self.asked.append(("ask", text))
        return self.user

    def confirm(self, question: str) -> bool:
        self.asked.append(("confirm", question))
        return self.confirm_answer


def write_home(home: Path, files: dict[str, str | bytes]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = home / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


def trust_host_key(node: LoginNode) -> Path:
    """Put the node's key in ~/.ssh/known_hosts, as a first sync (or ssh) would have."""
    known_hosts = Path(os.path.expanduser("~/.ssh/known_hosts"))
    known_hosts.parent.mkdir(mode=0o700, exist_ok=True)
    with known_hosts.open("a") as handle:
        handle.write(node.host_key_line())
    return known_hosts


def store_snapshot(config_dir: Path) -> dict[str, bytes]:
    """Every byte of the store (metadata, keys file, config), not the lock file."""
    if not config_dir.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(config_dir.iterdir()) if p.is_file() and p.name != "sync.lock"}


def run_sync_cli(monkeypatch, capfd, prompter: ScriptedPrompter, *args: str) -> tuple[int, str, str]:
    """``metis-env sync ARGS`` in-process, with ``prompter`` standing in for the terminal."""
    monkeypatch.setattr(prompt, "TerminalPrompter", lambda: prompter)
    code = metis_main.main(["sync", *args])
    out, err = capfd.readouterr()
    return code, out, err


def spawn_on_terminal(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """``metis-env ARGS`` with a new pseudo-terminal as its controlling terminal (stdin too);
    stdout and stderr are pipes. Returns the process and the terminal's master side."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
         "from metis_env.main import main; sys.exit(main(sys.argv[1:]))", *args],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    os.close(slave)
    return proc, master


def read_until(fd: int, marker: bytes | None, limit: float = 30) -> bytes:
    """Read a pseudo-terminal until ``marker`` shows (None: until it goes quiet or closes)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (marker is None or marker not in data):
        ready, _, _ = select.select([fd], [], [], 0.5 if marker is None else deadline - time.monotonic())
        if not ready:
            if marker is None:
                break
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def login_home(tmp_path) -> Path:
    home = tmp_path / "remote-home"
    write_home(home, {"metis_endpoint_1.txt": ENDPOINT_1, "metis_endpoint_2.txt": ENDPOINT_2, "notes.txt": "not an endpoint\n"})
    return home


@pytest.fixture
def make_node(login_home, monkeypatch) -> Iterator[Callable[..., LoginNode]]:
    """Start login nodes (stopped after the test); the file store, so that every byte is on disk."""
    monkeypatch.setenv("METIS_ENV_STORE", "file")
    nodes: list[LoginNode] = []

    def make(faults: Faults | None = None, trusted: bool = True, **kwargs) -> LoginNode:
        node = LoginNode(login_home, USER, SECRET_HEX, faults=faults, **kwargs)
        node.start()
        nodes.append(node)
        if trusted:
            trust_host_key(node)
        return node

    yield make
    for node in nodes:
        node.stop()
