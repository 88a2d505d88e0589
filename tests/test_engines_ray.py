"""docs/batch-jobs.md, Ray: one local Ray (started once for the session, two CPUs, no
dashboard, loopback) whose tasks call metis_env.openai_client() inside; the task's runtime_env carries
only what finds the store, never a token. The gateway token expires between two phases: no request
fails, one refresh for both workers, and no token in any process's argv or environment or in Ray's
session directory (its logs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from metis_env.testing.gateway_standin import REPLY
from tests._engine_tasks import chat
from tests._engines import across_expiry, chat_statuses, scan_files, short_login
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

# the engines extra installs only for Python 3.10+: skipped on 3.9, as the alcf-tokens tests are
ray = pytest.importorskip("ray")

CPUS = 2
# What the workers need to find the store (and, here, the stand-in): names and places, never a token.
PASSED_ON = ("METIS_ENV_CONFIG_DIR", "METIS_ENV_STORE", "METIS_ENV_TOKEN_REFRESH_MARGIN", "METIS_ENV_GATEWAY_URL",
             "GLOBUS_SDK_SERVICE_URL_AUTH", "GLOBUS_SDK_VERIFY_SSL", "SSL_CERT_FILE", "PYTHONPATH")


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory) -> Iterator[Path]:
    """One Ray for every test of the session: started once (several seconds on two cores)."""
    temp_dir = tmp_path_factory.mktemp("ray")
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(temp_dir)  # Ray writes ~/.ray/auth_token: not into the real home
    try:
        ray.init(num_cpus=CPUS, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False,
                 _node_ip_address="127.0.0.1", _temp_dir=str(temp_dir), configure_logging=False)
    finally:
        if home is None:
            os.environ.pop("HOME")
        else:
            os.environ["HOME"] = home
    try:
        yield temp_dir
    finally:
        ray.shutdown()


def test_ray_tasks_keep_working_across_a_token_expiry(local_ray, globus, globus_env, monkeypatch, tmp_path):  # noqa: F811
    env = short_login(globus, globus_env, monkeypatch)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    remote_chat = ray.remote(num_cpus=1)(chat).options(runtime_env={"env_vars": {name: env[name] for name in PASSED_ON}})

    def phase(name: str) -> list[tuple[list[str], int]]:
        return ray.get([remote_chat.remote(str(barrier), name, i, CPUS) for i in range(CPUS)], timeout=180)

    run = across_expiry(globus, env, phase)

    assert (run.replies, run.refreshes) == ([REPLY] * 2 * CPUS * 2, 1)
    assert set(chat_statuses(globus)) == {(200, True)}
    assert (len(run.worker_pids), os.getpid() in run.worker_pids, run.alive) == (CPUS, False, True)
    assert (len(run.secrets) >= 3, run.leaks, scan_files(local_ray, run.secrets)[1]) == (True, [], [])
