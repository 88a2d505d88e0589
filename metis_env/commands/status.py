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

from .. import credentials, status_cache
from ..records import natural_key
from ..text import shown, warn
from ..check import MAINTENANCE, NOT_LIVE, OK, CheckResult, check_endpoint, raise_for_result
from ..errors import MetisEnvError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..records import StoredEndpoint
    from ..settings import Settings
    from ..store import Store

VERSION = 1


class CheckTarget(namedtuple("CheckTarget", "endpoint base_url key models probe", defaults=(None,))):
    """One endpoint ``check`` looks at: its id, base URL and current key, the models it lists, and the
    probe to ask it with (check_endpoint's signature; None: check_endpoint itself)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"CheckTarget(endpoint={self.endpoint!r}, base_url={self.base_url!r})"  # never the key


def check_one(store: Store, settings: Settings, spec: str | None, timeout: float, by: str = "check") -> CheckResult:
    """``check``'s work for one endpoint (ENDPOINT as export takes it), by its source, remembered in
    the status cache. For a gateway endpoint the model export would pick must be live."""
    selection, key = credentials.select_with_key(store, spec, None, settings)  # key and URL of one sync
    stored = selection.endpoint
    if credentials.uses_login(stored):
        from ..sources.gateway.check import check_gateway

        result = check_gateway(stored, key, timeout, wanted=selection.model if by == "check" else None)
    else:
        result = check_endpoint(stored.base_url, key, stored.models, timeout, endpoint=stored.id)
    remember(settings, [result], by)
    return result


def check_targets(store: Store, settings: Settings, specs: Sequence[str | None]) -> list[CheckTarget]:
    """``check``'s targets for ``check_report.check_all``: the key and URL of one sync (a current token
    for the gateway), a gateway endpoint with its own probe."""
    targets = []
    for spec in specs:
        selection, key = credentials.select_with_key(store, spec, None, settings)
        stored = selection.endpoint
        probe = _gateway_probe(stored, selection.model) if credentials.uses_login(stored) else _file_probe(selection.model)
        targets.append(CheckTarget(stored.id, stored.base_url, key, stored.models, probe))
    return targets


def _file_probe(wanted: str) -> Callable[..., CheckResult]:
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


def _gateway_probe(stored: StoredEndpoint, wanted: str) -> Callable[..., CheckResult]:
    from ..sources.gateway.check import check_gateway

    def probe(base_url, key, models, timeout, endpoint=None) -> CheckResult:
        return check_gateway(stored, key, timeout, wanted=wanted)

    return probe


def remember(settings: Settings, results: Sequence[CheckResult], by: str) -> None:
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
            warn(f"could not write the status cache: {exc}")


class StatusReport(namedtuple("StatusReport", "results errors")):
    """``results``: one CheckResult per endpoint, in id order; ``errors``: endpoint id -> the
    MetisEnvError that kept it from being looked at (no key, no login), its result then says ``error``."""

    __slots__ = ()


def run_status(store: Store, settings: Settings, spec: str | None, timeout: float) -> StatusReport:
    """Look at one endpoint (``spec``) or every stored one, and remember what was seen."""
    if spec is None:
        endpoints = list(store.endpoints().values())
        if not endpoints:
            credentials.choose_endpoint({}, None, settings)  # raises the usual "run metis-env sync" line
    else:
        endpoints = [credentials.choose_endpoint(store.endpoints(), spec, settings)[0]]
    results, errors = [], {}
    for stored in sorted(endpoints, key=lambda e: natural_key(e.id)):
        try:
            results.append(check_one(store, settings, stored.id, timeout, by="status"))
        except MetisEnvError as exc:  # no key or token for this one: say so, go on with the others
            errors[stored.id] = exc
            unknown = {name: "unknown" for name in stored.models}
            results.append(CheckResult(stored.id, stored.base_url, "error", str(exc), model_status=unknown))
    return StatusReport(results, errors)


def status(settings: Settings, spec: str | None, as_json: bool, timeout: float) -> None:
    """``metis-env status``: the table (or the JSON) on stdout, then the first failure's error."""
    import sys

    from ..store import open_store

    report = run_status(open_store(settings), settings, spec, timeout)
    sys.stdout.write(to_json(report.results) + "\n" if as_json else format_table(report.results))
    raise_for_report(report)


def raise_for_report(report: StatusReport) -> None:
    """After printing: warn about every failed endpoint but the first, and raise the first's error."""
    failed = [r for r in report.results if not r.ok]
    for extra in failed[1:]:
        warn(f"status of endpoint {extra.endpoint}: {extra.message}")
    if failed:
        if failed[0].endpoint in report.errors:
            raise report.errors[failed[0].endpoint]
        raise_for_result(failed[0], "status")


def to_json(results: Sequence[CheckResult]) -> str:
    """``{"version": 1, "checked_at", "endpoints": [{"endpoint", "source", "status", "maintenance",
    "models": {name: live|starting|queued|offline|unknown}, "message"[, "capabilities"]}]}``;
    ``capabilities`` (model -> what the gateway said of it) only where the gateway said it."""
    rows = []
    for r in results:
        row = {
            "endpoint": r.endpoint,
            "base_url": r.base_url,
            "status": r.status,
            "maintenance": r.status == MAINTENANCE,
            "models": dict(r.model_status),
            "message": r.message,
        }
        if r.capabilities:
            row["capabilities"] = {name: dict(caps) for name, caps in r.capabilities.items()}
        rows.append(row)
    checked_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return json.dumps({"version": VERSION, "checked_at": checked_at, "endpoints": rows}, indent=2, ensure_ascii=False)


CAPABILITY_COLUMNS = ("CONTEXT", "TOOLS", "REASONING", "TPM (USER/MODEL)")


def format_table(results: Sequence[CheckResult]) -> str:
    """One line per model: ENDPOINT, MODEL, STATUS (``offline (maintenance)`` during maintenance);
    when the gateway told any model's capabilities, also CONTEXT (tokens), TOOLS and REASONING
    (yes/no) and the tokens-per-minute limits, ``-`` where it did not say."""
    with_capabilities = any(r.capabilities for r in results)
    rows = [("ENDPOINT", "MODEL", "STATUS") + (CAPABILITY_COLUMNS if with_capabilities else ())]
    for r in results:
        for name, state in r.model_status.items():
            word = f"{state} (maintenance)" if r.status == MAINTENANCE else state if r.status in (OK, NOT_LIVE) else f"unknown ({r.status})"
            row = (shown(r.endpoint), shown(name), word)  # names from a gateway's jobs: one inert cell each
            if with_capabilities:
                row += _capability_cells(r.capabilities.get(name) or {})
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) + "\n" for row in rows)


def _capability_cells(caps: dict) -> tuple[str, ...]:
    def yes_no(value: object) -> str:
        return {True: "yes", False: "no"}.get(value, "-") if isinstance(value, bool) else "-"

    def count(value: object) -> str:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"

    window = count(caps.get("context_window_tokens"))
    user, model = count(caps.get("rate_limit_token_per_minute_per_user")), count(caps.get("rate_limit_token_per_minute"))
    return window, yes_no(caps.get("tool_calling")), yes_no(caps.get("reasoning")), "-" if user == model == "-" else f"{user}/{model}"
