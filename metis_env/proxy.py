"""``metis-env run --proxy``: a loopback proxy that holds the real key while a long job runs.

An environment variable cannot be refreshed, and a gateway access token lives 48 h; a job can live
longer. So metis-env gives the command ``OPENAI_BASE_URL`` = this host's broker on 127.0.0.1 (joined,
or started when none runs: metis_env/broker/launch.py) and ``OPENAI_API_KEY`` = its local key, and
the broker (metis_env/broker/engine.py) puts the real key in its place, refreshing a gateway token when ``export`` would, routing by model across every
stored endpoint, absorbing the gateway's rate limits, and streaming answers as they come.

The real key never enters the command's environment or argv: inherited variables holding it (plain,
URL- or base64-encoded, or compressed as direnv's ``DIRENV_DIFF`` holds it) are dropped. The command
gets the user's own core-dump limit back, and ``NO_PROXY``/``no_proxy`` with loopback in them.
metis-env stays the parent: it forwards SIGINT, SIGTERM and SIGHUP and exits with the command's
status (128+N when a signal N ended it). Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
import zlib
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

from . import credentials
from .text import warn
from .variables import EXPORTED_NAMES
from .errors import UsageError
from .noproxy import loopback_no_proxy
from .supervise import supervise

# direnv's record of what it changed (zlib + base64 of every exported value): never the child's business.
SHELL_STATE = ("DIRENV_DIFF",)


def run_with_proxy(store, settings, spec: str | None, model: str | None, argv: Sequence[str]) -> int:
    """``metis-env run --proxy [ENDPOINT] [--model NAME] -- CMD``: the child's exit status."""
    if not argv:
        raise UsageError("nothing to run; usage: metis-env run --proxy [ENDPOINT] [--model NAME] -- COMMAND [ARGS...]")
    from .broker import launch, runtime

    # The key is read here too: it names what the child's inherited variables must not carry.
    selection, key = credentials.select_with_key(store, spec, model, settings, "run --proxy")
    for warning in selection.warnings:
        warn(warning)
    info, _started = launch.join_or_start(settings, selection.endpoint.id, client_pid=os.getpid())
    env = child_environment(os.environ, selection, info.url_for(selection.endpoint.id), info.local_key, [key], settings)
    relay = LogRelay(os.path.join(runtime.runtime_dir(), runtime.LOG_FILE))
    return supervise(argv, env, relay.start, relay.stop)


class LogRelay:
    """The broker's warnings (a refresh refused, a policy lapse) written while the command runs, copied
    to metis-env's stderr: the user of ``run --proxy`` reads them there, as from any other command."""

    def __init__(self, path: str) -> None:
        import threading

        self._path = path
        try:
            self._offset = os.path.getsize(path)
        except OSError:
            self._offset = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="metis-env-broker-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._copy()  # what the broker wrote before it answered the command's last request

    def _follow(self) -> None:
        while not self._done.wait(0.2):
            self._copy()

    def _copy(self) -> None:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return
        whole = data[: data.rfind(b"\n") + 1]
        if whole:
            self._offset += len(whole)
            sys.stderr.buffer.write(whole)
            sys.stderr.flush()


def child_environment(
    inherited: Mapping[str, str], selection, proxy_url: str, local_key: str, real_keys: Sequence[str], settings=None
) -> dict[str, str]:
    """What the child gets: ``run``'s variables, pointing at the proxy and carrying the local key.

    Inherited names that ``run`` would set for another kind of endpoint (an old export of a real key)
    are dropped, and so is any variable that carries a real key in any form: the child must have none.
    """
    local = selection._replace(endpoint=selection.endpoint._replace(base_url=proxy_url))
    ours = credentials.environment_for(local, local_key, settings)
    ours.pop("METIS_ENV_TOKEN_EXPIRES", None)  # the local key does not expire while the child runs
    env = {
        name: value
        for name, value in inherited.items()
        if name not in EXPORTED_NAMES
        and name != "METIS_ENV_TOKEN_EXPIRES"
        and name not in SHELL_STATE
        and not carries_key(value, real_keys)
    }
    env.update(ours)
    env.update(loopback_no_proxy(inherited))
    return env


def carries_key(value: str, keys: Iterable[str]) -> bool:
    """Whether ``value`` holds one of ``keys`` as it is, percent-encoded, inside base64 (standard or
    URL-safe, at any alignment), or base64 of zlib data that holds it (direnv's encoding)."""
    keys = [k for k in keys if k]
    if not keys:
        return False
    if any(needle in value for key in keys for needle in _encodings(key)):
        return True
    if "%" in value and any(key in unquote(value) for key in keys):
        return True
    compact = value.strip()
    if len(compact) < 16 or len(compact) > 4 * 1024 * 1024 or any(c.isspace() for c in compact):
        return False
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = decode(compact + "=" * (-len(compact) % 4))
            text = zlib.decompressobj().decompress(raw, 16 * 1024 * 1024)
        except (binascii.Error, ValueError, zlib.error):
            continue
        if any(key.encode() in text for key in keys):
            return True
    return False


def _encodings(key: str) -> list[str]:
    data = key.encode()
    found = [key]
    for shift in range(3):
        # The part of base64(prefix + key + suffix) that depends on the key alone, for a prefix of
        # ``shift`` (mod 3) bytes: whole 4-character groups, away from both edges.
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        start = 4 if shift else 0
        end = len(encoded) - 4
        if end - start >= 12:
            middle = encoded[start:end]
            found += [middle, middle.replace("+", "-").replace("/", "_")]
    return found
