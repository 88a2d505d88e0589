"""The status cache: what the last ``metis-env status`` or ``check`` saw of each endpoint's models.

``status.json`` in the config dir (0600, written atomically): per endpoint, when it was looked at,
whether its cluster was under maintenance, and a word per model (live, starting, queued, offline,
unknown). ``export`` and ``run`` read it, with the standard library and no network, to warn on
stderr when the chosen model was not live at the last look; an entry older than ``MAX_AGE_SECONDS``
says nothing about now and is ignored, and so is a missing, damaged or unsafe file.

    record(config_dir, {"metis": entry("status", {"gpt-oss-120b": "live"}, maintenance=False)})
    warnings_for(config_dir, "metis", "gpt-oss-120b")   # -> () while it is live
"""

from __future__ import annotations

import json
import time

from . import paths
from .errors import MetisEnvError
from .files import atomic_write_text, read_private_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from typing import Any

VERSION = 1
MAX_AGE_SECONDS = 600.0
STATES = ("live", "starting", "queued", "offline", "unknown")


def entry(by: str, models: dict[str, str], maintenance: bool = False, message: str = "", now: float | None = None) -> dict:
    """One endpoint's record: ``by`` is the command that looked (``status`` or ``check``)."""
    return {
        "checked_at": round(time.time() if now is None else now, 3),
        "by": by,
        "maintenance": bool(maintenance),
        "message": message,
        "models": dict(models),
    }


def read(config_dir: str | os.PathLike) -> dict[str, Any]:
    """Endpoint id -> its record; {} when there is no usable cache (it is only ever a hint)."""
    try:
        text = read_private_text(paths.status_file(config_dir))
        data = json.loads(text) if text else None
    except (MetisEnvError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("endpoints"), dict):
        return {}
    return data["endpoints"]


def record(config_dir: str | os.PathLike, entries: dict[str, dict]) -> None:
    """Replace these endpoints' records and keep the others (dropping any too old to matter)."""
    now = time.time()
    kept = {
        k: v for k, v in read(config_dir).items()
        if isinstance(v, dict) and isinstance(v.get("checked_at"), (int, float)) and now - v["checked_at"] < MAX_AGE_SECONDS
    }
    kept.update(entries)
    text = json.dumps({"version": VERSION, "endpoints": kept}, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    atomic_write_text(paths.status_file(config_dir), text)


def recent(config_dir: str | os.PathLike, endpoint_id: str, now: float | None = None) -> dict | None:
    """``endpoint_id``'s record if it is recent enough to say something about now, else None."""
    seen = read(config_dir).get(endpoint_id)
    if not isinstance(seen, dict) or not isinstance(seen.get("checked_at"), (int, float)):
        return None
    age = (time.time() if now is None else now) - seen["checked_at"]
    return seen if 0 <= age < MAX_AGE_SECONDS else None


def model_words(seen: dict | None) -> dict[str, str]:
    """A record's model -> word, or {} (no record, or a cluster under maintenance)."""
    if not isinstance(seen, dict) or seen.get("maintenance") is True or not isinstance(seen.get("models"), dict):
        return {}
    return {k: v for k, v in seen["models"].items() if isinstance(k, str) and v in STATES}


def warnings_for(config_dir: str | os.PathLike, endpoint_id: str, model: str, now: float | None = None) -> tuple[str, ...]:
    """The warning export prints when ``model`` of ``endpoint_id`` was not live at the last look."""
    return warnings_from(recent(config_dir, endpoint_id, now), endpoint_id, model, now)


def warnings_from(seen: dict | None, endpoint_id: str, model: str, now: float | None = None) -> tuple[str, ...]:
    """``warnings_for`` of a record already read (``recent``'s)."""
    if seen is None:
        return ()
    age = (time.time() if now is None else now) - seen["checked_at"]
    by = "status" if seen.get("by") != "check" else "check"
    when = f"{age / 60:.0f} min ago" if age >= 90 else f"{age:.0f} s ago"
    if seen.get("maintenance") is True:
        return (
            f"endpoint {endpoint_id} was under maintenance at the last {by} ({when}); requests may fail "
            f"until it is back: metis-env status {endpoint_id}",
        )
    models = seen.get("models")
    state = models.get(model) if isinstance(models, dict) else None
    if state not in STATES or state in ("live", "unknown"):
        return ()
    return (
        f"model {model!r} of endpoint {endpoint_id} was {state} at the last {by} ({when}); requests may fail "
        f"until it is live: metis-env status {endpoint_id}",
    )
