"""What ``endpoints.yaml`` says about the endpoints, as values: ``StoredEndpoint`` (one record, never
the key), ``Change`` (one endpoint's fate in an update), the one record builder (``build_record``) and
the planning of an update. Standard library only, no file access: ``store.py`` reads and writes.

Example::

    build_record(endpoint, "sync", utc_now(), fingerprint, "keyring", "1/sha256:...", backend, previous)
"""

from __future__ import annotations

import time
from .structs import record_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


# Records are record types (structs.py: namedtuple without collections), not dataclasses: `import
# dataclasses` (inspect, ast, dis) costs about 14 ms, more than the rest of `export` together; see main.py.
_STORED_FIELDS = (
    "id base_url models file_name source synced_at fingerprint store secret_ref backend "
    # informative, not part of identity (== and hash leave them out):
    "extra previous_fingerprint"
)
_INFORMATIVE = 2


class StoredEndpoint(record_type("StoredEndpoint", _STORED_FIELDS, defaults=("", None, ""))):
    """What the metadata file says about one endpoint: never the key itself.

    ``id, base_url, file_name, source, synced_at`` (ISO 8601), ``fingerprint``, ``store`` ("keyring" or
    "file"), ``secret_ref``, ``backend``: str; ``models``: tuple[str, ...]; ``extra``: dict[str, str];
    ``previous_fingerprint``: the key's fingerprint before the last sync (doctor says if the key changed).
    """

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls, *args, **kwargs)
        return self if self.extra is not None else self._replace(extra={})

    def __eq__(self, other):
        return isinstance(other, StoredEndpoint) and self[:-_INFORMATIVE] == other[:-_INFORMATIVE]

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self[:-_INFORMATIVE])

    def age_days(self, now=None) -> float | None:
        import datetime

        try:
            when = datetime.datetime.fromisoformat(self.synced_at)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (now - when).total_seconds() / 86400

    def is_older_than(self, days: float) -> bool:
        """Whether the data was synced more than ``days`` ago; cheap for the hot path, which pays for
        datetime (1.5 ms) only when it has a warning to word."""
        if len(self.synced_at) == 25 and self.synced_at.endswith("+00:00"):  # what utc_now() writes
            cutoff = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days * 86400))
            return self.synced_at < cutoff
        age = self.age_days()
        return age is not None and age > days


class Change(record_type("Change", "id status detail", defaults=("",))):
    """One endpoint's fate in an update: ``status`` is new | unchanged | key rotated | models changed |
    updated | removed; ``detail`` says which models came and went."""

    __slots__ = ()


class Listed(record_type("Listed", "id base_url models file_name extra")):
    """An endpoint as a login lists it (a gateway cluster): what ``build_record`` needs of it."""

    __slots__ = ()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def build_record(endpoint: Any, source: str, synced_at: str, fingerprint: str, store: str, secret: str, backend: str,
                 previous_fingerprint: str = "") -> dict[str, Any]:
    """The one builder of an ``endpoints.yaml`` record (version 1): ``endpoint`` gives ``base_url``,
    ``models``, ``file_name`` and ``extra`` (an endpoint file's Endpoint, or a gateway cluster's
    equivalent); the rest says where its key is and since when."""
    return {
        "base_url": endpoint.base_url,
        "models": list(endpoint.models),
        "file_name": endpoint.file_name,
        "source": source,
        "synced_at": synced_at,
        "fingerprint": fingerprint,
        "store": store,
        "secret": secret,
        "backend": backend,
        "extra": dict(endpoint.extra),
        "previous_fingerprint": previous_fingerprint,
    }


def read_record(endpoint_id: str, record: Mapping[str, Any]) -> StoredEndpoint:
    """A record of endpoints.yaml -> StoredEndpoint; KeyError or TypeError when it is damaged."""
    return StoredEndpoint(
        id=endpoint_id,
        base_url=record["base_url"],
        models=tuple(record["models"]),
        file_name=record.get("file_name", ""),
        source=record.get("source", ""),
        synced_at=record.get("synced_at", ""),
        fingerprint=record["fingerprint"],
        store=record.get("store", "keyring"),
        secret_ref=record["secret"],
        backend=record.get("backend", ""),
        extra=dict(record.get("extra", {})),
        previous_fingerprint=record.get("previous_fingerprint", ""),
    )


def plan_changes(old: Mapping[str, StoredEndpoint], endpoints: Sequence[Any], kind: str, remove_others: bool) -> list[Change]:
    """Each endpoint's fate when ``endpoints`` replace (or are merged into) ``old``, in id order."""
    changes = [describe_change(old.get(e.id), e, kind) for e in endpoints]
    if remove_others:
        given = {e.id for e in endpoints}
        changes += [Change(i, "removed") for i in old if i not in given]
    return sorted(changes, key=lambda c: natural_key(c.id))


def describe_change(previous: StoredEndpoint | None, endpoint: Any, kind: str) -> Change:
    if previous is None:
        return Change(endpoint.id, "new")
    if previous.fingerprint != endpoint.fingerprint:
        return Change(endpoint.id, "key rotated")
    if previous.models != endpoint.models:
        added = [m for m in endpoint.models if m not in previous.models]
        gone = [m for m in previous.models if m not in endpoint.models]
        detail = ", ".join([f"+{m}" for m in added] + [f"-{m}" for m in gone])
        return Change(endpoint.id, "models changed", detail)
    if previous.base_url != endpoint.base_url or previous.store != kind or previous.extra != endpoint.extra:
        return Change(endpoint.id, "updated")
    return Change(endpoint.id, "unchanged")


def natural_key(text: str) -> tuple:
    """Sort ``2`` before ``10``, and numbers before words."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)
