"""The broker process: forked by ``launch.join_or_start`` (or ``python -m metis_env.broker.daemon``
when the caller has threads), or ``metis-env proxy start --foreground`` in the caller's own process.

It listens at once, writes its state and says it is ready, and only then loads the server and the
store (connections wait in the listening socket's backlog meanwhile; the keys are looked up at the first
request that needs them). It serves until ``proxy stop``, SIGTERM/SIGINT/SIGHUP, or ``idle_exit``
seconds with no client process alive, no connection and no request. It leaves under the broker lock,
so that a rank joining at that moment starts a new broker instead of finding one that is going.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from ..coredump import no_core_dumps
from . import runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engine import ProxyServer

LOCAL_KEY_PREFIX = "metis-env-local-"


def listen(settings, directory: str, endpoint_id: str) -> tuple[socket.socket, runtime.BrokerInfo]:
    """Listen on 127.0.0.1 (at the stable port when free: client.py) with a new local key and write
    the state clients join by."""
    import base64  # secrets.token_urlsafe, without the 5 ms of importing secrets in a new broker's way

    from ..text import warn

    listener = runtime.listen(lambda port: socket.create_server((runtime.HOST, port), backlog=128), settings, warn)
    local_key = LOCAL_KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")
    info = runtime.BrokerInfo(os.getpid(), listener.getsockname()[1], local_key, str(settings.config_dir), time.time(), endpoint_id)
    runtime.write_state(directory, info)
    return listener, info


def open_server(settings, store, info: runtime.BrokerInfo, listener: socket.socket) -> ProxyServer:
    """The server on ``listener``, serving ``info``'s local key."""
    from .engine import ProxyServer, Router
    from .upstream import KeyCache

    return ProxyServer(Router(store, info.default_endpoint), KeyCache(store, settings), info.local_key, settings, listener=listener)


def open_broker(settings, store, directory: str, endpoint_id: str) -> tuple[ProxyServer, runtime.BrokerInfo]:
    """``listen``, then ``open_server``: the broker of ``proxy start --foreground``."""
    listener, info = listen(settings, directory, endpoint_id)
    return open_server(settings, store, info, listener), info


def run_broker(server: ProxyServer, directory: str, idle_exit: float) -> int:
    """Serve until stopped or idle; exit status 0."""
    stopping = threading.Event()
    server.on_stop = stopping.set
    if threading.current_thread() is threading.main_thread():
        for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signo, lambda *_: stopping.set())
    server.start()
    tick = max(0.05, min(1.0, idle_exit / 4))
    while not stopping.wait(tick):
        if server.idle_for() >= idle_exit:
            break
    with runtime.locked(directory):
        runtime.remove_state(directory, os.getpid())
        server.stop()
    return 0


def serve_detached(settings, directory: str, endpoint_id: str, idle_exit: float, ready_fd: int,
                   client_pid: int | None = None) -> int:
    """Be the broker in this (new) process: listen, say ``ready`` on ``ready_fd``, serve until the end."""
    # Nothing of the starter's that outlives it: the signals it blocked (SIGTERM at a job's end must
    # reach us; a forked or exec'd child keeps the mask) and its cwd (held, it keeps a directory busy
    # and its file system from being unmounted; the config dir is made absolute first).
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    settings = settings._replace(config_dir=os.path.abspath(settings.config_dir))
    os.chdir("/")
    listener, info = listen(settings, directory, endpoint_id)
    if ready_fd >= 0:
        os.write(ready_fd, b"ready\n")  # it listens: the caller may go
        os.close(ready_fd)
    no_core_dumps(undumpable=True)  # before any key is read: this process will hold every key it serves
    name_process(b"metis-env-proxy")
    from ..store import open_store

    server = open_server(settings, open_store(settings), info, listener)
    if client_pid is not None:
        server.add_client(client_pid)  # the starter's process: before the first request is served
    return run_broker(server, directory, idle_exit)


def name_process(name: bytes) -> None:
    """What ``ps -e``, ``top`` and ``pgrep`` show for this process (Linux: ``prctl(PR_SET_NAME)``; a
    forked broker's command line is still its starter's)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="metis_env.broker.daemon")
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--idle-exit", type=float, default=runtime.DEFAULT_IDLE_EXIT)
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--client-pid", type=int, default=None)
    parser.add_argument("--min-ttl", type=float, default=None)
    args = parser.parse_args(argv)
    from ..settings import load_settings, with_overrides

    settings = load_settings()
    if args.min_ttl:
        settings = with_overrides(settings, min_ttl=args.min_ttl)
    return serve_detached(settings, args.runtime_dir, args.endpoint, args.idle_exit, args.ready_fd, args.client_pid)


if __name__ == "__main__":
    raise SystemExit(main())
