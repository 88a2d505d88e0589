"""docs/batch-jobs.md, Dask: a real LocalCluster (two worker processes, two threads each)
whose tasks call metis_env.openai_client() inside, while the gateway token expires between two phases.
No request fails, the expiry costs one refresh for all workers, and no token is in any process's argv
or environment or in Dask's scratch space."""

from __future__ import annotations

import os

import pytest

from metis_env.testing.gateway_standin import REPLY
from tests._engine_tasks import chat
from tests._engines import across_expiry, chat_statuses, scan_files, scan_processes, short_login
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)

# the engines extra installs only for Python 3.10+: skipped on 3.9, as the alcf-tokens tests are
distributed = pytest.importorskip("distributed")
Client, LocalCluster = distributed.Client, distributed.LocalCluster

WORKERS, THREADS = 2, 2
PARTIES = WORKERS * THREADS  # every thread of every worker in each phase, at once


def test_dask_tasks_keep_working_across_a_token_expiry(globus, globus_env, monkeypatch, tmp_path):  # noqa: F811
    env = short_login(globus, globus_env, monkeypatch)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    scratch = tmp_path / "dask"
    with LocalCluster(n_workers=WORKERS, threads_per_worker=THREADS, processes=True, host="127.0.0.1",
                      dashboard_address=None, local_directory=str(scratch)) as cluster, Client(cluster) as client:

        def phase(name: str) -> list[tuple[list[str], int]]:
            futures = [client.submit(chat, str(barrier), name, i, PARTIES, pure=False) for i in range(PARTIES)]
            return client.gather(futures)

        run = across_expiry(globus, env, phase)

    assert (run.replies, run.refreshes) == ([REPLY] * 2 * PARTIES * 2, 1)
    assert set(chat_statuses(globus)) == {(200, True)}
    assert (len(run.worker_pids), os.getpid() in run.worker_pids, run.alive) == (WORKERS, False, True)
    assert (len(run.secrets) >= 3, run.leaks, scan_files(scratch, run.secrets)[1]) == (True, [], [])


def test_the_scans_find_a_token_where_one_is(tmp_path):
    """The scans above can fail: a token in a child's argv, in its environment, in a file."""
    import subprocess

    secret = "a-token-that-must-be-found-0123456789"
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "submit.sh").write_text(f"export T={secret}\n")
    child = subprocess.Popen(["sh", "-c", "echo ready; read line", secret], env={"T": secret},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"  # the state: sh runs (its argv and environ are in /proc)
        found = sorted(scan_processes({secret}))
    finally:
        child.communicate(b"\n")
    assert (found, scan_files(tmp_path, {secret})) == ([(child.pid, "cmdline"), (child.pid, "environ")], (1, [str(tmp_path / "deep" / "submit.sh")]))
