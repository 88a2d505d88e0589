"""A stored endpoint -> its current key: an endpoint file's key as stored, or the gateway's Globus access
token, kept fresh. The ONE place that branches on where a key comes from (a record's ``source``).

The access and refresh tokens are secrets like the endpoint files' keys: in the OS keyring or the
explicit file store, each under a new entry name per token (``gateway/access/<fingerprint>``), so
that a refresh cut at any point leaves the old token where the metadata points. What is not secret
(expiry, login time, scope, identity, client id) is the ``gateway`` section of ``endpoints.yaml``
(``TokenState``): freshness is decided from it with no keyring call. Gateway endpoints are ordinary
records with ``source: gateway`` whose key is the access token.

Standard library only, and no network, while the token has more than ``token_refresh_margin`` left;
inside the margin ``fresh_key`` refreshes it through globus-sdk (``sources/gateway/globus.py``, the
only module that imports it) under the store's lock, and concurrent exporters wait for that lock and
re-read instead of refreshing again.

Example::

    selection, key = select_with_key(store, "1", None, settings)   # what export, get, run and the API use
"""

from __future__ import annotations

import os
import time
from .structs import record_type

from . import selection as selecting
from .errors import BusyError, LoginRequiredError, MetisEnvError
from .records import utc_now
from .selection import Selection
from .variables import environment, parse_aliases

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .records import StoredEndpoint
    from .settings import Settings
    from .store import Store

GATEWAY = "gateway"
"""The gateway's records (their ``source``) and its login's section of endpoints.yaml."""
REFRESH_TIMEOUT = 10.0
"""Seconds one refresh at Globus may take (connect to last byte)."""
RETRY_AFTER = 60.0
"""Seconds after a failed refresh (the token still valid) before another exporter tries again."""
LOCK_WAIT = 4 * REFRESH_TIMEOUT
"""Seconds an exporter waits for another one's refresh (or a sync) to release the store's lock. The holder's
refresh is bounded by REFRESH_TIMEOUT; the rest is for its start-up (importing globus-sdk) on a CPU-starved
node, where fifty exports at once would otherwise give up on a refresh that is about to land."""
LOGIN_HINT = "run `metis-env login`"


# --- where a key comes from ------------------------------------------------------------------------


def uses_login(endpoint: StoredEndpoint) -> bool:
    """Whether the endpoint's key is a login's token (the gateway's), rather than an endpoint file's key:
    refreshed here, checked with the gateway's own probe, never exported under SambaNova's names."""
    return endpoint.source == GATEWAY


def sync_command(endpoint: StoredEndpoint) -> str:
    """The command that fetches this endpoint's data again."""
    return "metis-env sync --gateway" if uses_login(endpoint) else "metis-env sync"


def choose_endpoint(endpoints: Mapping[str, StoredEndpoint], spec: str | None, settings: Settings,
                    command: str = "export") -> tuple[StoredEndpoint, str | None]:
    """``selection.choose_endpoint``, a gateway endpoint's model names matched in any case."""
    return selecting.choose_endpoint(endpoints, spec, settings, command, uses_login)


def pick_model(endpoint: StoredEndpoint, model: str | None, settings: Settings,
               seen: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """``selection.pick_model``, a gateway endpoint's model names matched in any case."""
    return selecting.pick_model(endpoint, model, settings, seen, uses_login(endpoint))


def select(store: Store, spec: str | None, model: str | None, settings: Settings, command: str = "export") -> Selection:
    """``selection.select``, its stale-data warning naming the right sync."""
    return selecting.select(store, spec, model, settings, command, sync_command, uses_login)


def select_with_key(store: Store, spec: str | None, model: str | None, settings: Settings,
                    command: str = "export") -> tuple[Selection, str]:
    """The selection and its key, both from one generation of the store.

    A sync may replace the metadata and delete the old keys between our two reads; Store.api_key then
    returns the new key, which must not go out with the old base URL and model: select again.
    """
    for _attempt in range(5):
        selection = select(store, spec, model, settings, command)
        selection, key = current_key(store, selection, settings)
        if store.endpoints().get(selection.endpoint.id) == selection.endpoint:
            return selection, key
    raise BusyError("the stored endpoints kept changing while being read (a sync is running); try again")


def current_key(store: Store, selection: Selection, settings: Settings) -> tuple[Selection, str]:
    """The key of the selection's endpoint now, and the selection as it is with it (a refreshed gateway
    endpoint, the token's expiry, any warning about the login)."""
    if uses_login(selection.endpoint):  # a Globus token, refreshed when inside the margin
        return fresh_key(store, selection, settings)
    return selection, store.api_key(selection.endpoint)


def environment_for(selection: Selection, api_key: str, settings: Settings | None = None) -> dict[str, str]:
    """The variables export, run and the Python API set (``variables.environment``) for a selection and
    its key, with the ``aliases`` setting's names."""
    endpoint = selection.endpoint
    aliases = parse_aliases(settings.aliases, "aliases") if settings is not None and settings.aliases else ()
    return environment(endpoint.base_url, api_key, selection.model, endpoint.id, expires_at=selection.expires_at,
                       sambanova=not uses_login(endpoint), aliases=aliases)


# --- the gateway's login: its state, and the refresh -----------------------------------------------

_STATE_FIELDS = (
    "store backend access refresh fingerprint expires_at login_at scope identity client_id gateway_url secret lifetime"
)


class TokenState(record_type("TokenState", _STATE_FIELDS)):
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
    section = store.section(GATEWAY)
    if section is None or not section.get("access"):
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
        from .errors import StoreError

        raise StoreError(f"{store.metadata_path}: the gateway login is damaged; run `metis-env login --force`") from None


def _lifetime(section: dict) -> float:
    try:
        return max(float(section["expires_at"]) - _utc_epoch(str(section["refreshed_at"])), 0.0)
    except (KeyError, TypeError, ValueError):
        return 0.0


def _utc_epoch(text: str) -> int:
    """``2026-12-04T01:07:29+00:00`` (records.utc_now) -> epoch seconds; by hand, since time.strptime
    and calendar cost every export their imports (re, locale, datetime)."""
    if len(text) != 25 or text[4] + text[7] + text[10] + text[13] + text[16] + text[19:] != "--T::+00:00":
        raise ValueError(text)
    y, m, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    y -= m <= 2  # days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def iso_utc(epoch: float) -> str:
    """``2026-12-04T01:07:29Z``: what METIS_ENV_TOKEN_EXPIRES holds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def fresh_key(store: Store, selection: Selection, settings: Settings) -> tuple[Selection, str]:
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
            warnings.append(f"{note}; using the current token, valid for {duration(state.seconds_left())} more")
        current = store.endpoints().get(endpoint.id)
        if current is None:
            raise LoginRequiredError(f"the gateway endpoint {endpoint.id} is gone (a logout?); {LOGIN_HINT}")
        endpoint = current
    if not note and settings.min_ttl and state.seconds_left() < settings.min_ttl:
        warnings.append(
            f"the Globus token lives {duration(state.seconds_left())} after a refresh, less than the "
            f"{duration(settings.min_ttl)} --min-ttl (min_ttl) asks for: Globus decides its lifetime (48 h)"
        )
    key = store.api_key(endpoint)
    return selection._replace(endpoint=endpoint, expires_at=iso_utc(state.expires_at), warnings=tuple(warnings)), key


def refresh_margin(settings: Settings, state: TokenState | None = None) -> float:
    """Refresh when less than this is left: ``token_refresh_margin``, or more with ``min_ttl``
    (``--min-ttl``, as aws-vault's AWS_MIN_TTL: a job that needs 40 h starts with at least 40 h).

    ``min_ttl`` counts for at most the life the last grant gave minus a minute: asking for more than
    Globus gives would otherwise send every export to Globus for a token no longer than the one held."""
    min_ttl = settings.min_ttl or 0.0
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
    from .sources.gateway import globus  # the only importer of globus_sdk: paid for about once in 47 h

    client_id = state.client_id or settings.globus_client_id

    def grant_now() -> dict:
        if state.service_account:
            return globus.client_credentials(client_id, grant, REFRESH_TIMEOUT)
        return globus.refresh(settings, client_id, grant, REFRESH_TIMEOUT)

    try:
        data = grant_now()  # bounded as a whole by REFRESH_TIMEOUT (globus.py)
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


FAILURE_KEYS = ("refresh_failed_at", "refresh_failure")
"""What the gateway section says of the last failed refresh (so that the next exporter does not wait too)."""


def _recent_failure(store: Store) -> str | None:
    section = store.section(GATEWAY)
    if section is None:
        return None
    when, note = section.get("refresh_failed_at"), section.get("refresh_failure")
    if not isinstance(when, (int, float)) or not isinstance(note, str) or not 0 <= time.time() - when < RETRY_AFTER:
        return None
    return f"{note} {time.time() - when:.0f} s ago; the next try is after {RETRY_AFTER:g} s"


def _remember_failure(store: Store, note: str) -> None:
    try:
        store.update_section(GATEWAY, {"refresh_failed_at": int(time.time()), "refresh_failure": note})
    except MetisEnvError:
        pass  # only a courtesy to the next exporter


def save_refresh(store: Store, state: TokenState, data: dict) -> TokenState:
    """Store a refreshed access token (and a rotated refresh token) where the login's tokens are, and
    point the gateway's records at it."""
    secrets = store.secrets(state.store)
    to_write, section = token_section(data, state.store, state.backend or secrets.backend, state)
    store.repoint_login_records(GATEWAY, section, to_write, state.store, drop=FAILURE_KEYS)
    return read_state(store)  # type: ignore[return-value]


def token_fingerprint(token: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def token_section(data: dict, kind: str, backend: str, previous: TokenState | None) -> tuple[dict[str, str], dict]:
    """globus-sdk's token data (``access_token``, ``refresh_token``, ``expires_at_seconds``, ``scope``)
    -> (the tokens to write, by entry name; the gateway section that points at them)."""
    access = data.get("access_token")
    expires_at = data.get("expires_at_seconds")
    if not isinstance(access, str) or not access or not isinstance(expires_at, (int, float)):
        from .errors import GatewayError

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


def duration(seconds: float) -> str:
    """``3 h`` or ``42 min``: how long a token stays valid."""
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    return f"{max(seconds, 0) / 60:.0f} min"
