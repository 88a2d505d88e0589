"""The gateway's Globus tokens in metis-env's own store, and the hot path that hands them out.

The access and refresh tokens are secrets like the endpoint files' keys: in the OS keyring or the
explicit file store, each under a new entry name per token (``gateway/access/<fingerprint>``), so
that a refresh cut at any point leaves the old token where the metadata points. What is not secret
(expiry, login time, scope, identity, client id) is the ``gateway`` section of ``endpoints.yaml``:
freshness is decided from it with no keyring call. Gateway endpoints are ordinary records with
``source: gateway`` whose key is the access token.

Standard library only, and no network, while the token has more than ``token_refresh_margin`` left;
inside the margin ``fresh_key`` refreshes it through globus-sdk (``globus.py``) under the store's
lock, and concurrent exporters wait for that lock and re-read instead of refreshing again.

Example::

    selection, token = fresh_key(store, selection, settings)   # what actions.select_with_key calls
"""

from __future__ import annotations

import calendar
import os
import sys
import time
from collections import namedtuple

from ...errors import BusyError, LoginRequiredError, MetisEnvError
from ...store import GATEWAY, natural_key, utc_now

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ...settings import Settings
    from ...store import Store
    from .http import GatewayEndpoint

REFRESH_TIMEOUT = 10.0
"""Seconds one refresh at Globus may take (connect to last byte)."""
RETRY_AFTER = 60.0
"""Seconds after a failed refresh (the token still valid) before another exporter tries again."""
LOCK_WAIT = 4 * REFRESH_TIMEOUT
"""Seconds an exporter waits for another one's refresh (or a sync) to release the store's lock. The holder's
refresh is bounded by REFRESH_TIMEOUT; the rest is for its start-up (importing globus-sdk) on a CPU-starved
node, where fifty exports at once would otherwise give up on a refresh that is about to land."""
LOGIN_HINT = "run `metis-env login`"

_STATE_FIELDS = (
    "store backend access refresh fingerprint expires_at login_at scope identity client_id gateway_url secret lifetime"
)


class TokenState(namedtuple("TokenState", _STATE_FIELDS)):
    """The gateway section of endpoints.yaml: ``store`` ("keyring"|"file"), ``backend``, ``access`` and
    ``refresh`` (entry names, never tokens), ``fingerprint`` (of the access token), ``expires_at``
    (epoch seconds), ``login_at`` (epoch seconds), ``scope``, ``identity``, ``client_id``,
    ``gateway_url``, ``secret`` (a service account's client-secret entry name; "" for a user's login),
    ``lifetime`` (seconds the last grant gave the access token, from ``refreshed_at``; 0 when unknown)."""

    __slots__ = ()

    @property
    def service_account(self) -> bool:
        return bool(self.secret)

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def login_age_days(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.login_at) / 86400


def read_state(store: Store) -> TokenState | None:
    """The stored login, or None when there is none (never a keyring call)."""
    section = store.metadata().get(GATEWAY)
    if not isinstance(section, dict) or not section.get("access"):
        return None
    try:
        return TokenState(
            store=str(section.get("store", "keyring")),
            backend=str(section.get("backend", "")),
            access=str(section["access"]),
            refresh=str(section.get("refresh") or ""),
            fingerprint=str(section.get("fingerprint", "")),
            expires_at=float(section["expires_at"]),
            login_at=float(section.get("login_at", 0)),
            scope=str(section.get("scope", "")),
            identity=str(section.get("identity", "")),
            client_id=str(section.get("client_id", "")),
            gateway_url=str(section.get("gateway_url", "")),
            secret=str(section.get("secret") or ""),
            lifetime=_lifetime(section),
        )
    except (KeyError, TypeError, ValueError):
        from ...errors import StoreError

        raise StoreError(f"{store.metadata_path}: the gateway login is damaged; run `metis-env login --force`") from None


def _lifetime(section: dict) -> float:
    try:
        granted = calendar.timegm(time.strptime(str(section["refreshed_at"]), "%Y-%m-%dT%H:%M:%S+00:00"))
        return max(float(section["expires_at"]) - granted, 0.0)
    except (KeyError, TypeError, ValueError):
        return 0.0


def iso_utc(epoch: float) -> str:
    """``2026-12-04T01:07:29Z``: what METIS_ENV_TOKEN_EXPIRES holds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- the hot path ----------------------------------------------------------------------------------


def fresh_key(store: Store, selection: Any, settings: Settings) -> tuple[Any, str]:
    """The selection (with ``expires_at`` and any warnings) and an access token for a gateway endpoint.

    More than ``token_refresh_margin`` left: the cached token, no network. Inside the margin: one
    refresh (or another process's, waited for). Refresh failed but the token still valid: that token,
    with a warning. Expired, or the refresh refused: LoginRequiredError, one line.
    """
    state = read_state(store)
    if state is None:
        raise LoginRequiredError(f"not logged in to the ALCF gateway (endpoint {selection.endpoint.id}); {LOGIN_HINT}")
    warnings = list(selection.warnings)
    now = time.time()
    if state.login_age_days(now) > settings.reauth_after_days and not state.service_account:
        warnings.append(
            f"your Globus login is {state.login_age_days(now):.0f} days old; ALCF asks for a new one every 30 days: "
            "run `metis-env login --force` before the gateway refuses the token"
        )
    endpoint = selection.endpoint
    note = None
    if state.seconds_left(now) <= refresh_margin(settings, state) or endpoint.secret_ref != state.access:
        state, note = refresh_if_due(store, settings, state)
        if note:
            if state.seconds_left() <= 0:
                raise LoginRequiredError(f"the Globus access token expired and {note}; {LOGIN_HINT}")
            warnings.append(f"{note}; using the current token, valid for {_duration(state.seconds_left())} more")
        current = store.endpoints().get(endpoint.id)
        if current is None:
            raise LoginRequiredError(f"the gateway endpoint {endpoint.id} is gone (a logout?); {LOGIN_HINT}")
        endpoint = current
    min_ttl = getattr(settings, "min_ttl", None)
    if not note and min_ttl and state.seconds_left() < min_ttl:
        warnings.append(
            f"the Globus token lives {_duration(state.seconds_left())} after a refresh, less than the "
            f"{_duration(min_ttl)} --min-ttl (min_ttl) asks for: Globus decides its lifetime (48 h)"
        )
    key = store.api_key(endpoint)
    return selection._replace(endpoint=endpoint, expires_at=iso_utc(state.expires_at), warnings=tuple(warnings)), key


def refresh_margin(settings: Settings, state: TokenState | None = None) -> float:
    """Refresh when less than this is left: ``token_refresh_margin``, or more with ``min_ttl``
    (``--min-ttl``, as aws-vault's AWS_MIN_TTL: a job that needs 40 h starts with at least 40 h).

    ``min_ttl`` counts for at most the life the last grant gave minus a minute: asking for more than
    Globus gives would otherwise send every export to Globus for a token no longer than the one held."""
    min_ttl = getattr(settings, "min_ttl", None) or 0.0
    if state is not None and state.lifetime > 0:
        min_ttl = min(min_ttl, state.lifetime - 60.0)
    return max(settings.token_refresh_margin, min_ttl)


def refresh_if_due(store: Store, settings: Settings, state: TokenState) -> tuple[TokenState, str | None]:
    """Refresh under the store's lock unless another process just did; (state now, None) or (the old
    state, why it could not be refreshed). Raises LoginRequiredError when Globus refuses the refresh."""
    give_up = time.monotonic() + LOCK_WAIT
    while True:
        try:
            with store.locked():
                current = read_state(store)
                if current is None:
                    raise LoginRequiredError(f"the gateway login was removed meanwhile; {LOGIN_HINT}")
                if current.expires_at > state.expires_at or current.seconds_left() > refresh_margin(settings, current):
                    return current, None  # another exporter refreshed while we waited
                return _refresh_locked(store, settings, current)
        except BusyError:
            if time.monotonic() > give_up:
                return state, "the Globus token could not be refreshed (another metis-env held the store's lock)"
            time.sleep(0.02 + (os.getpid() % 7) / 100)


def _refresh_locked(store: Store, settings: Settings, state: TokenState) -> tuple[TokenState, str | None]:
    failed = _recent_failure(store) if state.seconds_left() > 0 else None
    if failed:  # another exporter just spent REFRESH_TIMEOUT on it: do not make this shell wait too
        return state, failed
    if state.service_account:  # no refresh token: a service account mints a new token instead
        grant = store.secrets(state.store).get(state.secret)
    else:
        grant = store.secrets(state.store).get(state.refresh) if state.refresh else None
    if grant is None:
        if state.service_account:
            return state, "the service account's client secret is missing from the store"
        return state, "the Globus refresh token is missing from the store" if state.refresh else "the Globus login has no refresh token"
    from . import globus  # the only importer of globus_sdk: paid for about once in 47 h

    client_id = state.client_id or settings.globus_client_id

    def grant_now() -> dict:
        if state.service_account:
            return globus.client_credentials(client_id, grant, REFRESH_TIMEOUT)
        return globus.refresh(settings, client_id, grant, REFRESH_TIMEOUT)

    try:
        data = grant_now()  # bounded as a whole by REFRESH_TIMEOUT (globus._bounded)
    except LoginRequiredError as exc:
        if state.seconds_left() <= 0:
            raise
        # Refused (invalid_grant) while the access token still works: the gateway accepts it for its
        # remaining life, so a user in the middle of work keeps it, and is told to log in.
        note = f"{str(exc).split('; run ')[0]}; run `metis-env login` before it expires"
        _remember_failure(store, note)
        return state, note
    except MetisEnvError as exc:
        note = f"the Globus token could not be refreshed ({exc})"
        _remember_failure(store, note)
        return state, note
    try:
        return save_refresh(store, state, data), None
    except MetisEnvError as exc:  # the old token is still stored, and still valid at Globus
        return state, f"the refreshed Globus token could not be stored ({exc})"


def _recent_failure(store: Store) -> str | None:
    section = store.metadata().get(GATEWAY)
    if not isinstance(section, dict):
        return None
    when, note = section.get("refresh_failed_at"), section.get("refresh_failure")
    if not isinstance(when, (int, float)) or not isinstance(note, str) or not 0 <= time.time() - when < RETRY_AFTER:
        return None
    return f"{note} {time.time() - when:.0f} s ago; the next try is after {RETRY_AFTER:g} s"


def _remember_failure(store: Store, note: str) -> None:
    def change(old: dict) -> dict:
        if isinstance(old.get(GATEWAY), dict):
            old[GATEWAY] = {**old[GATEWAY], "refresh_failed_at": int(time.time()), "refresh_failure": note}
        return old

    try:
        store.rewrite({}, change)
    except MetisEnvError:
        pass  # only a courtesy to the next exporter


# --- writers ---------------------------------------------------------------------------------------


def token_fingerprint(token: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def secret_ref(secret: str) -> str:
    """The store entry a service account's client secret is kept under (a new one per secret)."""
    return f"gateway/secret/{token_fingerprint(secret)}"


def save_login(store: Store, settings: Settings, data: dict, identity: str, endpoints: list[GatewayEndpoint],
               service_account: tuple[str, str] | None = None) -> TokenState:
    """Store a new login (``data``: globus-sdk's token data for the inference resource server:
    ``access_token``, ``refresh_token``, ``expires_at_seconds``, ``scope``) and the gateway endpoints,
    replacing any previous login and every gateway record, in one update. ``service_account``:
    (client id, client secret), the secret kept in the store like a key."""
    secrets = store.secrets()
    to_write, section = _section(data, secrets.kind, secrets.backend, None)
    section.update(
        login_at=int(time.time()), identity=identity, client_id=settings.globus_client_id, gateway_url=settings.gateway_url
    )
    if service_account is not None:
        client_id, secret = service_account
        section.update(client_id=client_id, secret=secret_ref(secret))
        to_write[section["secret"]] = secret

    def change(old: dict) -> dict:
        old[GATEWAY] = section
        old["endpoints"] = _with_gateway_records(old.get("endpoints", {}), endpoints, section)
        return old

    store.rewrite(to_write, change, secrets.kind)
    return read_state(store)  # type: ignore[return-value]


def save_refresh(store: Store, state: TokenState, data: dict) -> TokenState:
    """Store a refreshed access token (and a rotated refresh token) where the login's tokens are."""
    secrets = store.secrets(state.store)
    to_write, section = _section(data, state.store, state.backend or secrets.backend, state)

    def change(old: dict) -> dict:
        merged = {**old.get(GATEWAY, {}), **section}
        merged.pop("refresh_failed_at", None)
        merged.pop("refresh_failure", None)
        old[GATEWAY] = merged
        for record in old.get("endpoints", {}).values():
            if record.get("source") == GATEWAY:
                record.update(secret=merged["access"], fingerprint=merged["fingerprint"], store=state.store)
        return old

    store.rewrite(to_write, change, state.store)
    return read_state(store)  # type: ignore[return-value]


def save_endpoints(store: Store, endpoints: list[GatewayEndpoint]) -> list[Any]:
    """Replace the gateway records with ``endpoints`` (``sync --gateway``); the login stays."""
    from ...store import Change

    before = {k: v for k, v in store.endpoints().items() if v.source == GATEWAY}

    def change(old: dict) -> dict:
        section = old.get(GATEWAY)
        if not isinstance(section, dict) or not section.get("access"):
            raise LoginRequiredError(f"not logged in to the ALCF gateway; {LOGIN_HINT}")
        old["endpoints"] = _with_gateway_records(old.get("endpoints", {}), endpoints, section)
        return old

    store.rewrite({}, change)
    changes = []
    for endpoint in endpoints:
        previous = before.get(endpoint.id)
        if previous is None:
            status, detail = "new", ""
        elif previous.models != endpoint.models:
            added = [f"+{m}" for m in endpoint.models if m not in previous.models]
            status, detail = "models changed", ", ".join(added + [f"-{m}" for m in previous.models if m not in endpoint.models])
        else:
            changed = previous.base_url != endpoint.base_url or previous.extra != gateway_extra(endpoint)
            status, detail = ("updated" if changed else "unchanged"), ""
        changes.append(Change(endpoint.id, status, detail))
    given = {e.id for e in endpoints}
    changes += [Change(i, "removed") for i in before if i not in given]
    return sorted(changes, key=lambda c: natural_key(c.id))


def forget_login(store: Store) -> tuple[list[str], dict[str, str]]:
    """Remove the login and every gateway record; (the ids removed, the tokens as they were, for
    revocation, and a service account's client ``secret``). The tokens and the secret are deleted
    from the store after the metadata stops naming them."""
    state = read_state(store)
    tokens: dict[str, str] = {}
    if state is not None:
        for name, ref in (("access", state.access), ("refresh", state.refresh), ("secret", state.secret)):
            try:
                value = store.secrets(state.store).get(ref) if ref else None
            except MetisEnvError:
                value = None
            if value:
                tokens[name] = value
    removed: list[str] = []

    def change(old: dict) -> dict:
        old.pop(GATEWAY, None)
        records = old.get("endpoints", {})
        removed.extend(k for k, v in records.items() if v.get("source") == GATEWAY)
        old["endpoints"] = {k: v for k, v in records.items() if v.get("source") != GATEWAY}
        return old

    store.rewrite({}, change, state.store if state else None)
    return removed, tokens


def _section(data: dict, kind: str, backend: str, previous: TokenState | None) -> tuple[dict[str, str], dict]:
    access = data.get("access_token")
    expires_at = data.get("expires_at_seconds")
    if not isinstance(access, str) or not access or not isinstance(expires_at, (int, float)):
        from ...errors import GatewayError

        raise GatewayError("Globus answered without an access token and its expiry; try again")
    fingerprint = token_fingerprint(access)
    section: dict[str, Any] = {
        "store": kind,
        "backend": backend,
        "access": f"gateway/access/{fingerprint}",
        "fingerprint": fingerprint,
        "expires_at": int(expires_at),
        "expires": iso_utc(expires_at),
        "refreshed_at": utc_now(),
    }
    if data.get("scope"):
        section["scope"] = str(data["scope"])
    to_write = {section["access"]: access}
    refresh = data.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        section["refresh"] = f"gateway/refresh/{token_fingerprint(refresh)}"
        if previous is None or section["refresh"] != previous.refresh:
            to_write[section["refresh"]] = refresh
    elif previous is not None:
        section["refresh"] = previous.refresh
    return to_write, section


def _with_gateway_records(records: dict, endpoints: list[GatewayEndpoint], section: dict) -> dict:
    """``records`` with every gateway record replaced by ``endpoints``; an id an endpoint file holds
    keeps the file's record (a warning says so)."""
    kept = {k: v for k, v in records.items() if v.get("source") != GATEWAY}
    now = utc_now()
    for endpoint in endpoints:
        if endpoint.id in kept:
            sys.stderr.write(
                f"metis-env: warning: gateway cluster {endpoint.id} not stored: an endpoint file already uses that id\n"
            )
            continue
        kept[endpoint.id] = {
            "base_url": endpoint.base_url,
            "models": list(endpoint.models),
            "file_name": "",
            "source": GATEWAY,
            "synced_at": now,
            "fingerprint": section["fingerprint"],
            "store": section["store"],
            "secret": section["access"],
            "backend": section.get("backend", ""),
            "extra": gateway_extra(endpoint),
            "previous_fingerprint": "",
        }
    return dict(sorted(kept.items(), key=lambda item: natural_key(item[0])))


def gateway_extra(endpoint: GatewayEndpoint) -> dict[str, Any]:
    """A gateway record's ``extra``: ``framework``; ``routes`` (the paths list-endpoints says its
    framework serves) and ``capabilities`` (model -> ``{cluster}/models``' details), each only where
    the gateway gave them. Readers must do without either (older stores, older gateways)."""
    extra: dict[str, Any] = {"framework": endpoint.framework}
    routes = getattr(endpoint, "routes", ())
    if routes:
        extra["routes"] = list(routes)
    capabilities = getattr(endpoint, "capabilities", None)
    if capabilities is not None:
        extra["capabilities"] = {name: dict(caps) for name, caps in capabilities.items()}
    return extra


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    return f"{max(seconds, 0) / 60:.0f} min"
