"""The store's lock where ``flock`` fails, for real: a small LD_PRELOAD shim built here with the
machine's gcc makes every ``flock()`` answer ENOSYS (a Lustre client mounted ``noflock``) or ENOLCK
(NFS without a lock manager). import, export, sync against the real sshd, a gateway refresh against
the stand-in and fifty concurrent exports then run on the lease file (locks.py), with one refresh.
"Nodes" sharing one config dir are processes with their own host name (``unshare --uts``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metis_env import locks
from metis_env.errors import BusyError
from metis_env.settings import load_settings
from tests._gateway import concurrent_exports, exported_json, keys_file, logged_in, metadata, slow_refresh_pending  # noqa: F401
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests._sshd import real_sshd, sshd  # noqa: F401  (fixtures)
from tests.conftest import REPO, metis

SHIM = r"""
#include <errno.h>
#include <stdlib.h>
/* flock() as a file system without it answers: METIS_T_FLOCK_ERRNO, or ENOSYS */
int flock(int fd, int operation) {
    const char *e = getenv("METIS_T_FLOCK_ERRNO");
    (void)fd; (void)operation;
    errno = e ? atoi(e) : ENOSYS;
    return -1;
}
"""
MARGIN_ALL = {"METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}


@pytest.fixture(scope="session")
def shim(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("gcc is needed to build the flock shim")
        pytest.skip("gcc is not installed")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "noflock.c").write_text(SHIM)
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(folder / "noflock.so"), str(folder / "noflock.c")], check=True)
    return str(folder / "noflock.so")


@pytest.fixture(params=["ENOSYS", "ENOLCK"])
def no_flock(request, shim) -> dict[str, str]:
    return {"LD_PRELOAD": shim, "METIS_T_FLOCK_ERRNO": str(getattr(errno, request.param))}


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def lease_path(config: Path) -> Path:
    return config / "sync.lock.lease"


def saved_store_line(config_dir) -> str:
    """What import, sync and login say when they remember --store file in config.yaml."""
    return f"metis-env: store: file saved in {config_dir / 'config.yaml'} (later commands use it; metis-env config set store ... changes it)\n"


def test_the_shim_makes_flock_fail_as_such_file_systems_do(no_flock, tmp_path):
    code = "import fcntl, os\ntry:\n  fcntl.flock(os.open('x', os.O_CREAT | os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError as e:\n  print(e.errno)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, **no_flock}, capture_output=True, text=True)
    assert proc.stdout == no_flock["METIS_T_FLOCK_ERRNO"] + "\n"


def test_import_export_and_doctor_without_flock(no_flock, env_setup, endpoint_files):
    imported = metis("import", "--store", "file", *map(str, endpoint_files), env=no_flock)
    assert result(imported) == (0, "", "endpoint 1: new\nendpoint 2: new\n" + saved_store_line(env_setup))
    exported = metis("export", "2", "--shell", "json", env={**no_flock, "METIS_ENV_STORE": "file"})
    assert (exported.returncode, exported_json(exported)["OPENAI_API_KEY"]) == (0, "sk-test-two-0123456789abcdef")
    doctor = metis("doctor", env={**no_flock, "METIS_ENV_STORE": "file"})
    reason = os.strerror(int(no_flock["METIS_T_FLOCK_ERRNO"]))
    lock = env_setup / "sync.lock"
    assert [l for l in doctor.stdout.decode().splitlines() if l.startswith("ok       lock:")] == [
        f"ok       lock: lease file {lock}.lease (lock: auto; flock fails here: {reason})"]
    assert not lease_path(env_setup).exists()  # released


def test_lock_flock_where_flock_fails_is_one_line_naming_the_setting(no_flock, env_setup, endpoint_files):
    proc = metis("import", "--store", "file", str(endpoint_files[0]), env={**no_flock, "METIS_ENV_LOCK": "flock"})
    reason = os.strerror(int(no_flock["METIS_T_FLOCK_ERRNO"]))
    assert result(proc) == (6, "", (
        f"metis-env: error: the file system of {env_setup} does not support flock ({reason}); "
        "use a lease file instead: metis-env config set lock file (or METIS_ENV_LOCK=file)\n"))


def test_the_lock_setting_is_checked_and_kept(env_setup):
    assert result(metis("config", "set", "lock", "nfs")) == (2, "", "metis-env: error: lock must be one of auto, flock, file\n")
    assert metis("config", "set", "lock", "file").returncode == 0
    assert load_settings().lock == "file"
    doctor = metis("doctor", env={"METIS_ENV_STORE": "file"})
    assert f"ok       lock: lease file {env_setup}/sync.lock.lease (lock: file)\n" in doctor.stdout.decode()


def test_sync_against_the_real_sshd_without_flock(no_flock, sshd, env_setup):
    known_hosts = Path(os.path.expanduser("~/.ssh"))
    known_hosts.mkdir(mode=0o700, exist_ok=True)
    (known_hosts / "known_hosts").write_text(sshd.host_key_line())
    proc = metis("sync", "--store", "file", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user,
                 "--passcode-stdin", input=f"{sshd.code()}\n".encode(), env=no_flock)
    assert (proc.returncode, proc.stdout, proc.stderr.decode().splitlines()[-3:]) == (
        0, b"", ["endpoint 1: new", "endpoint 2: new", saved_store_line(env_setup).rstrip("\n")])
    assert not lease_path(env_setup).exists()


def test_a_gateway_refresh_without_flock(no_flock, logged_in):
    env, globus = logged_in
    old = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    proc = metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL, **no_flock})
    new = exported_json(proc)["OPENAI_API_KEY"]
    assert (proc.stderr, globus.grants("refresh_token"), new != old, globus.token_status(new)) == (b"", 1, True, "valid")


def test_fifty_concurrent_exports_without_flock_refresh_once(no_flock, logged_in):
    env, globus = logged_in
    slow_refresh_pending(globus, env)
    runs = concurrent_exports({**env, **no_flock}, 50, timeout=300)
    tokens = {exported_json(r)["OPENAI_API_KEY"] for r in runs}
    assert [(r.returncode, r.stderr) for r in runs] == [(0, b"")] * 50
    assert globus.grants("refresh_token") == 2  # the one above, and exactly one for the fifty
    assert len(tokens) == 1 and globus.token_status(tokens.pop()) == "valid"


# --- "nodes" sharing one config dir ---------------------------------------------------------------

HOLD = """
import sys
from metis_env.settings import load_settings
from metis_env.store import open_store
with open_store(load_settings()).locked():
    print("held", flush=True)
    sys.stdin.readline()
"""


def on_node(node: str | None, argv: list[str], extra: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """argv in a process whose host name is ``node`` (its own UTS namespace), or this host's."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "METIS_ENV_LOCK": "file", "METIS_ENV_STORE": "file", **(extra or {})}
    if node is not None:
        argv = ["unshare", "--uts", "sh", "-c", f'hostname {node} && exec "$@"', "sh", *argv]
    return subprocess.Popen(argv, env=env, **popen)


def hold_on(node: str | None) -> subprocess.Popen:
    holder = on_node(node, [sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    return holder


def import_on(node: str | None, files) -> tuple[int, str, str]:
    proc = on_node(node, [sys.executable, "-m", "metis_env", "import", *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()


def test_a_lease_held_on_one_node_stops_a_writer_on_another_until_broken_when_stale(env_setup, endpoint_files):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare --uts (root)")
    holder = hold_on("node-a")
    lease = lease_path(env_setup)
    busy = (16, "", f"metis-env: error: another metis-env sync or import is running (lock {env_setup}/sync.lock); "
            f"wait for it to finish (lease {lease}: pid {holder.pid} on node-a)\n")
    assert import_on("node-b", endpoint_files) == busy
    holder.kill()
    holder.wait()
    # node-a's holder died without releasing: node-b cannot see its process, only its lease, still fresh
    assert import_on("node-b", endpoint_files) == busy
    expired = time.time() - locks.LEASE_SECONDS - 1
    os.utime(lease, (expired, expired))  # as if node-a has not renewed it for a lease's time
    assert import_on("node-b", endpoint_files) == (0, "", "endpoint 1: new\nendpoint 2: new\n")
    assert not lease.exists()


def test_exports_on_two_nodes_sharing_the_home_make_one_refresh(logged_in):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare --uts (root)")
    env, globus = logged_in
    globus.access_lifetime = 1200  # the stored token: 20 min left, inside the default 1 h margin
    exported_json(metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL}))
    globus.access_lifetime = 172800
    argv = [sys.executable, "-m", "metis_env", "export", "metis", "--shell", "json"]
    runs = [on_node(node, argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for node in ("node-a", "node-b") * 4]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [(run.returncode, err) for run, (_, err) in zip(runs, outputs)] == [(0, b"")] * 8
    tokens = {json.loads(out)["OPENAI_API_KEY"] for out, _ in outputs}
    assert (globus.grants("refresh_token"), len(tokens)) == (2, 1)  # the one above, and one for both nodes


def test_a_dead_holder_on_this_host_is_broken_at_once(env_setup, endpoint_files):
    holder = hold_on(None)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lease_path(env_setup).exists()
    assert import_on(None, endpoint_files) == (0, "", "endpoint 1: new\nendpoint 2: new\n")
    assert not lease_path(env_setup).exists()


def test_a_holder_that_died_but_is_not_reaped_yet_is_dead_too(env_setup, endpoint_files):
    """A zombie (killed, its parent has not waited for it) answers kill(pid, 0) as if it ran: pid_alive
    reads its state instead, so its lease is broken at once as a dead holder's is."""
    holder = hold_on(None)
    holder.send_signal(signal.SIGKILL)
    while Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # waiting for a state: dead, not reaped (this test is its parent and has not waited)
    try:
        assert (locks.pid_alive(holder.pid), locks.pid_alive(os.getpid()), locks.pid_alive(1)) == (False, True, True)
        assert import_on(None, endpoint_files) == (0, "", "endpoint 1: new\nendpoint 2: new\n")
        assert not lease_path(env_setup).exists()
    finally:
        holder.wait()
    assert locks.pid_alive(holder.pid) is False  # reaped: no such process


def test_a_live_holder_renews_its_lease_and_keeps_it(env_setup, monkeypatch):
    monkeypatch.setattr(locks, "RENEW_SECONDS", 0.05)
    env_setup.mkdir(mode=0o700)
    path = str(env_setup / "sync.lock")
    held = locks.acquire(path, "file", "busy")
    first = os.stat(path + ".lease").st_mtime_ns
    while os.stat(path + ".lease").st_mtime_ns == first:  # wait for the renewal, not for a time
        time.sleep(0.01)
    with pytest.raises(BusyError):
        locks.acquire(path, "file", "busy")
    held.release()
    locks.acquire(path, "file", "busy").release()
    assert sorted(os.listdir(env_setup)) == []


@pytest.mark.parametrize("step", ["before-secrets", "before-metadata", "after-metadata", "after-cleanup"])
def test_a_refresh_killed_at_any_step_without_flock_leaves_a_usable_token_and_a_breakable_lease(no_flock, logged_in, step):
    """The commit protocol on the lease: a refresh killed -9 holding it; the next one breaks the dead
    holder's lease at once (this host) and cleans what the killed one left."""
    from tests._trust import start_metis, wait_for_line

    env, globus = logged_in
    env = {**env, **no_flock}
    old = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    process = start_metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL, "METIS_ENV_TEST_PAUSE_AT": step})
    wait_for_line(process.stderr, f"metis-env: paused at {step}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    lease = lease_path(Path(env["METIS_ENV_CONFIG_DIR"]))
    assert lease.exists()  # the killed holder's
    now = exported_json(metis("export", "metis", "--shell", "json", env=env))["OPENAI_API_KEY"]
    assert ((now == old), globus.token_status(now)) == (step in ("before-secrets", "before-metadata"), "valid")
    refreshed = metis("export", "metis", "--shell", "json", env={**env, **MARGIN_ALL})
    assert (refreshed.returncode, refreshed.stderr) == (0, b"")
    section = metadata(env)["gateway"]
    assert (sorted(keys_file(env)), lease.exists()) == (sorted([section["access"], section["refresh"]]), False)
