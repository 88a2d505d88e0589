"""A keyring backend kept in one JSON file, for tests whose keyring must outlive a process.

The crash-consistency suite kills a writer with SIGKILL between two keyring writes; the in-memory
keyring dies with it, so subprocesses load this backend instead:

    PYTHON_KEYRING_BACKEND=tests._disk_keyring.DiskKeyring METIS_TEST_DISK_KEYRING=/tmp/x/keyring.json

Each write is atomic (temp file, ``os.replace``) under an flock, like an OS keyring's own daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class DiskKeyring(KeyringBackend):
    priority = 1

    @property
    def path(self) -> str:
        return os.environ["METIS_TEST_DISK_KEYRING"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self._read()

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {}

    def _write(self, entries: dict) -> None:
        temp = f"{self.path}.{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(entries, handle)
        os.replace(temp, self.path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._read().get(f"{service}\t{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._locked() as entries:
            entries[f"{service}\t{username}"] = password
            self._write(entries)

    def delete_password(self, service: str, username: str) -> None:
        with self._locked() as entries:
            if entries.pop(f"{service}\t{username}", None) is None:
                raise PasswordDeleteError("not found")
            self._write(entries)


def entries(path: str) -> dict[str, str]:
    """Everything the keyring file holds, as ``{entry name: secret}`` for service metis-env."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    return {name.split("\t", 1)[1]: secret for name, secret in data.items() if name.startswith("metis-env\t")}
