"""The writers' lock on a directory: ``flock`` where the file system has it, else a lease file that
holds across the nodes sharing a home (NFS without a lock manager answers ENOLCK, a Lustre client
mounted ``noflock`` ENOSYS).

The lease file (``<lock>.lease``) is created with ``O_EXCL`` (atomic on NFSv3+ and Lustre) and says
who holds it: ``host``, ``pid`` and the lease time. The holder touches it every few seconds, so a
lease is alive while its mtime is younger than ``LEASE_SECONDS``. A lease is stale when it is older
than that (its holder died on some node, or hung), or when its holder is a dead process on this
host; a stale lease is broken under a second ``O_EXCL`` file (``<lock>.lease.break``), after reading
it again, so that two processes breaking the same stale lease cannot remove a fresh one.

Non-blocking, as before: a held lock raises BusyError at once; callers that wait loop (tokens.py).

    held = acquire("/home/ada/.config/metis-env/sync.lock", "auto", busy="another metis-env sync ...")
    try: ...
    finally: held.release()
"""

from __future__ import annotations

import errno
import os
import time

from .errors import BusyError, StoreError

KINDS = ("auto", "flock", "file")
LEASE_SECONDS = 30.0
RENEW_SECONDS = 5.0
BREAK_SECONDS = 10.0  # a breaker that died holding <lease>.break: its file is ignored after this

# flock's answers on a file system that does not do it (NFS without lockd, Lustre noflock, FUSE, ...)
# (ENOSYS, ENOLCK, EOPNOTSUPP, EINVAL, ...): every failure but "held" means the file system cannot.
_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class FlockUnsupported(Exception):
    """flock fails here for a reason other than "held": the file system does not support it."""

    def __init__(self, strerror: str) -> None:
        super().__init__(strerror)
        self.strerror = strerror


def acquire(path: str, kind: str, busy: str) -> "FlockHeld | LeaseHeld":
    """Take the lock named ``path`` (``kind``: auto | flock | file), or raise BusyError(``busy``) at once."""
    if kind != "file":
        try:
            return FlockHeld(path, busy)
        except FlockUnsupported as exc:
            if kind == "flock":
                raise StoreError(
                    f"the file system of {os.path.dirname(path)} does not support flock ({exc.strerror}); "
                    "use a lease file instead: metis-env config set lock file (or METIS_ENV_LOCK=file)"
                ) from None
    return LeaseHeld(path + ".lease", busy)


def _open_private(path: str, flags: int) -> int:
    """Open without following a symlink: open and chmod would reach whatever file it points at."""
    try:
        return os.open(path, flags | _FLAGS, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise StoreError(f"{path} is a symbolic link; refusing to use it (remove the link)") from None
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None


class FlockHeld:
    kind = "flock"

    def __init__(self, path: str, busy: str) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: the lease file
            raise FlockUnsupported("no flock on this system") from None
        self.fd = _open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            os.fchmod(self.fd, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise BusyError(busy) from None
        except OSError as exc:
            os.close(self.fd)
            raise FlockUnsupported(exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))) from None

    def release(self) -> None:
        """Unlock explicitly: closing is not enough when a child forked meanwhile (subprocess before
        its exec, multiprocessing) still holds a copy of the descriptor, and with it the lock."""
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


class Holder:
    """What a lease file says, and how old it is."""

    def __init__(self, text: str, mtime: float) -> None:
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        self.host = fields.get("host", "")
        self.pid = int(fields["pid"]) if fields.get("pid", "").isdigit() else 0
        self.token = fields.get("token", "")
        self.mtime = mtime

    def stale(self, now: float, host: str) -> bool:
        """Not renewed for a lease's time (its holder died on some node, or hangs), or held by a dead
        process of this host."""
        if now > self.mtime + LEASE_SECONDS:
            return True
        return bool(self.host == host and self.pid and not pid_alive(self.pid))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}" if self.host else "a holder that has not written its name yet"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs. A zombie does not (it died; only its parent has
    not reaped it yet: a lock holder killed under a parent that has not waited for it, a test's own
    finished child); a process of another user (EPERM) does. The lock's lease and the broker's
    clients both use this rule."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return not os.path.isdir("/proc")  # no /proc entry where /proc exists: gone


def read_holder(path: str) -> Holder | None:
    """The lease file's holder, or None when there is no lease file (released meanwhile)."""
    try:
        fd = _open_private(path, os.O_RDONLY)
    except FileExistsError:  # not with O_RDONLY; for the type checker's sake
        return None
    except StoreError:
        if not os.path.lexists(path):
            return None
        raise
    try:
        mtime = os.fstat(fd).st_mtime
        text = os.read(fd, 4096).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return Holder(text, mtime)


class LeaseHeld:
    kind = "file"

    def __init__(self, path: str, busy: str) -> None:
        import _thread  # not threading: Thread.start() and join() each wait for the other thread to run
        import secrets
        import socket

        self.path = path
        self.host = socket.gethostname()
        self.token = secrets.token_hex(8)
        for _attempt in range(5):
            try:
                fd = _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                holder = read_holder(path)
                if holder is None:
                    continue  # released between our create and our read: try again
                if not holder.stale(time.time(), self.host):
                    raise BusyError(f"{busy} (lease {path}: {holder.describe()})") from None
                _break_stale(path, holder)
                continue
            try:
                os.write(fd, f"metis-env-lease host={self.host} pid={os.getpid()} token={self.token} lease={LEASE_SECONDS:g}\n".encode())
            finally:
                os.close(fd)
            break
        else:
            raise BusyError(f"{busy} (lease {path} changes hands too often)")
        self.held = _thread.allocate_lock()  # released by release(): the renewer's signal to stop
        self.held.acquire()
        _thread.start_new_thread(self._renew, ())

    def ours(self) -> bool:
        try:
            holder = read_holder(self.path)
        except StoreError:
            return False
        return holder is not None and holder.token == self.token

    def _renew(self) -> None:
        while not self.held.acquire(timeout=RENEW_SECONDS):
            if not self.ours():
                return  # broken (we hung past the lease): touching it would extend another's
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        # No join: a renewal racing this unlink touches nothing (gone) or the next holder's lease
        # (which it only extends); waiting for the renewer to be scheduled costs a busy machine most.
        self.held.release()
        if self.ours():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _break_stale(path: str, holder: Holder) -> None:
    """Remove the stale lease ``holder`` read, unless it changed meanwhile: under ``<path>.break``, so
    that of two processes that saw the same stale lease, the second cannot remove the first's fresh one."""
    guard = path + ".break"
    try:
        fd = _open_private(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        try:
            if time.time() - os.lstat(guard).st_mtime > BREAK_SECONDS:
                os.unlink(guard)  # its breaker died between two system calls
        except OSError:
            pass
        return
    os.close(fd)
    try:
        again = read_holder(path)
        if again is not None and again.token == holder.token and again.mtime == holder.mtime:
            os.unlink(path)
    except (OSError, StoreError):
        pass
    finally:
        try:
            os.unlink(guard)
        except OSError:
            pass


def probe(path: str, kind: str) -> str:
    """Take and release the lock once, as a writer would; say which kind holds here and why.
    Raises BusyError (held right now) or StoreError (``lock: flock`` where flock fails)."""
    busy = f"another metis-env holds the lock {path} right now"
    if kind == "file":
        LeaseHeld(path + ".lease", busy).release()
        return f"lease file {path}.lease (lock: file)"
    try:
        FlockHeld(path, busy).release()
        return f"flock on {path} (lock: {kind})"
    except FlockUnsupported as exc:
        if kind == "flock":
            acquire(path, kind, busy)  # raises the one-line StoreError
        LeaseHeld(path + ".lease", busy).release()
        return f"lease file {path}.lease (lock: auto; flock fails here: {exc.strerror})"
