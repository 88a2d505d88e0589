"""Loopback past the user's HTTP proxy: a child given a ``http://127.0.0.1:PORT`` URL must not send it
to ``http_proxy`` (ALCF's getting-started pages set ``http_proxy`` and a ``no_proxy`` without
``127.0.0.1``; the openai SDK, requests, urllib and curl then ask the proxy for 127.0.0.1, and it
answers 403).

    env.update(loopback_no_proxy(os.environ))
"""

from __future__ import annotations

from collections.abc import Mapping

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def loopback_no_proxy(environ: Mapping[str, str]) -> dict[str, str]:
    """``NO_PROXY`` and ``no_proxy``, each keeping what it held (or, when unset, what the other held)
    with ``127.0.0.1,localhost,::1`` added where missing."""
    upper, lower = environ.get("NO_PROXY"), environ.get("no_proxy")
    result = {}
    for name, own, other in (("NO_PROXY", upper, lower), ("no_proxy", lower, upper)):
        base = own if own is not None else (other or "")
        entries = [e.strip() for e in base.split(",") if e.strip()]
        missing = [host for host in LOOPBACK if host not in entries]
        result[name] = ",".join([base.strip().rstrip(",")] + missing if base.strip() else missing) if missing else base
    return result
