"""A real Slurm (Debian's slurm-wlm) on 127.0.0.1 for the session: slurmctld and slurmd in the
foreground, their config, state and logs in a temp dir, ports the kernel picks free, no munge
(``auth/none``: one user, loopback only, stopped with the session).

    def test_x(slurm):
        job = slurm.sbatch(script, env)       # -> job id; sbatch's --export=ALL from env
        slurm.wait_gone(job)                   # scontrol no longer lists it as pending or running

Commands find it through ``SLURM_CONF`` (``slurm.env``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

NODE = "metisnode"
CPUS = 8  # the node claims more CPUs than the machine has, so that an array's tasks run side by side
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(folder: Path, ctld_port: int, slurmd_port: int) -> str:
    return "\n".join([
        "ClusterName=metistest",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "AuthType=auth/none",
        "CredType=cred/none",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid",
        f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log",
        f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/builtin",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",
        "SlurmdParameters=config_overrides",
        f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={CPUS} RealMemory=1000 State=UNKNOWN",
        f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@dataclass
class Slurm:
    folder: Path
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
        proc = subprocess.run(argv, env={**(env or os.environ), **self.env}, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    def sbatch(self, script: str, env: Mapping[str, str], *options: str) -> str:
        """Submit ``script`` (its text) with ``env`` as the submitting environment -> the job id."""
        path = self.folder / f"job-{time.monotonic_ns()}.sh"
        path.write_text(script)
        return self.command("sbatch", "--parsable", *options, str(path), env=env).strip().split(";")[0]

    def states(self, job: str) -> list[str]:
        """The state of each of ``job``'s tasks that slurmctld still lists."""
        out = subprocess.run(["squeue", "--noheader", "--array", "--jobs", job, "--format=%T"],
                             env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60)
        return out.stdout.split()

    def wait_gone(self, job: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self.states(job):
            assert time.monotonic() < deadline, f"job {job} still {self.states(job)}"
            time.sleep(0.2)

    def ready(self) -> bool:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%t"], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=30)
        return proc.returncode == 0 and proc.stdout.strip() == "idle"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[Slurm]:
    folder = tmp_path_factory.mktemp("slurm")
    for name in ("state", "spool"):
        (folder / name).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, free_port(), free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = []
    try:
        for argv in (["/usr/sbin/slurmctld", "-D", "-i", "-f", str(conf)],
                     ["/usr/sbin/slurmd", "-D", "-N", NODE, "-f", str(conf)]):
            with open(folder / (Path(argv[0]).name + ".out"), "wb") as out:
                daemons.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        cluster = Slurm(folder, conf)
        deadline = time.monotonic() + START_TIMEOUT
        while not cluster.ready():
            assert all(d.poll() is None for d in daemons), (folder / "slurmctld.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Slurm did not come up"
            time.sleep(0.2)
        yield cluster
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
