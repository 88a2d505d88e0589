"""docs/batch-jobs.md, Parsl (and Globus Compute, whose endpoints run functions on this
same HighThroughputExecutor): a real HTEX with a LocalProvider and three workers, an app that calls
metis_env.openai_client() inside, a worker_init that names only where the store is. The gateway token
expires between two phases: no request fails, one refresh for all workers, and no token in Parsl's run
directory (its submit scripts hold worker_init) or in any process's argv or environment."""

from __future__ import annotations

import os

import pytest

from metis_env.testing.gateway_standin import REPLY
from tests._engine_tasks import chat
from tests._engines import across_expiry, chat_statuses, scan_files, short_login
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

# the engines extra installs only for Python 3.10+: skipped on 3.9, as the alcf-tokens tests are
parsl = pytest.importorskip("parsl")
Config = pytest.importorskip("parsl.config").Config
HighThroughputExecutor = pytest.importorskip("parsl.executors").HighThroughputExecutor
LocalProvider = pytest.importorskip("parsl.providers").LocalProvider

WORKERS = 3
WORKER_INIT = "export METIS_ENV_STORE=file"  # docs/batch-jobs.md's recipe: where the store is, never a token


def parsl_config(run_dir: str) -> Config:
    executor = HighThroughputExecutor(
        label="metis", address="127.0.0.1", max_workers_per_node=WORKERS, cores_per_worker=0.1,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1, worker_init=WORKER_INIT),
    )
    return Config(executors=[executor], run_dir=run_dir, strategy="none", strategy_period=1)  # its first block without a 5 s wait


def test_parsl_apps_keep_working_across_a_token_expiry(globus, globus_env, monkeypatch, tmp_path):  # noqa: F811
    env = short_login(globus, globus_env, monkeypatch)
    monkeypatch.delenv("METIS_ENV_STORE")  # the workers get it from worker_init, as in docs/batch-jobs.md
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    run_dir = tmp_path / "runinfo"
    app = parsl.python_app(chat, executors=["metis"])
    with parsl.load(parsl_config(str(run_dir))):

        def phase(name: str) -> list[tuple[list[str], int]]:
            return [future.result() for future in [app(str(barrier), name, i, WORKERS) for i in range(WORKERS)]]

        run = across_expiry(globus, env, phase)

    files_read, files_holding = scan_files(run_dir, run.secrets)
    submit_scripts = [p.read_text() for p in run_dir.rglob("*.sh")]
    assert (run.replies, run.refreshes) == ([REPLY] * 2 * WORKERS * 2, 1)
    assert set(chat_statuses(globus)) == {(200, True)}
    assert (len(run.worker_pids), os.getpid() in run.worker_pids, run.alive) == (WORKERS, False, True)
    assert (len(run.secrets) >= 3, run.leaks, files_holding) == (True, [], [])
    assert (files_read > 0, any(WORKER_INIT in script for script in submit_scripts)) == (True, True)
