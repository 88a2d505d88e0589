"""The broker process: ``python -m metis_env.broker.daemon`` (started by ``runtime.join_or_start``),
or ``metis-env proxy start --foreground`` in the caller's own process.

It listens at once (the keys are looked up at the first request that needs them), writes its state,
says it is ready, and serves until ``proxy stop``, SIGTERM/SIGINT/SIGHUP, or ``idle_exit`` seconds with
no client process alive, no connection and no request. It leaves under the broker lock, so that a rank
joining at that moment starts a new broker instead of finding one that is going.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
import time

from ..coredump import no_core_dumps
from ..text import warn
from . import client, runtime
from .engine import LOCAL_KEY_PREFIX, ProxyServer, Router
from .upstream import KeyCache


def open_broker(settings, store, directory: str, endpoint_id: str) -> tuple[ProxyServer, runtime.BrokerInfo]:
    """Listen on 127.0.0.1 (at the stable port when free: client.py) with a new local key and write
    the state clients join by."""
    local_key = LOCAL_KEY_PREFIX + secrets.token_urlsafe(32)
    router, keys = Router(store, endpoint_id), KeyCache(store, settings)
    server = client.listen(lambda port: ProxyServer(router, keys, local_key, settings, port=port), settings, warn)
    info = runtime.BrokerInfo(os.getpid(), server.address[1], local_key, str(settings.config_dir), time.time(), endpoint_id)
    runtime.write_state(directory, info)
    return server, info


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metis_env.broker.daemon")
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--idle-exit", type=float, default=runtime.DEFAULT_IDLE_EXIT)
    parser.add_argument("--ready-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    no_core_dumps(undumpable=True)  # this process holds every key it serves
    from ..settings import load_settings
    from ..store import open_store

    settings = load_settings()
    server, _info = open_broker(settings, open_store(settings), args.runtime_dir, args.endpoint)
    if args.ready_fd >= 0:
        os.write(args.ready_fd, b"ready\n")
        os.close(args.ready_fd)
    return run_broker(server, args.runtime_dir, args.idle_exit)


if __name__ == "__main__":
    raise SystemExit(main())
