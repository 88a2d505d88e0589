"""Helpers for tests/test_engines_*.py and tests/test_kernel.py: a login whose tokens live seconds, a
wait for the stored token to die (a state of the stand-in, never a sleep), and scans for any token in
processes' argv and environment and in files.

    env = short_login(globus, globus_env, monkeypatch)   # the file store, tokens of LIFETIME s
    ...first phase of requests...
    wait_until_expired(globus, env)                       # every token stored so far is dead
    ...second phase...
    assert scan_processes(tokens(env)) == []
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

from tests._gateway import gateway_env, keys_file, login_headless
from tests.conftest import REPO

LIFETIME = 12  # seconds an access token lives at the stand-in in these tests
MARGIN = 4  # token_refresh_margin: a token with less left is refreshed before it is sent


def short_login(globus, globus_env, monkeypatch) -> dict[str, str]:
    """Log in (file store) with tokens of LIFETIME seconds; set in os.environ what finds the store, so
    that the engines' workers, which inherit it, find it too. Returns the environment."""
    globus.access_lifetime = LIFETIME
    path = os.pathsep.join([os.path.dirname(sys.executable), globus_env.get("PATH", os.defpath)])  # an activated venv
    env = gateway_env(globus_env, METIS_ENV_TOKEN_REFRESH_MARGIN=str(MARGIN), PYTHONPATH=str(REPO), PATH=path)
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    for name in ("METIS_ENV_STORE", "METIS_ENV_TOKEN_REFRESH_MARGIN", "PYTHONPATH", "PATH"):
        monkeypatch.setenv(name, env[name])
    return env


def tokens(env: dict[str, str]) -> set[str]:
    """Every secret the store holds now (access and refresh tokens)."""
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, str) and len(value) >= 16:
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            try:
                walk(json.loads(value))
            except ValueError:
                pass

    for value in keys_file(env).values():
        walk(value)
        if isinstance(value, str) and value.startswith("{"):
            walk(json.loads(value))
    return found


def wait_until_expired(globus, env: dict[str, str], timeout: float = LIFETIME + 60) -> set[str]:
    """Wait until no access token the store holds is valid at the stand-in; return the tokens seen."""
    deadline = time.monotonic() + timeout
    held = tokens(env)
    while any(globus.token_status(token) == "valid" for token in held):
        assert time.monotonic() < deadline, "the stored token did not expire"
        time.sleep(0.1)
    return held


class AcrossExpiry(NamedTuple):
    """What an engine run across one token expiry showed (see across_expiry)."""

    replies: list[str]
    refreshes: int
    secrets: set[str]
    worker_pids: set[int]
    leaks: list[tuple[int, str]]
    alive: bool


def across_expiry(globus, env: dict[str, str], phase: Callable[[str], list[tuple[list[str], int]]]) -> AcrossExpiry:
    """Run ``phase("before")``, wait until the stored token is dead, run ``phase("after")``; then, with the
    engine's workers still up, scan every process for any token seen. A phase returns (replies, worker pid)
    per task."""
    first = phase("before")
    refreshes_before = globus.grants("refresh_token")
    seen = wait_until_expired(globus, env)
    second = phase("after")
    secrets = seen | tokens(env)
    worker_pids = {pid for _, pid in first + second}
    leaks = scan_processes(secrets)
    alive = worker_pids <= process_ids()
    replies = [reply for replies, _ in first + second for reply in replies]
    return AcrossExpiry(replies, globus.grants("refresh_token") - refreshes_before, secrets, worker_pids, leaks, alive)


def chat_statuses(globus) -> list[tuple[int, bool | None]]:
    """(status, bearer was a live token) of every chat completion the gateway stand-in answered."""
    return [(r.status, r.bearer) for r in globus.requests if r.path.endswith("/chat/completions")]


def scan_processes(secrets: set[str]) -> list[tuple[int, str]]:
    """(pid, "cmdline"|"environ") of every process on this machine whose argv or environment holds a secret."""
    found = []
    needles = [s.encode() for s in secrets]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                data = Path("/proc", entry, part).read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if any(needle in data for needle in needles):
                found.append((int(entry), part))
    return found


def process_ids() -> set[int]:
    return {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}


def scan_files(root: Path, secrets: set[str]) -> tuple[int, list[str]]:
    """(how many files were read under root, the ones holding a secret)."""
    needles = [s.encode() for s in secrets]
    read, holding = 0, []
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            read += 1
            if any(needle in data for needle in needles):
                holding.append(str(path))
    return read, holding
