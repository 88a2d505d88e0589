"""``login``, ``logout`` and ``sync --gateway`` as plain functions (cli.py is a thin layer over them).

Messages for the user go to stderr through ``say``; stdout stays empty.

Example::

    login(settings, store, no_browser=True)   # URL on stderr, code from stdin, endpoints stored
    login_service_account(settings, store, CLIENT_ID, secret)   # client credentials, no browser
    sync_gateway(settings, store)              # the endpoint list again, same token
    logout(settings, store)                    # revoked at Globus, forgotten here
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ... import credentials
from ...errors import (
    ConnectionFailedError,
    GatewayError,
    IdentityNotAuthorizedError,
    LoginRequiredError,
    MetisEnvError,
    ServiceAccountError,
    UsageError,
)
from ...render import printable
from ...store import Change
from . import alcf_tokens, http, models, tokens

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...settings import Settings
    from ...store import Store


def _say(line: str) -> None:
    sys.stderr.write(f"metis-env: {line}\n")
    sys.stderr.flush()


def login(
    settings: Settings,
    store: Store,
    *,
    no_browser: bool = False,
    force: bool = False,
    from_alcf_tokens: bool = False,
    say: Callable[[str], None] = _say,
) -> list[Change]:
    """Log in to Globus (or adopt alcf-tokens' login), discover the gateway's endpoints, and store
    both in one update; nothing is stored if any step fails."""
    state = credentials.read_state(store)
    if state is not None and not force and state.seconds_left() > 0:
        who = f" as {printable(state.identity)}" if state.identity else ""  # from Globus or alcf-tokens' file
        say(
            f"already logged in to the ALCF gateway{who} (token valid until {credentials.iso_utc(state.expires_at)}, "
            f"login {state.login_age_days():.0f} days ago); `metis-env login --force` logs in again"
        )
        return []
    store.check_writable()  # before the user spends a login on a store that cannot take it
    cache = alcf_tokens.cache_path()
    if from_alcf_tokens:
        data, identity = alcf_tokens.read_cache(cache)
        if data["expires_at_seconds"] <= time.time() and not data.get("refresh_token"):
            raise LoginRequiredError(f"the token in {cache} has expired and has no refresh token; run `metis-env login`")
        say(f"adopted the Globus login of alcf-tokens ({cache}, read only)")
    else:
        if os.path.exists(cache):
            say(f"alcf-tokens is logged in here too ({cache}); `metis-env login --from-alcf-tokens` adopts its tokens instead")
        from . import globus  # globus-sdk: only login, logout and a refresh load it

        data, identity = globus.login(settings, no_browser=no_browser, show=lambda line: sys.stderr.write(line + "\n"))
    access = data["access_token"]
    if data["expires_at_seconds"] - time.time() <= settings.token_refresh_margin and data.get("refresh_token"):
        from . import globus

        data = {**data, **globus.refresh(settings, settings.globus_client_id, data["refresh_token"], credentials.REFRESH_TIMEOUT)}
        access = data["access_token"]
    endpoints = _discover(settings, access, say)
    before = set(store.endpoints_of(credentials.GATEWAY))
    tokens.save_login(store, settings, data, identity, endpoints)
    after = set(store.endpoints_of(credentials.GATEWAY))
    changes = [Change(i, "new" if i not in before else "updated") for i in sorted(after)]
    changes += [Change(i, "removed") for i in sorted(before - after)]
    say(f"logged in to the ALCF gateway; token valid until {credentials.iso_utc(data['expires_at_seconds'])}")
    if not endpoints:
        say("the gateway lists no cluster with models; `metis-env sync --gateway` asks again")
    return changes


ALLOW_LIST_ADVICE = (
    "the ALCF gateway accepts a Globus service account only once ALCF has allow-listed it: ask ALCF support "
    "(support@alcf.anl.gov) to allow {username} for the Inference Service"
)


def service_account_username(client_id: str) -> str:
    """The Globus username of a confidential client: what ALCF's allow-list holds."""
    return f"{client_id}@clients.auth.globus.org"


def login_service_account(
    settings: Settings, store: Store, client_id: str, secret: str, *, force: bool = False, say: Callable[[str], None] = _say
) -> list[Change]:
    """Log in as a Globus service account (a confidential client's client-credentials grant for the
    inference scope): no browser, no refresh token, no 30-day re-login; export mints a new token
    inside the refresh margin. The client secret is kept in the store like a key."""
    if not secret.strip():
        raise UsageError("the client secret is empty; paste it at the prompt, or pipe it with --secret-stdin")
    state = credentials.read_state(store)
    same = state is not None and state.client_id == client_id and state.secret == tokens.secret_ref(secret.strip())
    if same and not force and state.seconds_left() > 0:  # another account, or a new secret: log in again
        say(
            f"already logged in to the ALCF gateway as service account {client_id} (token valid until "
            f"{credentials.iso_utc(state.expires_at)}); `metis-env login --service-account {client_id} --force` logs in again"
        )
        return []
    store.check_writable()
    from . import globus

    secret = secret.strip()
    data = globus.client_credentials(client_id, secret, credentials.REFRESH_TIMEOUT)
    username = service_account_username(client_id)
    try:
        endpoints = _discover(settings, data["access_token"], say)
    except IdentityNotAuthorizedError:
        raise ServiceAccountError(f"the gateway refused the service account {client_id}: " + ALLOW_LIST_ADVICE.format(username=username)) from None
    before = set(store.endpoints_of(credentials.GATEWAY))
    tokens.save_login(store, settings, data, username, endpoints, service_account=(client_id, secret))
    after = set(store.endpoints_of(credentials.GATEWAY))
    changes = [Change(i, "new" if i not in before else "updated") for i in sorted(after)]
    changes += [Change(i, "removed") for i in sorted(before - after)]
    say(
        f"logged in to the ALCF gateway as service account {client_id}; token valid until "
        f"{credentials.iso_utc(data['expires_at_seconds'])}, minted again when needed"
    )
    return changes


def read_client_secret(from_stdin: bool, client_id: str) -> str:
    """The service account's client secret: one line from stdin (``--secret-stdin``), else a hidden
    prompt on the terminal. Never argv or the environment. ``--secret-stdin`` with stdin on a terminal
    asks with the hidden prompt too: a line read there would be echoed as it is typed."""
    if from_stdin and not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip():
            raise UsageError("--secret-stdin: no client secret on stdin")
        return line.strip()
    from ...prompt import TerminalPrompter

    try:
        return TerminalPrompter().secret(f"Globus client secret of {client_id}: ")
    except UsageError:
        raise UsageError("no terminal to ask for the client secret on; pipe it with --secret-stdin") from None


def current_token(settings: Settings, store: Store) -> str:
    """An access token valid for at least the margin (refreshed if needed), for gateway calls
    outside export (``sync --gateway``, status, check)."""
    state = credentials.read_state(store)
    if state is None:
        raise LoginRequiredError(f"not logged in to the ALCF gateway; {credentials.LOGIN_HINT}")
    if state.seconds_left() <= credentials.refresh_margin(settings, state):
        state, note = credentials.refresh_if_due(store, settings, state)
        if note:
            if state.seconds_left() <= 0:
                raise LoginRequiredError(f"the Globus access token expired and {note}; {credentials.LOGIN_HINT}")
            _say(f"warning: {note}")
    token = store.secrets(state.store).get(state.access)
    if token is None:
        raise LoginRequiredError(f"the Globus access token is missing from the {state.store} store; {credentials.LOGIN_HINT}")
    return token


def sync_gateway(settings: Settings, store: Store) -> list[Change]:
    """``metis-env sync --gateway``: list-endpoints again; the gateway records are replaced whole."""
    token = current_token(settings, store)
    return tokens.save_endpoints(store, _discover(settings, token, _say))


def _discover(settings: Settings, token: str, say: Callable[[str], None]) -> list[http.GatewayEndpoint]:
    """list-endpoints, then each cluster's ``{cluster}/models`` where the gateway serves it."""
    endpoints = http.list_endpoints(settings.gateway_url, token)
    return models.with_capabilities(settings.gateway_url, token, endpoints, warn=lambda line: say(f"warning: {line}"))


def logout(settings: Settings, store: Store, say: Callable[[str], None] = _say) -> list[Change]:
    """Forget the login and the gateway endpoints here, then revoke the tokens at Globus (offline:
    forgotten anyway, with a warning)."""
    state = credentials.read_state(store)
    if state is None:
        say("not logged in to the ALCF gateway; nothing to do")
        return []
    removed, values = tokens.forget_login(store)
    secret = values.pop("secret", None)  # a service account's: forgotten, never sent to be revoked
    if values:
        from . import globus

        until = f"a copy of the access token elsewhere keeps working until it expires ({credentials.iso_utc(state.expires_at)})"
        try:
            globus.revoke(settings, state.client_id or settings.globus_client_id, values, secret=secret)
        except (ConnectionFailedError, GatewayError, LoginRequiredError) as exc:
            say(f"warning: the tokens are forgotten here, but Globus could not revoke them ({exc}); {until}")
        except MetisEnvError as exc:
            say(f"warning: the tokens are forgotten here, but revoking them failed ({exc}); {until}")
        else:
            say("logged out: the tokens are revoked at Globus and forgotten here")
            # FIRST caches a good introspection for 600 s: a revoked token is not refused at once.
            say("the gateway may accept the old access token for up to 10 minutes more (it caches token checks)")
    return [Change(i, "removed") for i in removed]
