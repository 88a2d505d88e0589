"""The credential store: API keys in the OS keyring (or, chosen knowingly, a 0600 file; both in
``keystore.py``, the only module that imports keyring), everything else in ``endpoints.yaml``.

``store.py`` is the only writer of endpoints.yaml's records (one builder: ``records.build_record``). A
login (the gateway's) is a section of endpoints.yaml named after its source, holding where its tokens
are; the records of that source belong to the login: a sync replaces every other record and leaves
them alone, and the login's own methods here (``save_login``, ``save_login_records``,
``repoint_login_records``, ``forget_login``) replace, re-point and remove them. The store never asks
which source a record is: ``credentials.py`` is the one place that does.

An update is all-or-nothing and readers never see a mix of two syncs: every key is written under a
new entry name (``<endpoint>/<fingerprint>``) before the metadata file that points at it is replaced
in one ``os.replace``; entries nothing points at any more are deleted afterwards. A crash at any
moment leaves the old or the new metadata, each pointing only at keys that exist.
"""

from __future__ import annotations

import os
import time
from . import paths
from .errors import BusyError, MetisEnvError, NotFoundError, StoreError, StoreUnavailableError, UsageError
from .files import atomic_write_text, dump_json_yaml, ensure_private_dir, load_structured, loads_json, read_private_text, remove_stale_temp_files
from .keystore import SERVICE, FileSecrets, KeyringSecrets, checkpoint, read_secret_fast, unreadable_keyring_message  # noqa: F401  (SERVICE: re-exported)
from .records import Change, StoredEndpoint, build_record, natural_key, plan_changes, read_record, utc_now  # noqa: F401  (re-exported)
from .settings import Settings
from .text import warn

# typing costs ~3 ms of every shell start-up; the annotations are strings (PEP 563), so only
# type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

    from .endpoint import Endpoint  # and hashlib, ipaddress: the hot path never parses a file

METADATA_VERSION = 1
NOT_SECTIONS = ("version", "updated_at", "endpoints")
"""The top-level keys of endpoints.yaml that are not a login's section."""


# --- the store -------------------------------------------------------------------------------------


class Store:
    def __init__(self, settings: Settings, secrets: Any = None, *, tighten: bool = True):
        self.settings = settings
        self.tighten = tighten  # see files.check_private_dir: doctor reads without changing anything
        self.directory = settings.config_dir
        self.metadata_path = paths.metadata_file(self.directory)
        self._secrets: dict[str, Any] = {}
        if secrets is not None:
            self._secrets[secrets.kind] = secrets
        self._lock_depth = 0
        self._lock_handle: Any = None
        self._seen: tuple = (None, {}, {})  # (endpoints.yaml's identity, endpoints() of it, its data): see endpoints()

    def secrets(self, kind: str | None = None) -> Any:
        kind = kind or self.settings.store
        if kind not in self._secrets:
            self._secrets[kind] = FileSecrets(self.directory, tighten=self.tighten) if kind == "file" else KeyringSecrets()
        return self._secrets[kind]

    # reading ---------------------------------------------------------------------------------------

    def endpoints(self) -> dict[str, StoredEndpoint]:
        """Every stored endpoint, in natural order of id (2 before 10).

        Parsed again only when endpoints.yaml is another file than last time (it is only ever replaced
        whole, by os.replace: a new inode): export asks several times in one run, to be sure that the
        key it read belongs to the metadata it read."""
        identity = _identity(self.metadata_path)
        if identity is not None and identity == self._seen[0]:
            return dict(self._seen[1])
        data = self._load_metadata()
        result = {}
        for endpoint_id, record in data.get("endpoints", {}).items():
            try:
                result[endpoint_id] = read_record(endpoint_id, record)
            except (KeyError, TypeError):
                raise StoreError(
                    f"{self.metadata_path}: the entry for endpoint {endpoint_id!r} is damaged; run metis-env sync"
                ) from None
        result = dict(sorted(result.items(), key=lambda item: natural_key(item[0])))
        self._seen = (identity, result, data)
        return dict(result)

    def section(self, name: str) -> dict[str, Any] | None:
        """A copy of one section of endpoints.yaml other than the records (a login's, such as the
        gateway's), or None; read as ``endpoints()`` reads, once per version of the file."""
        if _identity(self.metadata_path) != self._seen[0] or self._seen[0] is None:
            self.endpoints()
            if self._seen[0] is None:  # no file, or one that changes while being read: no cache
                section = self._load_metadata().get(name)
                return dict(section) if isinstance(section, dict) else None
        section = self._seen[2].get(name)
        return dict(section) if isinstance(section, dict) else None

    def _load_metadata(self) -> dict[str, Any]:
        text = read_private_text(self.metadata_path, tighten=self.tighten)
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
            key = read_secret_fast(stored.backend, stored.secret_ref) if stored.store == "keyring" else None
            if key is None:
                key = self._read_secret(stored)
            if key is not None:
                return key
            current = self.endpoints().get(stored.id)
            if current is None or current == stored:
                break
            stored = current
            time.sleep(0.05)
        where = "the OS keyring" if stored.store == "keyring" else str(paths.keys_file(self.directory))
        raise StoreError(f"the key of endpoint {stored.id} is missing from {where}; run metis-env sync to fetch it again")

    def _read_secret(self, stored: StoredEndpoint) -> str | None:
        try:
            return self.secrets(stored.store).get(stored.secret_ref)
        except StoreUnavailableError as exc:
            reason = getattr(exc, "reason", None)
            if stored.store != "keyring" or reason is None:
                raise
            raise StoreUnavailableError(unreadable_keyring_message(f"the key of endpoint {stored.id}", reason)) from None

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
            atomic_write_text(journal, _journal_text(self.settings.store, [], stale))
            atomic_write_text(self.metadata_path, dump_json_yaml(data))
            checkpoint("forget-after-metadata")
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
            refuse_login_ids(data, ids, source)
            secrets = self.secrets()
            backend = secrets.backend
            now = utc_now()
            # sync replaces the endpoint files' records only: a login's are login's and logout's
            kept = data.get("endpoints", {})
            records = {k: v for k, v in kept.items() if _of_login(data, v) and k not in ids} if remove_others else dict(kept)
            to_write: dict[str, str] = {}
            for endpoint in endpoints:
                previous = old.get(endpoint.id)
                ref = f"{endpoint.id}/{endpoint.fingerprint}"
                same_place = previous is not None and previous.store == secrets.kind and previous.secret_ref == ref
                if not same_place or secrets.get(ref) is None:
                    to_write[ref] = endpoint.api_key
                records[endpoint.id] = build_record(
                    endpoint, source, now, endpoint.fingerprint, secrets.kind, ref,
                    previous.backend if same_place and previous.backend else backend,
                    previous.fingerprint if previous is not None else "",
                )
            new_data = {
                **data,  # other sections (the gateway's tokens) stay as they are
                "version": METADATA_VERSION,
                "updated_at": now,
                "endpoints": dict(sorted(records.items(), key=lambda item: natural_key(item[0]))),
            }
            self._commit(secrets, to_write, new_data, data)
            return plan_changes(self._not_of_login(data, old) if remove_others else old, endpoints, secrets.kind, remove_others)

    def preview_replace_all(self, endpoints: list[Endpoint]) -> list[Change]:
        """What ``replace_all(endpoints)`` would report, touching neither the keys nor the files."""
        data, old = self._load_metadata(), self.endpoints()
        refuse_login_ids(data, [e.id for e in endpoints], "sync")
        return plan_changes(self._not_of_login(data, old), endpoints, self.settings.store, remove_others=True)

    def endpoints_of(self, source: str) -> dict[str, StoredEndpoint]:
        """The stored endpoints whose records came from ``source``, in natural order of id."""
        return {k: v for k, v in self.endpoints().items() if v.source == source}

    def _not_of_login(self, data: dict, endpoints: dict[str, StoredEndpoint]) -> dict[str, StoredEndpoint]:
        records = data.get("endpoints", {})
        return {k: v for k, v in endpoints.items() if not _of_login(data, records.get(k, {}))}

    # a login's section and records ------------------------------------------------------------------

    def save_login(self, source: str, section: dict, to_write: dict[str, str], endpoints: Sequence[Any], kind: str,
                   collision: str) -> None:
        """Store a new login of ``source`` (``section``: where its tokens are and what is known of them;
        ``to_write``: the tokens) and its ``endpoints`` (``records.Listed``) as that source's records,
        replacing any previous login and every record of that source, in one update. An id an endpoint
        file's record holds keeps that record, with the warning ``collision.format(id)``."""

        def change(old: dict) -> dict:
            old[source] = section
            old["endpoints"] = _with_login_records(old.get("endpoints", {}), source, endpoints, section, collision)
            return old

        self.rewrite(to_write, change, kind)

    def save_login_records(self, source: str, endpoints: Sequence[Any], not_logged_in: MetisEnvError, collision: str) -> None:
        """Replace the records of ``source`` with ``endpoints``; the login stays (``not_logged_in`` is
        raised when there is none)."""

        def change(old: dict) -> dict:
            section = old.get(source)
            if not isinstance(section, dict) or not section.get("access"):
                raise not_logged_in
            old["endpoints"] = _with_login_records(old.get("endpoints", {}), source, endpoints, section, collision)
            return old

        self.rewrite({}, change)

    def repoint_login_records(self, source: str, section: dict, to_write: dict[str, str], kind: str,
                              drop: Sequence[str] = ()) -> dict:
        """After a refresh: ``section`` merged into the login's (less the keys ``drop``), and every record
        of ``source`` pointed at its new access token, in one update with the tokens ``to_write``; the
        login's section now."""

        def change(old: dict) -> dict:
            merged = {k: v for k, v in {**old.get(source, {}), **section}.items() if k not in drop}
            old[source] = merged
            for record in old.get("endpoints", {}).values():
                if record.get("source") == source:
                    record.update(secret=merged["access"], fingerprint=merged["fingerprint"], store=kind)
            return old

        return self.rewrite(to_write, change, kind).get(source, {})

    def update_section(self, source: str, values: dict) -> None:
        """``values`` merged into the login section of ``source``, if there is one (its records untouched)."""

        def change(old: dict) -> dict:
            if isinstance(old.get(source), dict):
                old[source] = {**old[source], **values}
            return old

        self.rewrite({}, change)

    def forget_login(self, source: str, kind: str | None) -> list[str]:
        """Remove the login of ``source`` and its records; the ids removed. Its tokens are deleted from
        the ``kind`` store after the metadata stops naming them."""
        removed: list[str] = []

        def change(old: dict) -> dict:
            old.pop(source, None)
            records = old.get("endpoints", {})
            removed.extend(k for k, v in records.items() if v.get("source") == source)
            old["endpoints"] = {k: v for k, v in records.items() if v.get("source") != source}
            return old

        self.rewrite({}, change, kind)
        return removed

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
        checkpoint("before-secrets")
        # The journal also names the keys this update makes stale, so that a crash between the
        # metadata and their deletion does not leave replaced keys in the store for good.
        stale = sorted(references(old_data) - references(new_data))
        try:
            if to_write or stale:
                atomic_write_text(journal, _journal_text(secrets.kind, sorted(to_write), stale))
            if to_write:
                secrets.set_many(to_write)  # rolls back its own partial writes
            checkpoint("before-metadata")
            try:
                atomic_write_text(self.metadata_path, dump_json_yaml(new_data))
            except BaseException:
                secrets.delete(list(to_write))
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(journal)
            raise
        checkpoint("after-metadata")
        self._delete_unreferenced(references(old_data), new_data)
        with contextlib.suppress(OSError):
            os.unlink(journal)
        checkpoint("after-cleanup")

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
                warn(f"could not delete {len(refs)} old key(s) from the {kind} store")

    def _clean_journal(self, new_data: dict) -> None:
        """Delete keys written by an update that crashed before its metadata was committed."""
        import contextlib

        journal = paths.journal_file(self.directory)
        text = read_private_text(journal)
        if text is None:
            return
        try:
            pending = loads_json(text)
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


def _identity(path: str) -> tuple | None:
    """Which file ``path`` is now (device, inode, size, modification and change time), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _journal_text(kind: str, refs: list[str], stale: list) -> str:
    """pending.json: the store the keys of an update in flight go to, their entry names, and the entries
    it makes stale (so that a crash leaves no orphan behind)."""
    import json  # writers only: readers (export) never load it

    return json.dumps({"store": kind, "refs": refs, "stale": stale}) + "\n"


def references(data: dict) -> set[tuple[str, str]]:
    """Every (store, entry name) a metadata file points at: the endpoints' keys, the logins' tokens
    (and a service account's client secret)."""
    refs = {(r.get("store", "keyring"), r.get("secret")) for r in data.get("endpoints", {}).values()}
    for name, section in data.items():
        if name not in NOT_SECTIONS and isinstance(section, dict):
            refs.update((section.get("store", "keyring"), section[k]) for k in ("access", "refresh", "secret") if section.get(k))
    return refs


def _with_login_records(records: dict, source: str, endpoints: Sequence[Any], section: dict, collision: str) -> dict:
    """``records`` with every record of ``source`` replaced by ``endpoints``, keyed to the login's access
    token; an id another source's record holds keeps that record (a warning says so)."""
    kept = {k: v for k, v in records.items() if v.get("source") != source}
    now = utc_now()
    for endpoint in endpoints:
        if endpoint.id in kept:
            warn(collision.format(endpoint.id))
            continue
        kept[endpoint.id] = build_record(
            endpoint, source, now, section["fingerprint"], section["store"], section["access"], section.get("backend", "")
        )
    return dict(sorted(kept.items(), key=lambda item: natural_key(item[0])))


def refuse_login_ids(data: dict, ids: Iterable[str], command: str) -> None:
    """sync and import change the endpoint files' endpoints only: an id a login's record holds (the
    gateway's) is login's and logout's, never silently replaced by a file."""
    records = data.get("endpoints", {})
    taken = [i for i in ids if i in records and _of_login(data, records[i])]
    if taken:
        how = "import it with --id ANOTHER_NAME" if command == "import" else "rename the endpoint file"
        raise UsageError(
            f"endpoint {taken[0]} is a gateway endpoint (from metis-env login); {how}, "
            f"or run metis-env logout first to remove the gateway's endpoints"
        )


def _of_login(data: dict, record: dict) -> bool:
    """Whether a record belongs to a login: endpoints.yaml has a section named after its source."""
    section = data.get(record.get("source"))
    return isinstance(section, dict) and section is not data.get("endpoints")


def open_store(settings: Settings) -> Store:
    return Store(settings)
