"""``metis-env store move``: carry stored keys (and the gateway's tokens) from one secret store to the
other, e.g. from a laptop's OS keyring into the file store before working over ssh, where no keyring
answers.

One all-or-nothing update under the store's lock, through ``Store.rewrite``: the keys are read from
where they are, written into the other store under the same entry names, then endpoints.yaml is
replaced to point there; only after that are the old entries deleted. A crash leaves the old or the
new state, whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..credentials import GATEWAY, uses_login
from ..errors import NotFoundError, StoreError
from ..records import Change
from ..store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TOKEN_FIELDS = ("access", "refresh", "secret")  # the gateway section's entries (secret: a service account's)


def move_keys(store: Store, to: str, endpoint_ids: Sequence[str] = ()) -> list[Change]:
    """Move the keys of ``endpoint_ids`` (none given: every endpoint) into the ``to`` store ("file" or
    "keyring"). A gateway endpoint moves the login's tokens, and with them every gateway endpoint (they
    share one token). Returns one Change per endpoint: ``moved`` or ``unchanged`` (already there)."""
    with store.locked():
        stored = store.endpoints()
        for endpoint_id in endpoint_ids:
            if endpoint_id not in stored:
                raise NotFoundError(f"no endpoint {endpoint_id!r} is stored; metis-env list shows what is")
        chosen = set(endpoint_ids or stored)
        gateway = {i for i, s in stored.items() if uses_login(s)}
        if chosen & gateway:
            chosen |= gateway
        data = store.metadata()
        section = data.get(GATEWAY) if isinstance(data.get(GATEWAY), dict) else None
        move_tokens = bool(section) and section.get("store", "keyring") != to and (
            not endpoint_ids or bool(chosen & gateway))
        to_write: dict[str, str] = {}
        moving = sorted(i for i in chosen if stored[i].store != to and i not in gateway)
        for endpoint_id in moving:
            to_write[stored[endpoint_id].secret_ref] = store.api_key(stored[endpoint_id])
        if move_tokens:
            to_write.update(_read_tokens(store, section))
        target = store.secrets(to)
        if to_write:
            target.check_writable()
            backend = target.backend
            ids = set(moving) | (gateway if move_tokens else set())
            store.rewrite(to_write, lambda old: _pointed_at(old, ids, move_tokens, to, backend), to)
        moved = set(moving) | ((chosen & gateway) if move_tokens else set())
        return [Change(i, "moved" if i in moved else "unchanged") for i in stored if i in chosen]


def _read_tokens(store: Store, section: dict) -> dict[str, str]:
    kind = section.get("store", "keyring")
    tokens = {}
    for field in TOKEN_FIELDS:
        ref = section.get(field)
        if ref:
            value = store.secrets(kind).get(ref)
            if value is None:
                raise StoreError(f"the gateway's {field} token is missing from the {kind} store; run metis-env login --force")
            tokens[ref] = value
    return tokens


def _pointed_at(data: dict, ids: set, move_tokens: bool, to: str, backend: str) -> dict:
    """The metadata with the moved entries (``ids``: the gateway's too when its tokens move) pointing
    at the ``to`` store."""
    for endpoint_id, record in data.get("endpoints", {}).items():
        if endpoint_id in ids:
            record.update(store=to, backend=backend)
    if move_tokens:
        data[GATEWAY].update(store=to, backend=backend)
    return data


def describe_moves(changes: Sequence[Change], to: str) -> list[str]:
    where = "the OS keyring" if to == "keyring" else "the file store"
    return [f"endpoint {c.id}: {'moved to' if c.status == 'moved' else 'already in'} {where}" for c in changes]
