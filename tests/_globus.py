"""Fixtures for the Globus Auth + ALCF gateway stand-in (metis_env.testing.globus_standin).

    from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

    def test_login(globus, globus_env):
        subprocess.run([...], env=globus_env)       # the child's globus-sdk and metis-env use the stand-in
        assert globus.grants("authorization_code") == 1

``globus`` is a started stand-in over TLS with a CA of the test's own (``globus.ca_file``);
``globus_env`` also sets its variables in this process (for in-process globus-sdk), undone after
the test, and returns ``os.environ`` plus them, for subprocesses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from metis_env.testing.globus_standin import GlobusStandIn
from tests._tls import make_test_ca


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
