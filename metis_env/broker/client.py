"""The broker at a stable address, for tools whose config is a static file (``configure --proxy``).

A tool's config cannot follow a broker that starts on demand at a random port, so the broker listens
at one port per user when it can: the ``proxy_port`` setting, else ``20000 + uid % 10000`` (below
Linux's ephemeral range, so that no outgoing connection takes it by chance). A config names
``http://127.0.0.1:PORT/endpoint/ID/v1`` and gets the key by running ``metis-env get key ID
--proxy-port PORT``, which joins this host's broker or starts it and prints its local key, never the
real one, and only when the broker listens at PORT: the port the config sends to, even after
``proxy_port`` changed since configure wrote it.

When another process holds the port (another user on a shared login node), the broker listens at a
random port instead (``run --proxy`` and ``proxy start`` keep working), and the key command refuses
to print the local key: the tool then sends nothing, so a stranger on that port never sees a request
or a key. A key printed just before the broker went away (``proxy stop``) is a dead one: each broker
makes a new local key.

    url = broker_url(settings, "metis")     # http://127.0.0.1:21000/endpoint/metis/v1
    key = local_key(settings, "metis", os.getppid())
"""

from __future__ import annotations

from ..errors import BrokerError
from .runtime import HOST, stable_port  # noqa: F401  (stable_port: what commands/export.py reads here)


def broker_url(settings, endpoint_id: str) -> str:
    """The base URL (no trailing slash) a config names for ``endpoint_id`` through the broker;
    BrokerError when ``proxy_port`` is 0."""
    port = stable_port(settings)
    if port is None:
        raise BrokerError("proxy_port is 0 (a random port each time), which a tool's config cannot name; "
                          "metis-env config unset proxy_port, or set it to a free port")
    return f"http://{HOST}:{port}/endpoint/{endpoint_id}/v1"


def local_key(settings, endpoint_id: str, client_pid: int | None = None, port: int | None = None) -> str:
    """The local key of this host's broker (joined, or started), which must listen at ``port`` (the
    one the tool's config names; default: the stable port); BrokerError otherwise, so that a key is
    never handed to a tool that would send it elsewhere. ``client_pid`` (the tool) keeps the broker up
    while it runs."""
    from . import launch

    stable = stable_port(settings)
    broker_url(settings, endpoint_id)  # raises when there is no stable port
    port = port or stable
    info, _started = launch.join_or_start(settings, endpoint_id, client_pid=client_pid)
    if info.port == port:
        return info.local_key
    if port != stable:
        raise BrokerError(
            f"the tool's config names the broker at port {port}, but proxy_port is now {stable}; "
            f"run metis-env configure again for that tool"
        )
    raise BrokerError(
        f"this host's broker (pid {info.pid}) listens at port {info.port}, not at {port}, which tools configured "
        f"with --proxy use: another process held that port when the broker started; stop the broker "
        f"(metis-env proxy stop) and try again, or set proxy_port to a free port and run metis-env configure again"
    )
