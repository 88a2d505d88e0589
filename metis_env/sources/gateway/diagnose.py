"""doctor's findings about the gateway source: logged in or not, the token's expiry, the login's
age against reauth_after_days, and which gateway_url is used. Offline, except for a service account:
one ``GET whoami`` tells whether ALCF has allow-listed it.

Example::

    for finding in check_gateway(settings, store): print(finding.line())
"""

from __future__ import annotations

from ...errors import IdentityNotAuthorizedError, MetisEnvError
from ...render import printable
from . import tokens

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...doctor import Finding
    from ...settings import Settings
    from ...store import Store


def check_gateway(settings: Settings, store: Store) -> list[Finding]:
    from ...doctor import OK, PROBLEM, WARN, Finding

    url = Finding("gateway_url", OK, settings.gateway_url)
    try:
        state = tokens.read_state(store)
    except MetisEnvError as exc:
        return [url, Finding("gateway login", PROBLEM, str(exc), "metis-env login --force")]
    if state is None:
        return [url, Finding("gateway login", OK, "not logged in (optional: metis-env login, for the ALCF gateway)")]
    who = f" as {printable(state.identity)}" if state.identity else ""  # from Globus or alcf-tokens' file
    findings = [url]
    left = state.seconds_left()
    expiry = f"access token {'expired' if left <= 0 else 'valid'} until {tokens.iso_utc(state.expires_at)}"
    refresh = "a refresh token is stored" if state.refresh else "no refresh token"
    if left <= 0 and not state.refresh:
        findings.append(Finding("gateway login", PROBLEM, f"logged in{who}; {expiry}; {refresh}", "metis-env login"))
    else:
        findings.append(Finding("gateway login", OK, f"logged in{who} ({state.store} store); {expiry}; {refresh}"))
    if state.service_account:
        findings.append(Finding("gateway re-authentication", OK, "a service account: tokens are minted again when needed, no 30-day re-login"))
        findings.append(_service_account_finding(settings, store, state))
        return findings + _url_findings(settings, state)
    age = state.login_age_days()
    if age > settings.reauth_after_days:
        findings.append(Finding(
            "gateway re-authentication", WARN,
            f"the Globus login is {age:.0f} days old (reauth_after_days {settings.reauth_after_days:g}; ALCF asks every 30)",
            "log out at https://app.globus.org/logout, then metis-env login --force",
        ))
    else:
        findings.append(Finding("gateway re-authentication", OK, f"the Globus login is {age:.0f} days old"))
    return findings + _url_findings(settings, state)


def _url_findings(settings: Settings, state: tokens.TokenState) -> list[Finding]:
    from ...doctor import WARN, Finding

    if state.gateway_url and state.gateway_url != settings.gateway_url:
        return [Finding(
            "gateway_url", WARN, f"the login was made for {state.gateway_url}, but gateway_url is now {settings.gateway_url}",
            "metis-env login --force (or set gateway_url back)",
        )]
    return []


def _service_account_finding(settings: Settings, store: Store, state: tokens.TokenState) -> Finding:
    """Whether the gateway takes the service account's token (one ``GET whoami``, only while the stored
    token is valid: doctor mints nothing). A refusal is ALCF's allow-list, explained."""
    from ...doctor import OK, PROBLEM, Finding
    from .http import classify, request
    from .session import ALLOW_LIST_ADVICE

    if state.seconds_left() <= 0:
        return Finding("gateway service account", OK, "the stored token expired; the next export mints a new one")
    try:
        token = store.secrets(state.store).get(state.access)
        answer = request("GET", settings.gateway_url + "whoami", token or "", timeout=10)
    except MetisEnvError as exc:
        return Finding("gateway service account", OK, f"not asked ({exc})")
    error = classify(answer, "whoami")
    if isinstance(error, IdentityNotAuthorizedError):
        return Finding(
            "gateway service account", PROBLEM, f"the gateway refuses service account {state.client_id} (HTTP 401)",
            ALLOW_LIST_ADVICE.format(username=state.identity),
        )
    if error is not None:
        return Finding("gateway service account", OK, f"not confirmed: {error}")
    return Finding("gateway service account", OK, f"the gateway accepts service account {state.client_id}")
