"""The gateway's login in metis-env's own store: a new login, the clusters ``sync --gateway`` lists, and
a logout. What a stored login is and how its token is kept fresh is ``credentials.py``'s (the hot path);
the records themselves are written by ``store.py``, the only writer of endpoints.yaml.

Example::

    save_login(store, settings, data, identity, endpoints)   # data: globus-sdk's token data
"""

from __future__ import annotations

import time

from ...credentials import (  # noqa: F401  (the names below the first five: re-exported for older callers)
    GATEWAY,
    LOGIN_HINT,
    read_state,
    token_fingerprint,
    token_section,
    LOCK_WAIT,
    REFRESH_TIMEOUT,
    RETRY_AFTER,
    TokenState,
    fresh_key,
    iso_utc,
    refresh_if_due,
    refresh_margin,
    save_refresh,
)
from ...errors import LoginRequiredError, MetisEnvError
from ...records import Change, Listed, natural_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ...settings import Settings
    from ...store import Store
    from .http import GatewayEndpoint

COLLISION = "gateway cluster {} not stored: an endpoint file already uses that id"


def listed(endpoints: list[GatewayEndpoint]) -> list[Listed]:
    """The clusters list-endpoints gave, as the store's records take them."""
    return [Listed(e.id, e.base_url, e.models, "", gateway_extra(e)) for e in endpoints]


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
    to_write, section = token_section(data, secrets.kind, secrets.backend, None)
    section.update(
        login_at=int(time.time()), identity=identity, client_id=settings.globus_client_id, gateway_url=settings.gateway_url
    )
    if service_account is not None:
        client_id, secret = service_account
        section.update(client_id=client_id, secret=secret_ref(secret))
        to_write[section["secret"]] = secret
    store.save_login(GATEWAY, section, to_write, listed(endpoints), secrets.kind, COLLISION)
    return read_state(store)  # type: ignore[return-value]


def save_endpoints(store: Store, endpoints: list[GatewayEndpoint]) -> list[Any]:
    """Replace the gateway records with ``endpoints`` (``sync --gateway``); the login stays."""
    before = store.endpoints_of(GATEWAY)
    not_logged_in = LoginRequiredError(f"not logged in to the ALCF gateway; {LOGIN_HINT}")
    store.save_login_records(GATEWAY, listed(endpoints), not_logged_in, COLLISION)
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
    removed = store.forget_login(GATEWAY, state.store if state else None)
    return removed, tokens


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
