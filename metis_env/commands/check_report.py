"""``metis-env check`` over several endpoints: each checked by check.check_endpoint (the per-endpoint
function, unchanged), all at once so that ``--timeout`` bounds the whole command, and the one error
the command ends with.

    results = check_all([("1", url, key, models), ("2", url2, key2, models2)], timeout=10)
    raise_for_results(results, at_terminal=sys.stdout.isatty())
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

from ..check import ERRORS, CheckResult, check_endpoint
from ..errors import CheckFailedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..settings import Settings


def check_all(targets: Sequence[tuple], timeout: float) -> list[CheckResult]:
    """status.CheckTargets (or plain (id, base_url, key, models[, probe]) tuples) -> their results, in the same
    order; checked in parallel, each bounded by ``timeout`` (check_endpoint never outlives it)."""
    results: list[CheckResult | None] = [None] * len(targets)

    def run(i: int, endpoint_id: str, base_url: str, key: str, models: Sequence[str],
            probe: Callable[..., CheckResult] | None = None) -> None:
        results[i] = (probe or check_endpoint)(base_url, key, models, timeout, endpoint=endpoint_id)

    if len(targets) == 1:
        run(0, *targets[0])
    else:
        workers = [threading.Thread(target=run, args=(i, *t), daemon=True) for i, t in enumerate(targets)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return [r for r in results if r is not None]


def raise_for_results(results: Sequence[CheckResult], at_terminal: bool) -> None:
    """The error of the first failed check (its exit code), or nothing when all are ok.

    The results are on stdout already: at a terminal the error line only points at them, so that one
    failure is not printed twice; off a terminal (a script reading stderr) it carries the reason."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    first = failed[0]
    error = ERRORS.get(first.status, CheckFailedError)
    others = f" (and {len(failed) - 1} more: {', '.join(r.endpoint for r in failed[1:])})" if len(failed) > 1 else ""
    if at_terminal:
        raise error(f"check of endpoint {first.endpoint} failed ({first.status}){others}; see above")
    raise error(f"check of endpoint {first.endpoint}: {first.message}{others}")


def run_check(settings: Settings, endpoint: str | None, as_json: bool, timeout: float) -> None:
    """``metis-env check``: one endpoint, or every stored one; each result on stdout (a line of JSON with
    ``as_json``), remembered in the status cache; then the first failure's error."""
    from ..store import open_store
    from .status import check_targets, remember

    store = open_store(settings)
    specs = [endpoint] if endpoint is not None else list(store.endpoints()) or [None]
    results = check_all(check_targets(store, settings, specs), timeout)
    remember(settings, results, "check")
    for result in results:
        sys.stdout.write((result.to_json() if as_json else result.summary()) + "\n")
    raise_for_results(results, at_terminal=not as_json and sys.stdout.isatty())
