"""An in-memory keyring backend (a real keyring.backend.KeyringBackend), with an optional failure
injected on the Nth write, for the store's all-or-nothing tests."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError, PasswordSetError


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.fail_on_set: int | None = None
        self.sets = 0

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.sets += 1
        if self.fail_on_set is not None and self.sets >= self.fail_on_set:
            raise PasswordSetError("injected failure")
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]
