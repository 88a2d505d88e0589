"""``metis-env proxy start|stop|status``: the node broker, one per user per host, shared by every
``run --proxy``, shell and Python process of that user there (see metis_env/broker/)."""

from __future__ import annotations

import os
import sys

from .. import credentials, render
from ..text import warn
from ..broker import launch, runtime
from ..errors import BrokerError
from ..noproxy import loopback_no_proxy
from ..store import open_store


def client_environment(selection, url: str, local_key: str, settings, inherited=os.environ) -> dict[str, str]:
    """What a client of the broker gets: ``export``'s variables, pointing at the broker with its local
    key, and loopback added to ``NO_PROXY``/``no_proxy``."""
    local = selection._replace(endpoint=selection.endpoint._replace(base_url=url))
    env = credentials.environment_for(local, local_key, settings)
    env.pop("METIS_ENV_TOKEN_EXPIRES", None)  # the local key does not expire
    env.update(loopback_no_proxy(inherited))
    return env


def start(settings, spec: str | None, model: str | None, shell: str | None, foreground: bool,
          idle_exit: float | None) -> int:
    """Join this host's broker or start one; print the code that points clients at it."""
    store = open_store(settings)
    if settings.min_ttl:  # --min-ttl: refresh now unless that much token life is left (export's rule)
        selection, _key = credentials.select_with_key(store, spec, model, settings, "proxy start")
    else:  # the broker looks the key up at its first request
        selection = credentials.select(store, spec, model, settings, "proxy start")
    for warning in selection.warnings:
        warn(warning)
    syntax = render.normalize_shell(shell) if shell else render.DEFAULT_SHELL
    if foreground:
        return _start_here(settings, store, selection, syntax, idle_exit)
    info, _started = launch.join_or_start(settings, selection.endpoint.id, idle_exit, client_pid=os.getppid(), fork=True)
    sys.stdout.write(render.render(syntax, client_environment(selection, info.url_for(selection.endpoint.id), info.local_key, settings)))
    return 0


def _start_here(settings, store, selection, syntax: str, idle_exit: float | None) -> int:
    """``--foreground``: this process is the broker (systemd, a Jupyter server), unless one runs."""
    from ..broker.daemon import open_broker, run_broker
    from ..coredump import no_core_dumps

    directory = runtime.ensure_runtime_dir(runtime.runtime_dir())
    with runtime.locked(directory):
        info = runtime.read_state(directory)
        joined = runtime.alive(info)
        if not joined:
            no_core_dumps(undumpable=True)
            server, info = open_broker(settings, store, directory, selection.endpoint.id)
    assert info is not None
    env = client_environment(selection, info.url_for(selection.endpoint.id), info.local_key, settings)
    sys.stdout.write(render.render(syntax, env))
    sys.stdout.flush()
    if joined:
        return 0
    return run_broker(server, directory, runtime.DEFAULT_IDLE_EXIT if idle_exit is None else idle_exit)


def stop() -> int:
    pid = runtime.stop()
    if pid is None:
        sys.stderr.write("metis-env: no broker runs on this host\n")
    else:
        sys.stderr.write(f"metis-env: broker (pid {pid}) stopped\n")
    return 0


def status(as_json: bool) -> int:
    seen = runtime.status()
    if seen is None:
        if as_json:
            sys.stdout.write('{"running": false}\n')
            return 0
        raise BrokerError("no broker runs on this host; start one: metis-env proxy start")
    if as_json:
        import json

        sys.stdout.write(json.dumps({"running": True, **seen}, sort_keys=True) + "\n")
        return 0
    rate = seen.get("rate")
    rows = [
        ("broker", f"pid {seen['pid']}, {seen['url']}, up {_duration(seen['uptime_seconds'])}"),
        ("clients", f"{seen['clients']} processes, {seen['connections']} connections"),
        ("requests", f"{seen['requests']}, {seen['rate_limited_absorbed']} upstream 429s absorbed, {seen['refreshes']} token refreshes"),
        ("queue", f"{seen['queue']} waiting, sending at " + (f"{rate:.1f} requests/s" if rate else "no limit") + " to the gateway"),
    ]
    compat = seen.get("metis_compat")
    if compat is not None:  # absent from a broker started by an older metis-env
        rows.append(("metis", "requests adapted: off (metis_compat: false)" if not compat["enabled"] else
                     f"requests adapted: {compat['content_flattened']} contents flattened, "
                     f"{compat['developer_role']} developer roles made system, {compat['tools_dropped']} tool lists dropped"))
    sys.stdout.write("".join(f"{name:<9}{value}\n" for name, value in rows))
    return 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"

