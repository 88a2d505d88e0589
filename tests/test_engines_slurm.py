"""docs/batch-jobs.md, the PBS recipe on Slurm (Debian packages no PBS): a real job array
on a real slurmctld + slurmd, each task `metis-env run --proxy metis -- python task.py` as each rank of
`mpiexec --genvall ... metis-env run --proxy` is. The gateway token expires while the array runs: no
request fails, one refresh for all tasks, and no token in `scontrol show job`, in slurmctld's saved job
(its environment and script), in the jobs' output, or in any process's argv or environment."""

from __future__ import annotations

import os
import sys
import time

from metis_env.testing.gateway_standin import REPLY
from tests._engines import chat_statuses, scan_files, scan_processes, short_login, tokens, wait_until_expired
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests._slurm import slurm  # noqa: F401  (the session's Slurm)

TASKS = 4
# The job script as docs/batch-jobs.md's PBS recipe has it, with Slurm's array in place of PBS's select.
SCRIPT = """#!/bin/bash
export METIS_ENV_STORE=file   # if config.yaml does not say store: file
metis-env run --proxy metis -- {python} -m tests._engine_tasks {folder} "$SLURM_ARRAY_TASK_ID"
"""


def wait_for_files(folder, prefix: str, count: int, job: str, slurm, timeout: float = 180) -> None:  # noqa: F811
    deadline = time.monotonic() + timeout
    while sum(1 for name in os.listdir(folder) if name.startswith(prefix)) < count:
        outputs = {p.name: p.read_text() for p in folder.glob("out-*.txt")}
        assert slurm.states(job) and time.monotonic() < deadline, outputs
        time.sleep(0.1)


def test_a_slurm_array_under_run_proxy_keeps_working_across_a_token_expiry(slurm, globus, globus_env, monkeypatch, tmp_path):  # noqa: F811
    env = short_login(globus, globus_env, monkeypatch)
    folder = tmp_path / "array"
    folder.mkdir()
    script = SCRIPT.format(python=sys.executable, folder=folder)
    job = slurm.sbatch(script, env, f"--array=0-{TASKS - 1}", f"--output={folder}/out-%a.txt", f"--chdir={tmp_path}")

    wait_for_files(folder, "before-", TASKS, job, slurm)
    refreshes_before = globus.grants("refresh_token")
    seen = wait_until_expired(globus, env)
    shown = slurm.command("scontrol", "show", "job", "-dd", job)
    saved_files, saved_holding = scan_files(slurm.folder / "state", seen)
    leaks = scan_processes(seen)
    (folder / "go").touch()
    wait_for_files(folder, "after-", TASKS, job, slurm)
    slurm.wait_gone(job)
    secrets = seen | tokens(env)

    replies = [(folder / f"after-{i}").read_text().split("\n") for i in range(TASKS)]
    outputs = {p.name: p.read_text() for p in sorted(folder.glob("out-*.txt"))}
    assert (replies, globus.grants("refresh_token") - refreshes_before) == ([[REPLY, REPLY]] * TASKS, 1)
    assert set(chat_statuses(globus)) == {(200, True)}
    assert outputs == {f"out-{i}.txt": "" for i in range(TASKS)}
    assert (f"JobId={job}" in shown, saved_files > 0) == (True, True)
    assert ([s for s in secrets if s in shown], saved_holding, leaks, scan_processes(secrets)) == ([], [], [], [])
