"""``metis-env status [ENDPOINT] [--json]``: which models are live, starting, queued or offline.

A gateway endpoint is asked ``{cluster}/jobs`` (``sources/gateway/check.py``); an endpoint file's
endpoint is checked as ``check`` does (``GET /models``, else a 1-token chat), which can tell served
(live) from not served (offline), and nothing about queues. Without ENDPOINT, every stored endpoint.
What was seen goes to the status cache (``status_cache``), from which ``export`` and ``run`` warn.

    metis-env status metis
    metis-env status --json | jq -r '.endpoints[].models | to_entries[] | select(.value == "live") | .key'
"""

from __future__ import annotations

import json
import time
from collections import namedtuple
from collections.abc import Sequence

from . import actions, status_cache
from .check import MAINTENANCE, NOT_LIVE, OK, CheckResult, check_endpoint, raise_for_result
from .errors import MetisEnvError, StoreError

VERSION = 1
GATEWAY = "gateway"


def check_one(store, settings, spec: str | None, timeout: float, by: str = "check") -> CheckResult:
    """``check``'s work for one endpoint (ENDPOINT as export takes it), by its source, remembered in
    the status cache. For a gateway endpoint the model export would pick must be live."""
    selection, key = actions.select_with_key(store, spec, None, settings)  # key and URL of one sync
    stored = selection.endpoint
    if stored.source == GATEWAY:
        from .sources.gateway.check import check_gateway

        result = check_gateway(stored, key, timeout, wanted=selection.model if by == "check" else None)
    else:
        result = check_endpoint(stored.base_url, key, stored.models, timeout, endpoint=stored.id)
    remember(settings, [result], by)
    return result


def check_targets(store, settings, specs: Sequence[str | None]) -> list[tuple]:
    """``check``'s targets for ``check_report.check_all``: (id, base_url, key, models[, probe]), the key
    and URL of one sync (a current token for the gateway), a gateway endpoint with its own probe."""
    targets = []
    for spec in specs:
        selection, key = actions.select_with_key(store, spec, None, settings)
        stored = selection.endpoint
        target = (stored.id, stored.base_url, key, stored.models)
        if stored.source == GATEWAY:
            target += (_gateway_probe(stored, selection.model),)
        else:
            target += (_file_probe(selection.model),)
        targets.append(target)
    return targets


def _file_probe(wanted: str):
    """check_endpoint, and the model export would pick must be among the served: a key that works for a
    model export does not hand out is no working setup (gateway endpoints exit 21 there too)."""

    def probe(base_url, key, models, timeout, endpoint=None) -> CheckResult:
        import dataclasses

        result = check_endpoint(base_url, key, models, timeout, endpoint=endpoint)
        if not result.ok or result.models.get(wanted) is not False:
            return result
        return dataclasses.replace(result, status=NOT_LIVE, message=(
            f"{result.message}; {wanted}, the model export picks, is not served: pick a served one "
            f"(export --model NAME, or metis-env config set default_model NAME)"))

    return probe


def _gateway_probe(stored, wanted: str):
    from .sources.gateway.check import check_gateway

    def probe(base_url, key, models, timeout, endpoint=None) -> CheckResult:
        return check_gateway(stored, key, timeout, wanted=wanted)

    return probe


def remember(settings, results: Sequence[CheckResult], by: str) -> None:
    """Put what was seen in the status cache; a failed look says nothing about the models."""
    entries = {
        r.endpoint: status_cache.entry(by, r.model_status, maintenance=r.status == MAINTENANCE, message=r.message)
        for r in results
        if r.status in (OK, NOT_LIVE, MAINTENANCE)
    }
    if entries:
        try:
            status_cache.record(settings.config_dir, entries)
        except StoreError as exc:  # the answer is still worth printing; the cache is only a hint
            actions.warn(f"could not write the status cache: {exc}")


class StatusReport(namedtuple("StatusReport", "results errors")):
    """``results``: one CheckResult per endpoint, in id order; ``errors``: endpoint id -> the
    MetisEnvError that kept it from being looked at (no key, no login), its result then says ``error``."""

    __slots__ = ()


def run_status(store, settings, spec: str | None, timeout: float) -> StatusReport:
    """Look at one endpoint (``spec``) or every stored one, and remember what was seen."""
    if spec is None:
        endpoints = list(store.endpoints().values())
        if not endpoints:
            actions.choose_endpoint({}, None, settings)  # raises the usual "run metis-env sync" line
    else:
        endpoints = [actions.choose_endpoint(store.endpoints(), spec, settings)[0]]
    results, errors = [], {}
    for stored in sorted(endpoints, key=lambda e: actions.natural_key(e.id)):
        try:
            results.append(check_one(store, settings, stored.id, timeout, by="status"))
        except MetisEnvError as exc:  # no key or token for this one: say so, go on with the others
            errors[stored.id] = exc
            unknown = {name: "unknown" for name in stored.models}
            results.append(CheckResult(stored.id, stored.base_url, "error", str(exc), model_status=unknown))
    return StatusReport(results, errors)


def raise_for_report(report: StatusReport) -> None:
    """After printing: warn about every failed endpoint but the first, and raise the first's error."""
    failed = [r for r in report.results if not r.ok]
    for extra in failed[1:]:
        actions.warn(f"status of endpoint {extra.endpoint}: {extra.message}")
    if failed:
        if failed[0].endpoint in report.errors:
            raise report.errors[failed[0].endpoint]
        raise_for_result(failed[0], "status")


def to_json(results: Sequence[CheckResult]) -> str:
    """``{"version": 1, "checked_at", "endpoints": [{"endpoint", "source", "status", "maintenance",
    "models": {name: live|starting|queued|offline|unknown}, "message"}]}``."""
    rows = [
        {
            "endpoint": r.endpoint,
            "base_url": r.base_url,
            "status": r.status,
            "maintenance": r.status == MAINTENANCE,
            "models": dict(r.model_status),
            "message": r.message,
        }
        for r in results
    ]
    checked_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return json.dumps({"version": VERSION, "checked_at": checked_at, "endpoints": rows}, indent=2, ensure_ascii=False)


def format_table(results: Sequence[CheckResult]) -> str:
    """One line per model: ENDPOINT, MODEL, STATUS (``offline (maintenance)`` during maintenance)."""
    rows = [("ENDPOINT", "MODEL", "STATUS")]
    for r in results:
        for name, state in r.model_status.items():
            word = f"{state} (maintenance)" if r.status == MAINTENANCE else state if r.status in (OK, NOT_LIVE) else f"unknown ({r.status})"
            rows.append((r.endpoint, name, word))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "".join(f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}\n" for a, b, c in rows)
