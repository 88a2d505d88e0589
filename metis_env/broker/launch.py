"""Joining this host's broker, or starting one, without a race (many ranks at once make one broker)
and quickly (``proxy start`` returns within about 150 ms).

``metis-env proxy start`` forks the broker (``fork=True``): that process has imported most of what
the broker needs and read the settings, so no second interpreter starts. The fork is double (the
broker's parent exits at once, so that no caller is left with a zombie to reap) and the broker gets a
session of its own, /dev/null for stdin and stdout, the log for stderr and the name metis-env-proxy.
Every other caller starts ``python -m metis_env.broker.daemon``: a fork of ``run --proxy -- python
infer.py`` would show that command line, which a ``pkill -f infer.py`` would match, and a caller with
other threads (a Jupyter kernel asking through ``openai_client(proxy=True)``) could be forked holding a
lock another thread held.

    info, started = join_or_start(settings, "metis", idle_exit=300, client_pid=os.getpid())
    info.url_for("metis")    # http://127.0.0.1:PORT/endpoint/metis/v1/
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping

from ..errors import BrokerError
from ..settings import BROKER_ONLY, require_settings
from . import runtime
from .runtime import DEFAULT_IDLE_EXIT, LOG_FILE, BrokerInfo


def join_or_start(settings, endpoint_id: str, idle_exit: float | None = None, client_pid: int | None = None,
                  environ: Mapping[str, str] = os.environ, fork: bool = False) -> tuple[BrokerInfo, bool]:
    """The broker of this user on this host, started (in the background) when none runs -> (its
    info, whether this call started it). ``client_pid``: a process the broker stays up for; ``fork``:
    fork the broker from this process (``proxy start``) when it has no other thread."""
    require_settings(settings, BROKER_ONLY)  # a bad rate_limit, metis_compat or proxy_port is the broker's to refuse
    directory = runtime.ensure_runtime_dir(runtime.runtime_dir(environ))
    with runtime.locked(directory) as held:
        info = runtime.read_state(directory)
        started = not runtime.alive(info)
        if started:
            info = _start(settings, directory, endpoint_id, DEFAULT_IDLE_EXIT if idle_exit is None else idle_exit,
                          client_pid, held.fd if fork else None)
        assert info is not None
        if os.path.realpath(info.config_dir) != os.path.realpath(str(settings.config_dir)):
            raise BrokerError(
                f"this host's broker (pid {info.pid}) serves the config dir {info.config_dir}, not {settings.config_dir};"
                " stop it first: metis-env proxy stop"
            )
        if client_pid is not None and not started:
            try:  # a joiner's --min-ttl raises the broker's (it refreshes that long before expiry)
                runtime.call(info, "POST", "/metis-env/clients", {"pid": client_pid, "min_ttl": getattr(settings, "min_ttl", None)})
            except (OSError, ValueError) as exc:
                raise BrokerError(f"the broker (pid {info.pid}) did not answer: {exc}; see {os.path.join(directory, LOG_FILE)}") from None
    return info, started


def _start(settings, directory: str, endpoint_id: str, idle_exit: float, client_pid: int | None,
           lock_fd: int | None) -> BrokerInfo:
    """Start the broker (forked when ``lock_fd``, the broker lock to close in it, is given) and wait until it listens."""
    read_end, write_end = os.pipe()
    log = os.open(os.path.join(directory, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if lock_fd is not None and threading.active_count() == 1 and hasattr(os, "fork"):
            child = _fork(settings, directory, endpoint_id, idle_exit, client_pid, (read_end, write_end, log, lock_fd))
        else:
            child = _exec(settings, directory, endpoint_id, idle_exit, client_pid, write_end, log)
    finally:
        os.close(write_end)
        os.close(log)
    with os.fdopen(read_end, "rb") as ready:
        said = ready.read()  # "ready\n" once it listens; nothing if it died first
    if said != b"ready\n":
        raise BrokerError(f"the broker did not start ({child()}): {runtime.last_line(directory)}")
    info = runtime.read_state(directory)
    if info is None:
        raise BrokerError("the broker started but wrote no state; see " + os.path.join(directory, LOG_FILE))
    return info


def _fork(settings, directory: str, endpoint_id: str, idle_exit: float, client_pid: int | None, fds: tuple[int, int, int, int]):
    read_end, write_end, log, lock_fd = fds
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the children would write the caller's buffered output again
        except (OSError, ValueError):
            pass
    middle = os.fork()
    if middle == 0:  # never returns: any way out of here is os._exit
        status = 1
        try:
            os.setsid()
            if os.fork() == 0:
                status = _be_broker(settings, directory, endpoint_id, idle_exit, client_pid, write_end, (read_end, log, lock_fd))
            else:
                status = 0
        except BaseException:  # noqa: BLE001  (reported in the log; the caller sees "did not start")
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()  # the log's last lines: os._exit flushes nothing
            finally:
                os._exit(status)
    _pid, status = os.waitpid(middle, 0)  # it forks and exits at once
    return lambda: "it exited at once" if status == 0 else f"exit {os.waitstatus_to_exitcode(status)}"


def _be_broker(settings, directory: str, endpoint_id: str, idle_exit: float, client_pid: int | None, write_end: int,
               fds: tuple[int, int, int]) -> int:
    read_end, log, lock_fd = fds
    devnull = os.open(os.devnull, os.O_RDWR)
    for target, source in ((0, devnull), (1, devnull), (2, log)):
        os.dup2(source, target)
    for fd in (devnull, read_end, log, lock_fd):  # the lock's copy would hold it after the caller let go
        os.close(fd)
    close_inherited(keep=write_end)
    from .daemon import serve_detached

    return serve_detached(settings, directory, endpoint_id, idle_exit, write_end, client_pid)


def close_inherited(keep: int) -> None:
    """Close the fds above 2 that this process inherited across its exec (no close-on-exec flag, so
    not Python's own): a caller's pipe (bats's fd 3, a CI runner's) held by the broker would keep its
    reader waiting for EOF for as long as the broker runs. Python's own fds are left alone: an object
    that still owns one would close that number again later, when it may be a socket of the broker."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd <= 2 or fd == keep:
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass


def _exec(settings, directory: str, endpoint_id: str, idle_exit: float, client_pid: int | None, write_end: int, log: int):
    import subprocess

    argv = [sys.executable, "-m", "metis_env.broker.daemon", "--runtime-dir", directory, "--endpoint", endpoint_id,
            "--ready-fd", str(write_end), "--idle-exit", str(idle_exit)]
    if client_pid is not None:
        argv += ["--client-pid", str(client_pid)]
    if getattr(settings, "min_ttl", None):
        argv += ["--min-ttl", str(settings.min_ttl)]
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                 pass_fds=(write_end,), start_new_session=True, close_fds=True)
    except OSError as exc:
        raise BrokerError(f"cannot start the broker: {exc.strerror}") from None
    return lambda: f"exit {child.wait()}"
