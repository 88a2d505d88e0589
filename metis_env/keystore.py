"""Where the secrets themselves live: the OS keyring through keyring (the only module that imports it,
and only when a keyring entry is read or written), or the explicit file store, ``keys.json``. The
store (``store.py``) decides which entries exist; this module only reads, writes and deletes them.
"""

from __future__ import annotations

import os
import sys
import time

from . import paths
from .errors import StoreError, StoreUnavailableError
from .files import atomic_write_text, ensure_private_dir, loads_json, read_private_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

SERVICE = "metis-env"
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
FILE_STORE_HINT = "use the file store instead: --store file, or METIS_ENV_STORE=file, or 'store: file' in config.yaml"


def checkpoint(step: str) -> None:
    """Test-only pause point for the crash-consistency suite (kill -9 while paused)."""
    if os.environ.get("METIS_ENV_TEST_PAUSE_AT") == step:
        sys.stderr.write(f"metis-env: paused at {step}\n")
        sys.stderr.flush()
        time.sleep(3600)


class FileSecrets:
    """The explicit file store: ``keys.json``, mode 0600 in the 0700 config dir."""

    kind = "file"
    backend = "file"

    def __init__(self, directory: str | os.PathLike, *, tighten: bool = True):
        self.path = paths.keys_file(directory)
        self.tighten = tighten

    def _load(self) -> dict[str, str]:
        text = read_private_text(self.path, secret=True, tighten=self.tighten)
        if text is None:
            return {}
        try:
            data = loads_json(text)
            keys = data["keys"]
            if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{self.path} is damaged; delete it and run metis-env sync again") from None
        return keys

    def _save(self, keys: dict[str, str]) -> None:
        import json  # writers only

        atomic_write_text(self.path, json.dumps({"version": 1, "keys": keys}, indent=2) + "\n")

    def get(self, ref: str) -> str | None:
        return self._load().get(ref)

    def check_writable(self) -> None:
        directory = os.path.dirname(self.path)
        ensure_private_dir(directory)
        self._load()
        if not os.access(directory, os.W_OK):
            raise StoreError(f"cannot write to {directory}; check its permissions")

    def set_many(self, items: dict[str, str]) -> None:
        keys = self._load()
        keys.update(items)
        self._save(keys)

    def delete(self, refs: Iterable[str]) -> None:
        keys = self._load()
        remaining = {k: v for k, v in keys.items() if k not in set(refs)}
        if remaining != keys:
            self._save(remaining)


class KeyringSecrets:
    """The OS keyring through ``keyring``; every call bounded by a timeout (an unlock dialog or a
    daemon that never answers must not hang a shell start-up)."""

    kind = "keyring"

    def __init__(self, timeout: float | None = None):
        self.timeout = timeout if timeout is not None else float(os.environ.get("METIS_ENV_KEYRING_TIMEOUT", "10"))
        self._keyring: Any = None

    @property
    def backend(self) -> str:
        kr = self._backend()
        return f"{type(kr).__module__}.{type(kr).__name__}"

    def _backend(self) -> Any:
        if self._keyring is None:
            self._keyring = self.call(load_keyring_backend)
        return self._keyring

    def call(self, fn, *args):
        """``fn(*args)`` in a daemon thread, given up after the timeout (StoreUnavailableError); a keyring
        exception comes back as one line of ours."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = fn(*args)
            except BaseException as exc:  # handed back to the caller's thread below
                outcome["error"] = exc

        import threading  # the keyring store's only; the file store's hot path never needs it

        worker = threading.Thread(target=target, name="metis-env-keyring", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise _unavailable(
                f"the OS keyring did not answer within {self.timeout:g} s (locked, or waiting for an unlock dialog)",
                f"unlock it and try again, or {FILE_STORE_HINT}",
            )
        if "error" in outcome:
            raise _keyring_error(outcome["error"]) from None
        return outcome.get("value")

    def get(self, ref: str) -> str | None:
        kr = self._backend()
        return self.call(kr.get_password, SERVICE, ref)

    def check_writable(self) -> None:
        kr = self._backend()
        probe = "metis-env-write-probe"
        self.call(kr.set_password, SERVICE, probe, "probe")
        self.call(kr.delete_password, SERVICE, probe)

    def set_many(self, items: dict[str, str]) -> None:
        kr = self._backend()
        written: list[str] = []
        try:
            for number, (ref, secret) in enumerate(items.items(), start=1):
                self.call(kr.set_password, SERVICE, ref, secret)
                written.append(ref)
                checkpoint(f"secret-{number}")
        except BaseException:
            self.delete(written, quiet=True)
            raise

    def delete(self, refs: Iterable[str], quiet: bool = True) -> None:
        kr = self._backend()
        for ref in refs:
            try:
                self.call(kr.delete_password, SERVICE, ref)
            except Exception:
                if not quiet:
                    raise


def load_keyring_backend() -> Any:
    import keyring

    return keyring.get_keyring()


def _keyring_error(exc: BaseException) -> BaseException:
    """One line for each way a keyring fails; never the exception text of a backend we don't know."""
    if not isinstance(exc, Exception):
        return exc
    from keyring import errors as kerr

    name = type(exc).__name__
    if isinstance(exc, kerr.NoKeyringError):
        return _unavailable("no OS keyring is available here (usual on HPC nodes, containers and CI)", FILE_STORE_HINT)
    if isinstance(exc, kerr.KeyringLocked):
        return _unavailable("the OS keyring is locked", f"unlock it (log in to the desktop) or {FILE_STORE_HINT}")
    if isinstance(exc, kerr.InitError):
        return _unavailable(
            f"the OS keyring could not be opened ({name}; it may be locked or its unlock prompt dismissed)",
            f"unlock it or {FILE_STORE_HINT}",
        )
    if isinstance(exc, (kerr.PasswordSetError, kerr.PasswordDeleteError)):
        return StoreError(f"the OS keyring refused the change ({name}); unlock it or {FILE_STORE_HINT}")
    return _unavailable(f"the OS keyring failed ({name})", f"unlock or repair it, or {FILE_STORE_HINT}")


def _unavailable(reason: str, advice: str) -> StoreUnavailableError:
    """The error for a keyring that cannot be used, keeping the reason apart from the advice: the advice
    is for writing new keys, and a read of keys already in the keyring words its own."""
    error = StoreUnavailableError(f"{reason}; {advice}")
    error.reason = reason  # type: ignore[attr-defined]
    return error


def unreadable_keyring_message(what: str, reason: str) -> str:
    """What to do when ``what`` (``the key of endpoint 1``) is in the OS keyring and the keyring cannot
    be read here: the file store setting alone would not find it."""
    return (
        f"{what} is in the OS keyring, and {reason}: unlock the keyring (then metis-env store move --to file "
        f"makes the keys usable without it), or fetch the key again into the file store "
        f"(metis-env --store file sync, import or login)"
    )


def read_secret_fast(backend: str, ref: str) -> str | None:
    """The entry ``ref`` stored through ``backend``, read from Secret Service over D-Bus directly (about
    5x faster than keyring's discovery); None when that is not possible here or not the backend."""
    if backend != SECRET_SERVICE_BACKEND or not sys.platform.startswith("linux"):
        return None
    if os.environ.get("PYTHON_KEYRING_BACKEND", SECRET_SERVICE_BACKEND) != SECRET_SERVICE_BACKEND:
        return None
    try:
        from . import secret_service
    except ImportError:
        return None
    try:
        return secret_service.lookup(SERVICE, ref)
    except Exception:
        return None  # keyring will give the proper answer, or the proper error
