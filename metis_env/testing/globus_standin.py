"""A loopback stand-in for Globus Auth and the ALCF Inference Service gateway, for tests and the demo.

One ``ThreadingHTTPServer`` on 127.0.0.1 (plain http, or TLS given a certificate and key) serves what
the real ``globus-sdk`` and the real ``alcf-tokens`` CLI call during a native-app login, a refresh and
a revocation (at its root, for ``GLOBUS_SDK_SERVICE_URL_AUTH``; ``metis_env.testing.auth_standin``),
and the gateway's routes under ``/resource_server/`` (``metis_env.testing.gateway_standin``), which
accept only the access tokens this same server issued. Knobs change its behaviour at runtime for fault tests::

    with GlobusStandIn() as globus:
        env = {**os.environ, **globus.env()}           # a child's globus-sdk and metis-env use it
        code = globus.approve(authorize_url)           # what the user's browser does
        globus.access_lifetime = 60                    # tokens issued from now on live a minute
        globus.set_model_status("metis", "gpt-oss-120b", "Queued")

Shapes follow the real services (GATEWAY.md 3 and 4.2): every token answer carries ``other_tokens``;
the code exchange puts the ``auth.globus.org`` token and its RS256 ``id_token`` (aud = client id) on
top when ``openid`` is asked. Tokens never appear in ``repr`` or in the request log.
"""

from __future__ import annotations

import html
import io
import json
import re
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metis_env.alcf import (
    ALCF_TOKENS_CLIENT_ID,
    INFERENCE_SCOPE,
)
from metis_env.testing import auth_standin, gateway_standin

DEFAULT_ACCESS_LIFETIME = 172800  # Globus's standard 48 h
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_IDENTITY = {
    "sub": "11111111-2222-4333-8444-555555555555",
    "preferred_username": "demo@anl.gov",
    "name": "Demo User",
    "email": "demo@anl.gov",
    "organization": "Argonne National Laboratory",
    "identity_provider": "a7ef9a1d-1e8e-4a49-9a46-b6b7a1a8c8f0",
    "identity_provider_display_name": "Argonne National Laboratory",
}


@dataclass(frozen=True)
class LoggedRequest:
    """One request the stand-in answered; never a token or a code.

    ``grant_type`` is set for ``POST /v2/oauth2/token``; ``bearer`` is None without an
    ``Authorization: Bearer`` header, else whether it named a live token of this stand-in;
    ``status`` is 0 when the client left before the answer. ``dead`` requests are not logged.
    """

    method: str
    path: str
    grant_type: str | None
    bearer: bool | None
    status: int


def _knob(name: str, doc: str) -> property:
    def get(self: GlobusStandIn) -> Any:
        with self._lock:
            return self._knobs[name]

    def set_(self: GlobusStandIn, value: Any) -> None:
        with self._lock:
            self._knobs[name] = value

    return property(get, set_, doc=doc)


class GlobusStandIn:
    """Globus Auth + the ALCF gateway on 127.0.0.1. ``start()``/``stop()`` or ``with`` (yields itself).

    ``clusters`` maps a cluster name to ``(framework, {model: status}[, routes])`` (default: metis/api
    with ALCF's three Metis models, all Live; sophia/vllm with one model not Live;
    ``gateway_standin.ALL_CLUSTERS`` adds minerva and tara). ``client_ids`` are
    the native clients the authorize and token endpoints accept (default: alcf-tokens' public one).
    ``cert_file``/``key_file`` serve TLS; ``ca_file`` (default ``cert_file``) is what clients trust.
    """

    access_lifetime = _knob("access_lifetime", "seconds an access token issued from now on lives")
    refresh_lifetime = _knob("refresh_lifetime", "seconds a refresh token lives from its issue; None: forever")
    refresh_fails = _knob("refresh_fails", "every refresh grant answers 400 invalid_grant")
    rotate_refresh = _knob("rotate_refresh", "a refresh returns a new refresh token and kills the old one")
    idp_ok = _knob("idp_ok", "False: the gateway answers FIRST's unauthorised-identity-provider 401 to every valid token")
    policy_ok = _knob("policy_ok", "False: the gateway answers the high-assurance 401 to every valid token")
    refresh_delay = _knob("refresh_delay", "seconds the token endpoint waits before answering a refresh")
    dead = _knob("dead", "accept every connection and never answer")
    token_drip = _knob("token_drip", "seconds between the bytes of each token-endpoint answer (0: all at once)")
    gateway_fault = _knob("gateway_fault", 'None; "html" or "5xx": every gateway route answers such a page, '
                                           'token or not; "wrong_shape": a 200 JSON of the wrong shape')
    clock_offset = _knob("clock_offset", "seconds the stand-in's clock is ahead of this machine's")

    def __init__(
        self,
        *,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        clusters: Mapping[str, tuple[str, Mapping[str, str]]] | None = None,
        client_ids: tuple[str, ...] = (ALCF_TOKENS_CLIENT_ID,),
        identity: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("TLS needs both cert_file and key_file")
        self._cert_file, self._key_file = cert_file, key_file
        self._ca_file = ca_file or cert_file
        self._address = (host, port)
        self.client_ids = tuple(client_ids)
        self.identity = dict(identity or DEFAULT_IDENTITY)
        self.service_accounts: dict[str, str] = {}
        self.allow_listed: set[str] = set()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._knobs: dict[str, Any] = {
            "access_lifetime": DEFAULT_ACCESS_LIFETIME,
            "refresh_lifetime": None,
            "refresh_fails": False,
            "rotate_refresh": False,
            "policy_ok": True,
            "idp_ok": True,
            "refresh_delay": 0.0,
            "dead": False,
            "token_drip": 0.0,
            "gateway_fault": None,
            "clock_offset": 0.0,
        }
        self.clusters = gateway_standin.make_clusters(clusters)
        self.gateway = gateway_standin.GatewayState()  # model details, aliases, the introspection cache
        self.maintenance: dict[str, str] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._access: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._log: list[LoggedRequest] = []
        self._drips_started = 0
        self._drip_bytes = 0
        self._drips_finished = 0
        self._authorizations: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"GlobusStandIn(url={self.url!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> GlobusStandIn:
        if self._server is not None:
            raise RuntimeError("GlobusStandIn already started")
        self._stopping.clear()
        server = _Server(self._address, _handler_for(self))
        server.daemon_threads = True
        if self._cert_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._cert_file, self._key_file)
            # Handshake in the per-connection thread, so that one silent client cannot stall accept().
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="globus-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # releases handlers held by `dead` and `refresh_delay`
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> GlobusStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The Globus Auth base URL with its trailing slash (``GLOBUS_SDK_SERVICE_URL_AUTH``)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"{'https' if self._cert_file else 'http'}://{host}:{port}/"

    @property
    def gateway_url(self) -> str | None:
        """The gateway's base URL, ``…/resource_server/`` (``METIS_ENV_GATEWAY_URL``)."""
        return None if self.url is None else self.url + "resource_server/"

    @property
    def ca_file(self) -> str | None:
        return self._ca_file if self._cert_file else None

    def env(self) -> dict[str, str]:
        """The variables that point a child's globus-sdk and metis-env at this stand-in."""
        env = {"GLOBUS_SDK_SERVICE_URL_AUTH": self.url or "", "METIS_ENV_GATEWAY_URL": self.gateway_url or ""}
        if self.ca_file:
            env.update(GLOBUS_SDK_VERIFY_SSL=self.ca_file, SSL_CERT_FILE=self.ca_file)
        return env

    def now(self) -> float:
        """The stand-in's clock: this machine's plus ``clock_offset``."""
        return time.time() + self.clock_offset

    # -- what tests and the demo drive --------------------------------------------------------

    def approve(self, authorize_url: str) -> str:
        """Do what the user's browser does with ``authorize_url``: log in, consent, read the code.

        GETs the URL without following the redirect, then GETs the page it redirects to (the
        auth-code page, or a local-server flow's listener) and returns the code. Raises
        ``RuntimeError`` with the page's text if the authorize step refused.
        """
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
        try:
            with opener.open(authorize_url, timeout=10) as response:
                raise RuntimeError(f"authorize did not redirect: {response.status}")
        except urllib.error.HTTPError as exc:
            location, page = exc.headers.get("Location"), exc.read().decode(errors="replace")
            if exc.code != 302 or not location:
                raise RuntimeError(f"authorize refused ({exc.code}): {_page_text(page)}") from None
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("code", [""])[0]
        with opener.open(location, timeout=10) as landing:
            page = landing.read().decode(errors="replace")
        if location.startswith(self.url or "\0"):
            shown = re.search(r'<code id="auth-code">([^<]*)</code>', page)
            if shown is None or html.unescape(shown.group(1)) != code:
                raise RuntimeError("the auth-code page does not show the code")
        return code

    def issue_tokens(
        self,
        lifetime: float | None = None,
        *,
        scope: str = INFERENCE_SCOPE,
        client_id: str = ALCF_TOKENS_CLIENT_ID,
        refresh: bool = True,
    ) -> dict[str, Any]:
        """Tokens for ``scope`` as a login would leave them, without a flow (negative lifetime: expired).

        Returns ``access_token``, ``refresh_token``, ``expires_at_seconds`` (this machine's clock),
        ``scope``, ``resource_server``, ``token_type``, ``identity_id``.
        """
        with self._lock:
            token = self._issue(auth_standin.resource_server_of(scope), scope, client_id, refresh, lifetime)
        return {
            "access_token": token["access_token"],
            "refresh_token": token.get("refresh_token"),
            "expires_at_seconds": int(time.time() + token["expires_in"]),
            "scope": scope,
            "resource_server": token["resource_server"],
            "token_type": "Bearer",
            "identity_id": self.identity["sub"],
        }

    def add_service_account(self, client_id: str, secret: str, *, allow_listed: bool = True) -> None:
        """A confidential client (a Globus service account) that may use the client-credentials grant;
        ``allow_listed``: the gateway accepts its tokens (ALCF's AUTHORIZED_GLOBUS_SERVICE_USERNAMES)."""
        with self._lock:
            self.service_accounts[client_id] = secret
            if allow_listed:
                self.allow_listed.add(client_id)
            else:
                self.allow_listed.discard(client_id)

    def token_client(self, access_token: str) -> str | None:
        """The client id an access token was issued to."""
        with self._lock:
            record = self._access.get(access_token)
            return None if record is None else record["client_id"]

    def revoke_all(self) -> None:
        """Revoke every token issued so far (as a Globus logout of all sessions would)."""
        with self._lock:
            for record in (*self._access.values(), *self._refresh.values()):
                record["revoked"] = True

    def token_status(self, access_token: str) -> str:
        """``valid``, ``expired``, ``revoked`` or ``unknown``, by the stand-in's clock."""
        with self._lock:
            record = self._access.get(access_token)
            if record is None:
                return "unknown"
            if record["revoked"]:
                return "revoked"
            return "expired" if record["expires_at"] <= self.now() else "valid"

    def token_expires_at(self, access_token: str) -> float | None:
        """When an access token expires by the stand-in's clock, revoked or not; None if never issued."""
        with self._lock:
            record = self._access.get(access_token)
            return None if record is None else record["expires_at"]

    def token_resource_server(self, access_token: str) -> str | None:
        with self._lock:
            record = self._access.get(access_token)
            return None if record is None else record["resource_server"]

    def set_model_status(self, cluster: str, model: str, status: str) -> None:
        """Set (or add) ``model`` on ``cluster`` with status Live, Starting, Queued, Stopped or Offline."""
        with self._lock:
            self.clusters[cluster]["models"][model] = status

    def set_maintenance(self, cluster: str, message: str | None = "Cluster is under maintenance.") -> None:
        """Put ``cluster`` under maintenance with ``message``, or take it out with None."""
        with self._lock:
            if message is None:
                self.maintenance.pop(cluster, None)
            else:
                self.maintenance[cluster] = message

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered so far, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def authorizations(self) -> list[dict[str, str]]:
        """The query of every ``/v2/oauth2/authorize`` request (scope, prompt, session_required_policies…)."""
        with self._lock:
            return [dict(query) for query in self._authorizations]

    @property
    def drips_started(self) -> int:
        """How many token answers began to be sent byte by byte (``token_drip``)."""
        with self._lock:
            return self._drips_started

    @property
    def drip_bytes(self) -> int:
        """How many bytes of dripped answers were written so far (before their client left)."""
        with self._lock:
            return self._drip_bytes

    @property
    def drips_finished(self) -> int:
        """How many dripped answers were written to their last byte."""
        with self._lock:
            return self._drips_finished

    def grants(self, grant_type: str) -> int:
        """How many token requests of ``grant_type`` arrived (answered or refused)."""
        return sum(1 for r in self.requests if r.grant_type == grant_type)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the stand-in is stopping meanwhile."""
        return self._stopping.wait(seconds)

    # -- token state (callers hold the lock) --------------------------------------------------

    def _issue(
        self, rs: str | None, scope: str, client_id: str, refresh: bool, lifetime: float | None = None
    ) -> dict[str, Any]:
        lifetime = self._knobs["access_lifetime"] if lifetime is None else lifetime
        access = secrets.token_urlsafe(32)
        self._access[access] = {
            "resource_server": rs, "scope": scope, "client_id": client_id,
            "issued_at": self.now(), "expires_at": self.now() + lifetime, "revoked": False, "refresh": None,
        }
        token = {
            "access_token": access, "expires_in": int(lifetime), "resource_server": rs,
            "scope": scope, "token_type": "Bearer",
        }
        if refresh:
            token["refresh_token"] = self._new_refresh(rs, scope, client_id)
            self._access[access]["refresh"] = token["refresh_token"]
        return token

    def _new_refresh(self, rs: str | None, scope: str, client_id: str) -> str:
        refresh = secrets.token_urlsafe(48)
        lifetime = self._knobs["refresh_lifetime"]
        self._refresh[refresh] = {
            "resource_server": rs, "scope": scope, "client_id": client_id, "revoked": False,
            "expires_at": None if lifetime is None else self.now() + lifetime,
        }
        return refresh

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # fifty exports refreshing at once must not meet a full listen backlog


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a browser shows the user where it lands; approve() reads the Location itself


def _page_text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _handler_for(standin: GlobusStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.standin = standin
    return Handler


class _Handler(BaseHTTPRequestHandler):
    standin: GlobusStandIn
    protocol_version = "HTTP/1.1"
    server_version = "metis-env-globus-standin/1"
    timeout = 60  # an idle or silent connection ends, so that no handler thread lives on for ever
    grant_type: str | None = None
    bearer_ok: bool | None = None

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.settimeout(10)
                self.connection.do_handshake()
                self.connection.settimeout(self.timeout)
            if self.standin.dead:
                self.standin._stopping.wait()  # accepted, never answered, until the stand-in stops
                return
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass  # a client that gave up or refused our certificate: nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent: the log that matters is standin.requests, which holds no token

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        self.grant_type, self.bearer_ok, self._body = None, None, None
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        status = 0  # logged as 0 when the client left before the answer (e.g. its timeout hit)
        try:
            if split.path.startswith("/resource_server/"):
                status = gateway_standin.route(self.standin, self, method, split.path[len("/resource_server/"):], query)
            else:
                status = auth_standin.route(self.standin, self, method, split.path, query)
        finally:
            with self.standin._lock:
                self.standin._log.append(LoggedRequest(method, split.path, self.grant_type, self.bearer_ok, status))

    # -- request helpers ----------------------------------------------------------------------

    def body(self) -> bytes:
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._body = b""
            else:
                self._body = self.rfile.read(length)
        return self._body

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body().decode(errors="replace"), keep_blank_values=True))

    def basic_auth(self) -> tuple[str, str] | None:
        """(client id, secret) of an ``Authorization: Basic`` header, else None."""
        import base64
        import binascii

        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme != "Basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None  # globus-sdk's BasicAuthorizer does not URL-encode

    def bearer(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme == "Bearer" and token.strip() else None

    # -- response helpers (each returns the status, for the log) ------------------------------

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}) -> int:
        drip = self.standin.token_drip if self.grant_type else 0.0
        if drip:  # a slow Globus: the whole answer, status line included, one byte at a time
            real, self.wfile = self.wfile, io.BytesIO()
            try:
                self._send_now(status, data, content_type, headers)
            finally:
                raw, self.wfile = self.wfile.getvalue(), real
            with self.standin._lock:
                self.standin._drips_started += 1
            for i in range(len(raw)):
                real.write(raw[i:i + 1])
                real.flush()
                with self.standin._lock:
                    self.standin._drip_bytes += 1
                if self.standin.wait(drip):
                    self.close_connection = True
                    return 0
            with self.standin._lock:
                self.standin._drips_finished += 1
            return status
        return self._send_now(status, data, content_type, headers)

    def _send_now(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status

    def send_json(self, status: int, payload: Any) -> int:
        return self.send_bytes(status, json.dumps(payload).encode(), "application/json")

    def send_html(self, status: int, page: str) -> int:
        return self.send_bytes(status, page.encode(), "text/html; charset=utf-8")

    def send_redirect(self, location: str) -> int:
        return self.send_bytes(302, b"", "text/html; charset=utf-8", {"Location": location})


Handler = _Handler
"""The request handler the stand-ins' routes are given (auth_standin.py, gateway_standin.py)."""
