"""Globus Auth through globus-sdk: the native-app login, the refresh grant, a service account's
client-credentials grant and revocation.

The only module of metis-env that imports ``globus_sdk`` (about 100 ms), and never on the hot path:
``credentials.fresh_key`` comes here only inside the refresh margin, about once in 47 hours. Every
globus-sdk error becomes one MetisEnvError line, never chained (its text can hold a request body).
``GLOBUS_SDK_SERVICE_URL_AUTH`` and ``GLOBUS_SDK_VERIFY_SSL`` point globus-sdk elsewhere (a stand-in).

Example::

    data = login(settings, no_browser=True)      # URL on stderr, code read from stdin
    data = refresh(settings, client_id, refresh_token, timeout=10)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import globus_sdk
from globus_sdk.gare import GlobusAuthorizationParameters
from globus_sdk.login_flows import CommandLineLoginFlowManager, LocalServerLoginFlowManager
from globus_sdk.token_storage import TokenStorage, TokenStorageData
from globus_sdk.transport import RequestsTransport, RetryConfig

from ...alcf import INFERENCE_RESOURCE_SERVER, INFERENCE_SCOPE, INFERENCE_SESSION_POLICY
from ...errors import ConnectionFailedError, GatewayError, LoginRequiredError, MetisEnvError, ServiceAccountError, UsageError
from ...render import printable

APP_NAME = "metis-env"


class CapturingTokenStorage(TokenStorage):
    """metis-env's TokenStorage: what globus-sdk stores during a login stays in this process's memory
    until metis-env's own store (OS keyring or the explicit file store) takes it in one update, with
    the endpoints discovered with it; globus-sdk never writes a tokens.json of its own."""

    def __init__(self, initial: Mapping[str, TokenStorageData] | None = None) -> None:
        super().__init__()
        self._data: dict[str, TokenStorageData] = dict(initial or {})

    def __repr__(self) -> str:
        return f"CapturingTokenStorage(resource_servers={sorted(self._data)!r})"

    def store_token_data_by_resource_server(self, token_data_by_resource_server: Mapping[str, TokenStorageData]) -> None:
        self._data.update(token_data_by_resource_server)

    def get_token_data_by_resource_server(self) -> dict[str, TokenStorageData]:
        return dict(self._data)

    def remove_token_data(self, resource_server: str) -> bool:
        return self._data.pop(resource_server, None) is not None


def _transport(timeout: float) -> dict[str, Any]:
    # No retries: a bounded refresh in a shell start-up, not five backed-off attempts.
    return {"transport": RequestsTransport(http_timeout=timeout), "retry_config": RetryConfig(max_retries=0)}


def _bounded(timeout: float, what: str, call: Callable[[], Any]) -> Any:
    """``call()`` (one request to Globus Auth), bounded as a whole, connect to last byte, by
    ``timeout``: requests' own timeout is per read, and a Globus answering one byte every few seconds
    would otherwise hold the caller (and the store's lock) for as long as it likes."""
    from ...http import call_within

    return call_within(timeout, call, lambda: ConnectionFailedError(
        f"Globus Auth did not finish {what} within {timeout:g} s; check your network and try again"))


def auth_client(client_id: str, timeout: float) -> globus_sdk.NativeAppAuthClient:
    return globus_sdk.NativeAppAuthClient(client_id=client_id, app_name=APP_NAME, **_transport(timeout))


# --- refresh and revoke ----------------------------------------------------------------------------


def refresh(settings: Any, client_id: str, refresh_token: str, timeout: float) -> dict[str, Any]:
    """One refresh grant -> the inference token data (``access_token``, ``expires_at_seconds``,
    ``refresh_token``, ``scope``). Refused (invalid_grant) -> LoginRequiredError."""
    return _grant(
        lambda: auth_client(client_id, timeout), lambda client: client.oauth2_refresh_token(refresh_token), "the refresh", timeout,
        GatewayError("Globus answered the refresh without a token for the inference service; run `metis-env login --force`"))


def client_credentials(client_id: str, secret: str, timeout: float) -> dict[str, Any]:
    """One client-credentials grant of a confidential client (a Globus service account) for the
    inference scope -> the inference token data (``access_token``, ``expires_at_seconds``, ``scope``;
    never a refresh token: minted again when needed). Refused -> ServiceAccountError."""
    return _grant(
        lambda: confidential_client(client_id, secret, timeout),
        lambda client: client.oauth2_client_credentials_tokens(requested_scopes=INFERENCE_SCOPE),
        "the service account's token", timeout,
        ServiceAccountError("Globus gave the service account no token for the inference service; check the client's scopes"))


def _grant(make_client: Callable[[], Any], request: Callable[[Any], Any], what: str, timeout: float,
           no_token: MetisEnvError) -> dict[str, Any]:
    """One token grant at Globus Auth -> the inference token data of its answer. The client is made
    outside the network's deadline (CPU only), ``request(client)`` inside it; a failure is worded by
    describe_error (never chained: globus_sdk's exceptions carry the request), an answer without an
    inference token raises ``no_token``."""
    failure: MetisEnvError | None = None
    try:
        client = make_client()
        response = _bounded(timeout, what, lambda: request(client))
        data = response.by_resource_server.get(INFERENCE_RESOURCE_SERVER)
    except Exception as exc:  # noqa: BLE001 - worded below, never chained
        failure = describe_error(exc, what)
    if failure is not None:
        raise failure
    if not data:
        raise no_token
    return dict(data)


def confidential_client(client_id: str, secret: str, timeout: float) -> globus_sdk.ConfidentialAppAuthClient:
    return globus_sdk.ConfidentialAppAuthClient(client_id=client_id, client_secret=secret, app_name=APP_NAME, **_transport(timeout))


def revoke(settings: Any, client_id: str, tokens: Mapping[str, str], timeout: float = 10.0, secret: str | None = None) -> None:
    """Revoke each token at Globus (as the confidential client ``client_id`` given its ``secret``);
    raises the first failure (after trying them all)."""
    client = auth_client(client_id, timeout) if secret is None else confidential_client(client_id, secret, timeout)
    failure: MetisEnvError | None = None
    for token in tokens.values():
        try:
            client.oauth2_revoke_token(token)
        except Exception as exc:  # noqa: BLE001
            failure = failure or describe_error(exc, "the revocation")
    if failure is not None:
        raise failure


def describe_error(exc: BaseException, what: str) -> MetisEnvError:
    if isinstance(exc, MetisEnvError):
        return exc
    if isinstance(exc, globus_sdk.AuthAPIError):
        code = printable(exc.code[:60]) if isinstance(exc.code, str) else ""  # Globus's words reach a terminal
        body = str(getattr(exc, "text", "") or "")[:500]
        if exc.http_status in (400, 401) and (code == "invalid_client" or "invalid_client" in body):
            return ServiceAccountError(
                f"Globus refused the service account's client id or secret for {what} (invalid_client); check them "
                "(app.globus.org, Settings, Developers), then `metis-env login --service-account CLIENT_ID --force`"
            )
        if exc.http_status in (400, 401) and (code == "invalid_grant" or "invalid_grant" in body):
            return LoginRequiredError(f"Globus refused {what} (invalid_grant: the login expired or was revoked); run `metis-env login`")
        return GatewayError(f"Globus Auth answered {what} with HTTP {exc.http_status} ({code or 'no error code'}); try again later")
    if isinstance(exc, globus_sdk.GlobusTimeoutError):
        return ConnectionFailedError(f"Globus Auth did not answer {what} in time; check your network and try again")
    if isinstance(exc, globus_sdk.NetworkError):
        return ConnectionFailedError(
            f"Globus Auth could not be reached for {what} ({type(exc).__name__}); check your network "
            "(and GLOBUS_SDK_VERIFY_SSL if your network inspects TLS)"
        )
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return GatewayError(f"Globus answered {what} with HTTP {exc.http_status}; try again later")
    if type(exc).__name__ in ("ImmatureSignatureError", "ExpiredSignatureError"):  # PyJWT, on the id_token
        return GatewayError(
            f"Globus's identity token for {what} is not valid at this machine's time: this clock is off "
            "(check it, e.g. timedatectl), then try again"
        )
    if isinstance(exc, EOFError):
        return UsageError("no authorization code was read (end of input); paste the code, or run `metis-env login` in a terminal")
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return GatewayError(f"{what} at Globus failed ({type(exc).__name__}); run again with --debug to see why")


# --- login -----------------------------------------------------------------------------------------


def login(
    settings: Any,
    *,
    no_browser: bool,
    show: Callable[[str], None] | None = None,
    read_code: Callable[[], str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Run the native-app login (inference scope, the session policy, ``prompt=login``) ->
    (the inference token data, the identity id). ``show`` gets the lines for the user (stderr by
    default); ``read_code`` reads the code (stdin by default)."""
    show = show or _to_stderr
    read_code = read_code or _read_line
    storage = CapturingTokenStorage()
    browser = not no_browser and _browser_usable()
    flow = _local_server_flow() if browser else _code_flow(show, read_code)
    config = globus_sdk.GlobusAppConfig(
        token_storage=storage,
        login_flow_manager=flow,
        request_refresh_tokens=True,
        token_validation_error_handler=None,
    )
    params = GlobusAuthorizationParameters(session_required_policies=[INFERENCE_SESSION_POLICY], prompt="login")
    failure: MetisEnvError | None = None
    try:
        app = globus_sdk.UserApp(
            APP_NAME,
            client_id=settings.globus_client_id,
            scope_requirements={INFERENCE_RESOURCE_SERVER: [globus_sdk.Scope(INFERENCE_SCOPE)]},
            config=config,
        )
        if browser:
            show("metis-env: opening a browser for the Globus login (metis-env login --no-browser prints a URL instead)")
        app.login(auth_params=params, force=True)
    except Exception as exc:  # noqa: BLE001
        failure = describe_error(exc, "the login")
    if failure is not None:
        raise failure
    data = storage.get_token_data(INFERENCE_RESOURCE_SERVER)
    if data is None or not data.access_token:
        raise GatewayError("the Globus login gave no token for the inference service; try `metis-env login --force`")
    return dict(data.to_dict()), str(data.identity_id or "")


def _code_flow(show: Callable[[str], None], read_code: Callable[[], str]) -> type:
    class PrintAndRead(CommandLineLoginFlowManager):
        """The URL on stderr (stdout is for what was asked), the code from stdin; neither logged."""

        def print_authorize_url(self, authorize_url: str) -> None:
            show("metis-env: log in to Globus (ALCF) in a browser on any machine at this URL:")
            show(authorize_url)

        def prompt_for_code(self) -> str:
            show("metis-env: then paste the authorization code it shows here and press Enter:")
            code = read_code().strip()
            if not code:
                raise EOFError
            return code

    return PrintAndRead


def _local_server_flow() -> type:
    class Browser(LocalServerLoginFlowManager):
        pass

    return Browser


def _browser_usable() -> bool:
    """A browser this session can open: not over SSH (the browser would open on the wrong machine)."""
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    ):
        return False
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _read_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line
