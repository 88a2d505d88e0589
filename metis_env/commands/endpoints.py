"""``import``, ``list`` and the lines every command that changes the store prints (``describe_changes``),
as plain functions over the store and settings; no click.

Example::

    for line in describe_changes(import_files(store, ["metis_endpoint_1.txt"], None)): print(line)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from ..errors import EndpointFileError, MetisEnvError, NotFoundError, UsageError
from ..records import Change, natural_key
from ..credentials import pick_model
from ..settings import Settings
from ..store import Store
from ..text import format_age, warn

# endpoint.py (hashlib, ipaddress, urllib) is imported where a file is parsed or a key masked.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..endpoint import Endpoint


def read_endpoint_source(source: str, endpoint_id: str | None, stdin=None) -> Endpoint:
    """One FILE argument of import (``-`` is stdin) -> a parsed Endpoint; the file is never read past the limit."""
    from ..endpoint import MAX_FILE_BYTES, endpoint_name_id, parse_endpoint_file

    if source == "-":
        if not endpoint_id:
            raise UsageError("give the endpoint id for stdin: metis-env import --id 1 -")
        from ..prompt import read_pasted

        stream = stdin if stdin is not None else sys.stdin.buffer
        return parse_endpoint_file(read_pasted(stream, MAX_FILE_BYTES + 1), "<stdin>", endpoint_id)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise EndpointFileError(f"{source}: is a directory, not an endpoint file") from None
    except OSError as exc:
        raise EndpointFileError(f"{source}: cannot read it: {exc.strerror}") from None
    if not endpoint_id and endpoint_name_id(source) is None:
        # `import random.txt` silently became endpoint "random": a file not named like an endpoint
        # file must come with the id the user means.
        from shlex import quote

        raise EndpointFileError(
            f"{source}: cannot tell the endpoint id from this file name (metis_endpoint_N.txt becomes endpoint N); "
            f"pass it: metis-env import --id ID {quote(source)}"
        )
    return parse_endpoint_file(data, source, endpoint_id)


def import_files(store: Store, sources: Sequence[str], endpoint_id: str | None, stdin=None) -> list[Change]:
    """Parse every file first; then store them all in one all-or-nothing update."""
    if endpoint_id and len(sources) > 1:
        raise UsageError("--id names one endpoint; import one file at a time with it")
    if sources.count("-") > 1:
        raise UsageError("stdin ('-') can be given once")
    endpoints = [read_endpoint_source(s, endpoint_id, stdin) for s in sources]
    before = store.endpoints()
    changes = store.merge(endpoints, source="import")
    note = sync_removes_warning(before, [e.id for e in endpoints])
    if note:
        warn(note)
    return changes


def sync_removes_warning(before: Mapping[str, StoredEndpoint], ids: Sequence[str]) -> str | None:
    """sync makes the endpoint files' endpoints exactly the login node's: an imported id no sync brought
    is removed by the next one ("removed (gone upstream)"), so say so when it is imported."""
    if not any(stored.source.startswith("sync:") for stored in before.values()):
        return None  # no sync here: an import-only user is told nothing they will not meet
    by_hand = [i for i in ids if not (i in before and before[i].source.startswith("sync:"))]
    if not by_hand:
        return None
    names = ", ".join(by_hand)
    return (f"endpoint{'s' if len(by_hand) > 1 else ''} {names} did not come from a sync: the next metis-env sync "
            f"removes {'them' if len(by_hand) > 1 else 'it'} unless the login node has the file (import again after it)")


def describe_changes(changes: Sequence[Change], dry_run: bool = False) -> list[str]:
    def status(text: str) -> str:  # "key rotated" -> "key would be rotated", "new" -> "would be new"
        if not dry_run:
            return text
        what, _, how = text.rpartition(" ")
        return f"{what} would be {how}" if what else f"would be {text}"

    return [f"endpoint {c.id}: {status(c.status)}" + (f" ({c.detail})" if c.detail else "") for c in changes]


def list_rows(store: Store, settings: Settings) -> list[dict]:
    """What list shows, one dict per endpoint (the --json schema, version 1)."""
    from ..endpoint import mask_key

    rows = []
    for stored in store.endpoints().values():
        try:
            masked = mask_key(store.api_key(stored))
        except MetisEnvError as exc:  # a locked keyring must not hide the rest of the listing
            warn(f"cannot read the key of endpoint {stored.id}: {exc}")
            masked = None
        age = stored.age_days()
        rows.append(
            {
                "id": stored.id,
                "base_url": stored.base_url,
                "models": list(stored.models),
                "model": pick_model(stored, None, settings)[0],
                "default": stored.id == settings.default_endpoint,
                "file_name": stored.file_name,
                "source": stored.source,
                "synced_at": stored.synced_at,
                "age_days": None if age is None else round(age, 2),
                "stale": age is not None and age > settings.stale_after_days,
                "fingerprint": stored.fingerprint,
                "store": stored.store,
                "key": masked,
            }
        )
        for name in ("routes", "capabilities"):  # a gateway endpoint's, where discovery found them
            if name in stored.extra:
                rows[-1][name] = stored.extra[name]
    return rows


def list_json(rows: Sequence[dict]) -> str:
    """``list --json``: ``{"version": 1, "endpoints": rows}``."""
    import json

    return json.dumps({"version": 1, "endpoints": list(rows)}, indent=2, ensure_ascii=False)


def format_list(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    lines = []
    for row in sorted(rows, key=lambda r: natural_key(r["id"])):
        mark = "*" if row["default"] else " "
        stale = " (stale: run metis-env sync)" if row["stale"] else ""
        lines.append(f"{mark}{row['id']}  {row['base_url']}")
        lines.append(f"    models: {', '.join(row['models'])}")
        lines.append(
            f"    key: {row['key'] or '(unreadable)'}  {row['fingerprint']}  store: {row['store']}  "
            f"synced: {format_age(row['age_days'])}{stale}"
        )
    return "\n".join(lines) + "\n"
