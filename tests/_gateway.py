"""Helpers for the gateway tests: a headless `metis-env login` against the stand-in.

    def test_x(logged_in):                  # the file store, a stand-in, a login done
        env, globus = logged_in
        assert metis("export", "metis", env=env).returncode == 0
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests.conftest import REPO


def login_headless(env: dict[str, str], globus, *args: str, no_browser: bool = True) -> tuple[int, bytes, str, str]:
    """Run `metis-env login --no-browser ARGS` as a user would: read the URL it prints on stderr,
    approve it at the stand-in (the browser's part), type the code on stdin.
    -> (exit code, stdout, stderr, the authorize URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "metis_env", "login", *(["--no-browser"] if no_browser else []), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PYTHONPATH": str(REPO), **env},
    )
    seen: list[str] = []
    url = ""
    assert process.stderr is not None and process.stdin is not None
    for raw in process.stderr:  # line by line to the end: communicate() would lose what is buffered
        line = raw.decode()
        seen.append(line)
        if line.startswith(("http://", "https://")) and not url:
            url = line.strip()
            process.stdin.write(globus.approve(url).encode() + b"\n")
            process.stdin.close()
    assert process.stdout is not None
    out = process.stdout.read()
    process.wait(timeout=60)
    return process.returncode, out, "".join(seen), url


def gateway_env(globus_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**globus_env, "METIS_ENV_STORE": "file", **extra}


@pytest.fixture
def logged_in(globus, globus_env):  # noqa: F811
    env = gateway_env(globus_env)
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    return env, globus


def exported_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def slow_refresh_pending(globus, env: dict[str, str]) -> None:
    """Store a token with 20 min left (inside the default 1 h refresh margin, so the next export
    refreshes it) and make Globus take 0.5 s over each refresh: exporters arriving together must
    wait for that one refresh, not repeat it."""
    globus.access_lifetime = 1200
    exported_json(subprocess.run([sys.executable, "-m", "metis_env", "export", "metis", "--shell", "json"],
                                 env={"PYTHONPATH": str(REPO), **env, "METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"},
                                 capture_output=True, timeout=60))
    globus.access_lifetime = 172800
    globus.refresh_delay = 0.5


def concurrent_exports(env: dict[str, str], count: int, timeout: float) -> list[subprocess.CompletedProcess]:
    """``count`` runs of ``metis-env export metis --shell json`` at once, each its own process."""

    def one(_):
        return subprocess.run([sys.executable, "-m", "metis_env", "export", "metis", "--shell", "json"],
                              env={"PYTHONPATH": str(REPO), **env}, capture_output=True, timeout=timeout)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def metadata(env: dict[str, str]) -> dict:
    with open(os.path.join(env["METIS_ENV_CONFIG_DIR"], "endpoints.yaml")) as handle:
        return json.load(handle)


def keys_file(env: dict[str, str]) -> dict:
    path = os.path.join(env["METIS_ENV_CONFIG_DIR"], "keys.json")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)["keys"]
