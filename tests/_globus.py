"""Fixtures for the Globus Auth + ALCF gateway stand-in (metis_env.testing.globus_standin).

    from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

    def test_login(globus, globus_env):
        subprocess.run([...], env=globus_env)       # the child's globus-sdk and metis-env use the stand-in
        assert globus.grants("authorization_code") == 1

``globus`` is a started stand-in over TLS with a CA of the test's own (``globus.ca_file``);
``globus_env`` also sets its variables in this process (for in-process globus-sdk), undone after
the test, and returns ``os.environ`` plus them, for subprocesses. ``alcf_tokens_login(globus, env)``
runs the real ``alcf-tokens login inference`` through a pipe (GATEWAY.md E5) and returns the
``tokens.json`` it wrote, for tests that adopt or race alcf-tokens' cache. ``gateway_request`` and
``gateway_get`` call the stand-in's gateway over its TLS with urllib.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from metis_env.testing.globus_standin import GlobusStandIn
from metis_env.sources.gateway.constants import ALCF_TOKENS_CLIENT_ID
from tests._tls import make_test_ca

ALCF_TOKENS = str(Path(sys.executable).parent / "alcf-tokens")


def alcf_tokens_cache(env: Mapping[str, str]) -> Path:
    """Where alcf-tokens keeps its tokens under ``env``'s HOME (production names, no environment prefix)."""
    return Path(env["HOME"]) / ".globus" / "app" / ALCF_TOKENS_CLIENT_ID / "alcf_tokens" / "tokens.json"


def alcf_tokens_login(globus: GlobusStandIn, env: Mapping[str, str], timeout: float = 60) -> Path:
    """Log in with the real ``alcf-tokens login inference``, as a user would: read the URL it prints,
    approve it at the stand-in, type the code. Returns its tokens.json; raises if the CLI failed."""
    child = subprocess.Popen([ALCF_TOKENS, "login", "inference"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(env))
    try:
        line = ""
        while "/v2/oauth2/authorize" not in line:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"alcf-tokens login printed no authorize URL: {child.stderr.read()[-500:]}")
        _, stderr = child.communicate(globus.approve(line.strip()) + "\n", timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0 or stderr:
        raise RuntimeError(f"alcf-tokens login failed ({child.returncode}): {stderr[-500:]}")
    return alcf_tokens_cache(env)


@pytest.fixture
def globus(tmp_path) -> Iterator[GlobusStandIn]:
    tls = tmp_path / "globus-tls"
    tls.mkdir()
    ca, cert, key = make_test_ca(tls)
    with GlobusStandIn(cert_file=str(cert), key_file=str(key), ca_file=str(ca)) as standin:
        yield standin


@pytest.fixture
def globus_env(globus: GlobusStandIn, monkeypatch) -> dict[str, str]:
    for name, value in globus.env().items():
        monkeypatch.setenv(name, value)
    # A test's stand-in is production as far as file names go: no GLOBUS_SDK_ENVIRONMENT.
    monkeypatch.delenv("GLOBUS_SDK_ENVIRONMENT", raising=False)
    return dict(os.environ)


def gateway_request(
    globus: GlobusStandIn, method: str, path: str, token: str | None = None, body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str, Any]:
    """(status, content type, parsed JSON or text) of one gateway request over the stand-in's TLS;
    ``body`` is sent as JSON, or as it is when it is bytes."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(globus.gateway_url + path, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=globus.ca_file)
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as response:
            status, ctype, raw = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers["Content-Type"], exc.read()
    return status, ctype, json.loads(raw) if ctype.split(";")[0] == "application/json" else raw.decode()


def gateway_get(globus: GlobusStandIn, path: str, token: str | None) -> tuple[int, Any]:
    status, _, body = gateway_request(globus, "GET", path, token)
    return status, body


def logged_when(globus: GlobusStandIn, ready: Any, timeout: float = 30.0) -> list:
    """The stand-in's request log once ``ready(log)`` holds (it logs each request just after answering,
    so a client can see its answer before the log does): wait for that state, not for a time."""
    deadline = time.monotonic() + timeout
    while not ready(globus.requests) and time.monotonic() < deadline:
        globus.wait(0.01)
    return globus.requests
