"""One broker per user per host: where its state lives, and joining it or starting it without a race.

The state is node-local, never on a shared home: ``$XDG_RUNTIME_DIR/metis-env`` (when that is an
absolute path that exists), else ``/tmp/metis-env-$UID``; a directory of mode 0700 owned by the user
(one made by anyone else, or open to others, is refused). In it:

- ``broker.lock``: taken (``flock``; node-local, so it works) by whoever checks for a broker and
  starts one, so that 256 ranks starting at once make exactly one;
- ``broker.json`` (0600): the broker's pid, port, local key, config dir and start time;
- ``broker.log`` (0600): the broker's warnings.

Joining or starting the broker is launch.py's (``launch.join_or_start``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..errors import BrokerError
from ..files import replace_file
from ..locks import pid_alive
from ..settings import require_settings

HOST = "127.0.0.1"
FIRST_PORT, PORTS = 20000, 10000  # the stable ports: below Linux's ephemeral range (client.py says why)
STATE_FILE = "broker.json"
LOCK_FILE = "broker.lock"
LOG_FILE = "broker.log"
DEFAULT_IDLE_EXIT = 600.0  # seconds without a client: a job's ranks come and go within that


def runtime_dir(environ: Mapping[str, str] = os.environ) -> str:
    xdg = environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "metis-env")
    return f"/tmp/metis-env-{os.getuid()}"


def ensure_runtime_dir(path: str) -> str:
    """``path``, made 0700 if missing; BrokerError when it is not a directory of ours closed to others
    (another user could have made ``/tmp/metis-env-$UID`` first to read the local key)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BrokerError(f"cannot make the broker's runtime dir {path}: {exc.strerror}") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BrokerError(
            f"the broker's runtime dir {path} is not a directory of yours with mode 0700; remove it, or set XDG_RUNTIME_DIR"
        )
    return path


class BrokerInfo(NamedTuple):
    pid: int
    port: int
    local_key: str
    config_dir: str
    started: float
    default_endpoint: str

    def __repr__(self) -> str:
        return f"BrokerInfo(pid={self.pid}, port={self.port}, config_dir={self.config_dir!r})"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, endpoint_id: str) -> str:
        return f"{self.origin}/endpoint/{endpoint_id}/v1/"


def stable_port(settings, uid: int | None = None) -> int | None:
    """The port configs name: ``proxy_port``, else one derived from the uid; None when ``proxy_port``
    is 0 (a random port each time, which no config can name). A bad ``proxy_port`` is refused here."""
    require_settings(settings, ("proxy_port",))
    chosen = getattr(settings, "proxy_port", None)
    if chosen is not None:
        return chosen or None
    return FIRST_PORT + (os.getuid() if uid is None else uid) % PORTS


def listen(make_server: Callable[[int], object], settings, warn: Callable[[str], None]):
    """``make_server(port)`` at the stable port, or at a random one (with a warning) when that port is
    taken; ``proxy_port: 0`` asks for a random one outright."""
    port = stable_port(settings)
    if port is None:
        return make_server(0)
    try:
        return make_server(port)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        warn(f"broker: port {port} on {HOST} is taken ({exc.strerror}); listening at a random port, so tools "
             f"configured with --proxy get no key until it is free (set proxy_port to a free port and configure them again)")
        return make_server(0)


def read_state(directory: str) -> BrokerInfo | None:
    try:
        with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
        return BrokerInfo(*(data[name] for name in BrokerInfo._fields))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(directory: str, info: BrokerInfo) -> None:
    replace_file(os.path.join(directory, STATE_FILE), json.dumps(info._asdict()), 0o600, durable=False)


def remove_state(directory: str, pid: int) -> None:
    info = read_state(directory)
    if info is not None and info.pid == pid:
        try:
            os.unlink(os.path.join(directory, STATE_FILE))
        except OSError:
            pass


def call(info: BrokerInfo, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    """One request to the broker's own routes (``/metis-env/...``) -> its JSON answer; OSError or
    ValueError when it does not answer so."""
    import urllib.request  # here: http.client and ssl cost a new broker's start 50 ms

    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(info.origin + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {info.local_key}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never an HTTP proxy
    with opener.open(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def ours_running(pid: int) -> bool:
    """Whether ``pid`` is a live process of this user. The state of a broker that was killed (SIGKILL,
    the OOM killer) stays behind, and another local user may listen at its port since: nothing, not
    even the old local key, is sent there unless the broker's own process still runs."""
    if not pid_alive(pid):
        return False
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except FileNotFoundError:
        if os.path.isdir("/proc"):
            return False
    except OSError:
        return False
    try:  # no /proc (macOS): a process of another user is EPERM
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def alive(info: BrokerInfo | None) -> bool:
    if info is None or not ours_running(info.pid):
        return False
    try:
        return call(info, "GET", "/metis-env/status").get("pid") == info.pid
    except (OSError, ValueError):  # urllib's URLError is an OSError
        return False


class Locked:
    """The broker lock, held while entered; ``fd``: what a forked broker closes (an inherited copy
    would hold the lock on after the parent released it)."""

    def __init__(self, directory: str) -> None:
        self.fd = self._fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> Locked:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the lock


def locked(directory: str) -> Locked:
    """The broker lock: held while a broker is looked for and started, and by a broker that exits."""
    return Locked(directory)


def last_line(directory: str) -> str:
    try:
        with open(os.path.join(directory, LOG_FILE), encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def stop(environ: Mapping[str, str] = os.environ) -> int | None:
    """Stop this host's broker and wait until its process is gone -> its pid; None when none ran."""
    directory = runtime_dir(environ)
    info = read_state(directory) if os.path.isdir(directory) else None
    if not alive(info):
        return None
    assert info is not None
    try:
        call(info, "POST", "/metis-env/stop")
    except (OSError, ValueError):
        pass  # it may close the connection as it goes
    while pid_alive(info.pid):
        time.sleep(0.02)
    return info.pid


def status(environ: Mapping[str, str] = os.environ) -> dict | None:
    directory = runtime_dir(environ)
    info = read_state(directory) if os.path.isdir(directory) else None
    if info is None or not ours_running(info.pid):
        return None
    try:
        return call(info, "GET", "/metis-env/status")
    except (OSError, ValueError):
        return None
