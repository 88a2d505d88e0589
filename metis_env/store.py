"""The credential store: API keys in the OS keyring (or, chosen knowingly, a 0600 file; both in
``keystore.py``, the only module that imports keyring), everything else in ``endpoints.yaml``.

An update is all-or-nothing and readers never see a mix of two syncs: every key is written under a
new entry name (``<endpoint>/<fingerprint>``) before the metadata file that points at it is replaced
in one ``os.replace``; entries nothing points at any more are deleted afterwards. A crash at any
moment leaves the old or the new metadata, each pointing only at keys that exist.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from collections import namedtuple
from . import paths
from .errors import BusyError, NotFoundError, StoreError
from .files import atomic_write_text, dump_json_yaml, ensure_private_dir, load_structured, read_private_text, remove_stale_temp_files
from .keystore import SERVICE, FileSecrets, KeyringSecrets, _checkpoint, _read_secret_fast  # noqa: F401  (SERVICE: re-exported)
from .settings import Settings

# typing costs ~3 ms of every shell start-up; the annotations are strings (PEP 563), so only
# type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .endpoint import Endpoint  # and hashlib, ipaddress: the hot path never parses a file

GATEWAY = "gateway"  # the gateway source's records (``source``) and its token section in endpoints.yaml
METADATA_VERSION = 1


# Records are namedtuples, not dataclasses: `import dataclasses` (inspect, ast, dis) costs about
# 14 ms, more than the rest of `export` together; see the hot path in main.py.
_STORED_FIELDS = (
    "id base_url models file_name source synced_at fingerprint store secret_ref backend "
    # informative, not part of identity (== and hash leave them out):
    "extra previous_fingerprint"
)
_INFORMATIVE = 2


class StoredEndpoint(namedtuple("StoredEndpoint", _STORED_FIELDS, defaults=("", None, ""))):
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


class Change(namedtuple("Change", "id status detail", defaults=("",))):
    """One endpoint's fate in an update: ``status`` is new | unchanged | key rotated | models changed |
    updated | removed; ``detail`` says which models came and went."""

    __slots__ = ()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


# --- the store -------------------------------------------------------------------------------------


class Store:
    def __init__(self, settings: Settings, secrets: Any = None):
        self.settings = settings
        self.directory = settings.config_dir
        self.metadata_path = paths.metadata_file(self.directory)
        self._secrets: dict[str, Any] = {}
        if secrets is not None:
            self._secrets[secrets.kind] = secrets
        self._lock_depth = 0
        self._lock_handle: Any = None

    def secrets(self, kind: str | None = None) -> Any:
        kind = kind or self.settings.store
        if kind not in self._secrets:
            self._secrets[kind] = FileSecrets(self.directory) if kind == "file" else KeyringSecrets()
        return self._secrets[kind]

    # reading ---------------------------------------------------------------------------------------

    def endpoints(self) -> dict[str, StoredEndpoint]:
        """Every stored endpoint, in natural order of id (2 before 10)."""
        data = self._load_metadata()
        result = {}
        for endpoint_id, record in data.get("endpoints", {}).items():
            try:
                result[endpoint_id] = StoredEndpoint(
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
            except (KeyError, TypeError):
                raise StoreError(
                    f"{self.metadata_path}: the entry for endpoint {endpoint_id!r} is damaged; run metis-env sync"
                ) from None
        return dict(sorted(result.items(), key=lambda item: natural_key(item[0])))

    def _load_metadata(self) -> dict[str, Any]:
        text = read_private_text(self.metadata_path)
        if text is None:
            return {"version": METADATA_VERSION, "endpoints": {}}
        data = load_structured(text, self.metadata_path)
        if not isinstance(data, dict) or not isinstance(data.get("endpoints", {}), dict):
            raise StoreError(f"{self.metadata_path} is damaged; delete it and run metis-env sync")
        if data.get("version", METADATA_VERSION) > METADATA_VERSION:
            raise StoreError(f"{self.metadata_path} was written by a newer metis-env; upgrade metis-env")
        return data

    def api_key(self, stored: StoredEndpoint) -> str:
        """The key of one endpoint. A concurrent update may have replaced it: then read the new set."""
        for _attempt in range(3):
            key = _read_secret_fast(stored) if stored.store == "keyring" else None
            if key is None:
                key = self.secrets(stored.store).get(stored.secret_ref)
            if key is not None:
                return key
            current = self.endpoints().get(stored.id)
            if current is None or current == stored:
                break
            stored = current
            time.sleep(0.05)
        where = "the OS keyring" if stored.store == "keyring" else str(paths.keys_file(self.directory))
        raise StoreError(f"the key of endpoint {stored.id} is missing from {where}; run metis-env sync to fetch it again")

    # writing ---------------------------------------------------------------------------------------

    def locked(self):
        """Hold the writers' lock (non-blocking: a second sync fails at once with BusyError)."""
        import contextlib  # writers only: readers (export, in every shell) never pay for it

        return contextlib.contextmanager(self._hold_lock)()

    def _hold_lock(self) -> Iterator[None]:
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        from .locks import acquire  # writers only, as above

        ensure_private_dir(self.directory)
        path = paths.lock_file(self.directory)
        held = acquire(path, self.settings.lock, f"another metis-env sync or import is running (lock {path}); wait for it to finish")
        try:
            remove_stale_temp_files(self.directory)  # a killed update's .keys.json.*.tmp holds keys
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
        finally:
            held.release()

    def check_writable(self) -> None:
        """Fail now, before a one-time passcode is spent, if the update could not be stored."""
        ensure_private_dir(self.directory)
        self._load_metadata()
        self.secrets().check_writable()

    def replace_all(self, endpoints: list[Endpoint], source: str) -> list[Change]:
        """Make the stored set exactly ``endpoints``; all or nothing."""
        return self._update(endpoints, source, remove_others=True)

    def merge(self, endpoints: list[Endpoint], source: str) -> list[Change]:
        """Add or replace ``endpoints``, keep the others; all or nothing."""
        return self._update(endpoints, source, remove_others=False)

    def forget(self, endpoint_ids: Iterable[str] | None) -> list[Change]:
        """Delete the given endpoints (None: all of them), metadata first, then their keys."""
        import contextlib

        with self.locked():
            data = self._load_metadata()
            old = self.endpoints()
            ids = list(old) if endpoint_ids is None else list(endpoint_ids)
            for endpoint_id in ids:
                if endpoint_id not in old:
                    raise NotFoundError(f"no endpoint {endpoint_id!r} is stored; metis-env list shows what is")
            for kind in sorted({old[i].store for i in ids}):
                self.secrets(kind).check_writable()  # else the keys would outlive their metadata
            data["endpoints"] = {k: v for k, v in data.get("endpoints", {}).items() if k not in ids}
            data["updated_at"] = utc_now()
            journal = paths.journal_file(self.directory)
            self._clean_journal(data)
            stale = sorted({(old[i].store, old[i].secret_ref) for i in ids})
            atomic_write_text(journal, json.dumps({"store": self.settings.store, "refs": [], "stale": stale}) + "\n")
            atomic_write_text(self.metadata_path, dump_json_yaml(data))
            _checkpoint("forget-after-metadata")
            self._delete_unreferenced({(old[i].store, old[i].secret_ref) for i in ids}, data)
            with contextlib.suppress(OSError):
                os.unlink(journal)
            return [Change(i, "removed") for i in ids]

    def _update(self, endpoints: list[Endpoint], source: str, remove_others: bool) -> list[Change]:
        ids = [e.id for e in endpoints]
        if len(set(ids)) != len(ids):
            raise StoreError("two endpoint files give the same endpoint id; rename one of them")
        with self.locked():
            ensure_private_dir(self.directory)
            data = self._load_metadata()
            old = self.endpoints()
            secrets = self.secrets()
            backend = secrets.backend
            now = utc_now()
            # sync replaces the endpoint files' records only: the gateway's are login's and logout's
            kept = data.get("endpoints", {})
            records = {k: v for k, v in kept.items() if v.get("source") == GATEWAY and k not in ids} if remove_others else dict(kept)
            to_write: dict[str, str] = {}
            for endpoint in endpoints:
                previous = old.get(endpoint.id)
                ref = f"{endpoint.id}/{endpoint.fingerprint}"
                same_place = previous is not None and previous.store == secrets.kind and previous.secret_ref == ref
                if not same_place or secrets.get(ref) is None:
                    to_write[ref] = endpoint.api_key
                records[endpoint.id] = {
                    "base_url": endpoint.base_url,
                    "models": list(endpoint.models),
                    "file_name": endpoint.file_name,
                    "source": source,
                    "synced_at": now,
                    "fingerprint": endpoint.fingerprint,
                    "store": secrets.kind,
                    "secret": ref,
                    "backend": previous.backend if same_place and previous.backend else backend,
                    "extra": dict(endpoint.extra),
                    "previous_fingerprint": previous.fingerprint if previous is not None else "",
                }
            new_data = {
                **data,  # other sections (the gateway's tokens) stay as they are
                "version": METADATA_VERSION,
                "updated_at": now,
                "endpoints": dict(sorted(records.items(), key=lambda item: natural_key(item[0]))),
            }
            self._commit(secrets, to_write, new_data, data)
            return plan_changes(_file_records(old) if remove_others else old, endpoints, secrets.kind, remove_others)

    def preview_replace_all(self, endpoints: list[Endpoint]) -> list[Change]:
        """What ``replace_all(endpoints)`` would report, touching neither the keys nor the files."""
        return plan_changes(_file_records(self.endpoints()), endpoints, self.settings.store, remove_others=True)

    def metadata(self) -> dict[str, Any]:
        """The whole metadata file (endpoints and other sections, such as the gateway's tokens)."""
        return self._load_metadata()

    def rewrite(self, to_write: dict[str, str], change: Any, kind: str | None = None) -> dict[str, Any]:
        """Under the lock: write the secrets ``to_write`` into the ``kind`` store (new entry names),
        then the metadata ``change(old)`` returns, then delete what nothing references any more.
        The same journal and order as a sync: a crash leaves the old or the new state, whole."""
        import copy

        with self.locked():
            ensure_private_dir(self.directory)
            data = self._load_metadata()
            new_data = change(copy.deepcopy(data))
            new_data["version"] = METADATA_VERSION
            new_data["updated_at"] = utc_now()
            self._commit(self.secrets(kind), to_write, new_data, data)
            return new_data

    def _commit(self, secrets: Any, to_write: dict[str, str], new_data: dict, old_data: dict) -> None:
        import contextlib

        journal = paths.journal_file(self.directory)
        self._clean_journal(new_data)
        _checkpoint("before-secrets")
        # The journal also names the keys this update makes stale, so that a crash between the
        # metadata and their deletion does not leave replaced keys in the store for good.
        stale = sorted(references(old_data) - references(new_data))
        try:
            if to_write or stale:
                atomic_write_text(journal, json.dumps({"store": secrets.kind, "refs": sorted(to_write), "stale": stale}) + "\n")
            if to_write:
                secrets.set_many(to_write)  # rolls back its own partial writes
            _checkpoint("before-metadata")
            try:
                atomic_write_text(self.metadata_path, dump_json_yaml(new_data))
            except BaseException:
                secrets.delete(list(to_write))
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(journal)
            raise
        _checkpoint("after-metadata")
        self._delete_unreferenced(references(old_data), new_data)
        with contextlib.suppress(OSError):
            os.unlink(journal)
        _checkpoint("after-cleanup")

    def _delete_unreferenced(self, candidates: set[tuple[str, str]], data: dict) -> None:
        referenced = references(data)
        by_store: dict[str, list[str]] = {}
        for kind, ref in sorted(candidates):
            if (kind, ref) not in referenced:
                by_store.setdefault(kind, []).append(ref)
        for kind, refs in by_store.items():
            try:
                self.secrets(kind).delete(refs)
            except Exception:
                # The update is committed; a stale entry is garbage, not a failure.
                sys.stderr.write(f"metis-env: warning: could not delete {len(refs)} old key(s) from the {kind} store\n")

    def _clean_journal(self, new_data: dict) -> None:
        """Delete keys written by an update that crashed before its metadata was committed."""
        import contextlib

        journal = paths.journal_file(self.directory)
        text = read_private_text(journal)
        if text is None:
            return
        try:
            pending = json.loads(text)
            kind, refs = pending["store"], list(pending["refs"])
            stale = [(str(k), str(r)) for k, r in pending.get("stale", [])]
        except (ValueError, KeyError, TypeError):
            kind, refs, stale = None, [], []
        referenced = references(self._load_metadata())
        orphans: dict[str, list[str]] = {}
        for store_kind, ref in [(kind, ref) for ref in refs] + stale:
            if store_kind in ("keyring", "file") and (store_kind, ref) not in referenced:
                orphans.setdefault(store_kind, []).append(ref)
        for store_kind, names in orphans.items():
            with contextlib.suppress(Exception):
                self.secrets(store_kind).delete(names)
        with contextlib.suppress(OSError):
            os.unlink(journal)


def references(data: dict) -> set[tuple[str, str]]:
    """Every (store, entry name) a metadata file points at: the endpoints' keys and the gateway's tokens
    (and a service account's client secret)."""
    refs = {(r.get("store", "keyring"), r.get("secret")) for r in data.get("endpoints", {}).values()}
    gateway = data.get(GATEWAY)
    if isinstance(gateway, dict):
        refs.update((gateway.get("store", "keyring"), gateway[k]) for k in ("access", "refresh", "secret") if gateway.get(k))
    return refs


def _file_records(old: dict[str, StoredEndpoint]) -> dict[str, StoredEndpoint]:
    return {k: v for k, v in old.items() if v.source != GATEWAY}


def plan_changes(old: dict[str, StoredEndpoint], endpoints: list[Endpoint], kind: str, remove_others: bool) -> list[Change]:
    """Each endpoint's fate when ``endpoints`` replace (or are merged into) ``old``, in id order."""
    changes = [describe_change(old.get(e.id), e, kind) for e in endpoints]
    if remove_others:
        given = {e.id for e in endpoints}
        changes += [Change(i, "removed") for i in old if i not in given]
    return sorted(changes, key=lambda c: natural_key(c.id))


def describe_change(previous: StoredEndpoint | None, endpoint: Endpoint, kind: str) -> Change:
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


def open_store(settings: Settings) -> Store:
    return Store(settings)
