"""A loopback stand-in for Globus Auth and the ALCF Inference Service gateway, for tests and the demo.

One ``ThreadingHTTPServer`` on 127.0.0.1 (plain http, or TLS given a certificate and key) serves what
the real ``globus-sdk`` and the real ``alcf-tokens`` CLI call during a native-app login, a refresh and
a revocation (at its root, for ``GLOBUS_SDK_SERVICE_URL_AUTH``), and the gateway's routes under
``/resource_server/`` (``metis_env.testing.gateway_standin``), which accept only the access tokens
this same server issued. Knobs change its behaviour at runtime for fault tests::

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

import base64
import functools
import hashlib
import html
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

from metis_env.sources.gateway.constants import (
    ALCF_TOKENS_CLIENT_ID,
    AUTH_RESOURCE_SERVER,
    INFERENCE_SCOPE,
)
from metis_env.testing import gateway_standin

DEFAULT_ACCESS_LIFETIME = 172800  # Globus's standard 48 h
CODE_LIFETIME = 600
MAX_BODY_BYTES = 1024 * 1024
OPENID_SCOPES = ("openid", "profile", "email")
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
    ``Authorization: Bearer`` header, else whether it named a live token of this stand-in.
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


@functools.lru_cache(maxsize=1)
def _signing_key() -> Any:
    # One RSA key per process: generating it costs ~50 ms, and nothing depends on its being fresh.
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class GlobusStandIn:
    """Globus Auth + the ALCF gateway on 127.0.0.1. ``start()``/``stop()`` or ``with`` (yields itself).

    ``clusters`` maps a cluster name to ``(framework, {model: status})`` (default: metis/api with
    ALCF's three Metis models, all Live; sophia/vllm with one model not Live). ``client_ids`` are
    the native clients the authorize and token endpoints accept (default: alcf-tokens' public one).
    ``cert_file``/``key_file`` serve TLS; ``ca_file`` (default ``cert_file``) is what clients trust.
    """

    access_lifetime = _knob("access_lifetime", "seconds an access token issued from now on lives")
    refresh_lifetime = _knob("refresh_lifetime", "seconds a refresh token lives from its issue; None: forever")
    refresh_fails = _knob("refresh_fails", "every refresh grant answers 400 invalid_grant")
    rotate_refresh = _knob("rotate_refresh", "a refresh returns a new refresh token and kills the old one")
    policy_ok = _knob("policy_ok", "False: the gateway answers the high-assurance 401 to every valid token")
    refresh_delay = _knob("refresh_delay", "seconds the token endpoint waits before answering a refresh")
    dead = _knob("dead", "accept every connection and never answer")
    gateway_fault = _knob("gateway_fault", 'None, "html", "5xx" or "wrong_shape" for every gateway route')
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
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._knobs: dict[str, Any] = {
            "access_lifetime": DEFAULT_ACCESS_LIFETIME,
            "refresh_lifetime": None,
            "refresh_fails": False,
            "rotate_refresh": False,
            "policy_ok": True,
            "refresh_delay": 0.0,
            "dead": False,
            "gateway_fault": None,
            "clock_offset": 0.0,
        }
        self.clusters = gateway_standin.make_clusters(clusters)
        self.maintenance: dict[str, str] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._access: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._log: list[LoggedRequest] = []
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
        server = ThreadingHTTPServer(self._address, _handler_for(self))
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
            token = self._issue(self._resource_server_of(scope), scope, client_id, refresh, lifetime)
        return {
            "access_token": token["access_token"],
            "refresh_token": token.get("refresh_token"),
            "expires_at_seconds": int(time.time() + token["expires_in"]),
            "scope": scope,
            "resource_server": token["resource_server"],
            "token_type": "Bearer",
            "identity_id": self.identity["sub"],
        }

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

    def grants(self, grant_type: str) -> int:
        """How many token requests of ``grant_type`` arrived (answered or refused)."""
        return sum(1 for r in self.requests if r.grant_type == grant_type)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the stand-in is stopping meanwhile."""
        return self._stopping.wait(seconds)

    # -- token state (callers hold the lock) --------------------------------------------------

    @staticmethod
    def _resource_server_of(scope: str) -> str | None:
        if scope in OPENID_SCOPES or scope.startswith("urn:globus:auth:scope:auth.globus.org:"):
            return AUTH_RESOURCE_SERVER
        match = re.fullmatch(r"https://auth\.globus\.org/scopes/([^/\s]+)/[^\s]+", scope)
        match = match or re.fullmatch(r"urn:globus:auth:scope:([^:\s]+):[^\s]+", scope)
        return match.group(1) if match else None

    def _issue(
        self, rs: str | None, scope: str, client_id: str, refresh: bool, lifetime: float | None = None
    ) -> dict[str, Any]:
        lifetime = self._knobs["access_lifetime"] if lifetime is None else lifetime
        access = secrets.token_urlsafe(32)
        self._access[access] = {
            "resource_server": rs, "scope": scope, "client_id": client_id,
            "expires_at": self.now() + lifetime, "revoked": False, "refresh": None,
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

    def _id_token(self, client_id: str) -> str:
        import jwt

        now = int(self.now())
        claims = {
            **self.identity, "iss": (self.url or "").rstrip("/"), "aud": client_id,
            "iat": now, "exp": now + DEFAULT_ACCESS_LIFETIME, "last_authentication": now,
        }
        return jwt.encode(claims, _signing_key(), algorithm="RS256", headers={"kid": "standin"})

    def _jwks(self) -> dict[str, Any]:
        import jwt

        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_signing_key().public_key()))
        return {"keys": [{**jwk, "alg": "RS256", "use": "sig", "kid": "standin"}]}

    # -- Globus Auth routes -------------------------------------------------------------------

    def _route_auth(self, h: _Handler, method: str, path: str, query: dict[str, str]) -> int:
        if (method, path) == ("GET", "/.well-known/openid-configuration"):
            base = self.url or ""
            return h.send_json(200, {
                "issuer": base.rstrip("/"), "authorization_endpoint": base + "v2/oauth2/authorize",
                "token_endpoint": base + "v2/oauth2/token", "revocation_endpoint": base + "v2/oauth2/token/revoke",
                "userinfo_endpoint": base + "v2/oauth2/userinfo", "jwks_uri": base + "jwk.json",
                "response_types_supported": ["code", "token", "token id_token", "id_token"],
                "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": list(OPENID_SCOPES),
                "subject_types_supported": ["public"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
            })
        if (method, path) == ("GET", "/jwk.json"):
            return h.send_json(200, self._jwks())
        if (method, path) == ("GET", "/v2/oauth2/authorize"):
            return self._authorize(h, query)
        if (method, path) == ("GET", "/v2/web/auth-code"):
            code = html.escape(query.get("code", ""))
            return h.send_html(200, f'<html><body><h1>Native App Authorization Code</h1>'
                                    f'<p>Copy this code:</p><code id="auth-code">{code}</code></body></html>')
        if (method, path) == ("POST", "/v2/oauth2/token"):
            return self._token(h, h.form())
        if (method, path) == ("POST", "/v2/oauth2/token/revoke"):
            return self._revoke(h, h.form())
        if (method, path) == ("POST", "/v2/oauth2/token/introspect"):
            return self._introspect(h, h.form())
        if (method, path) == ("GET", "/v2/oauth2/userinfo"):
            token = h.bearer()
            if token is None or self.token_status(token) != "valid":
                return h.send_json(401, {"error": "invalid_token"})
            return h.send_json(200, dict(self.identity))
        return h.send_json(404, {"code": "NotFound", "message": f"no route for {method} {path}"})

    def _authorize(self, h: _Handler, query: dict[str, str]) -> int:
        with self._lock:
            self._authorizations.append(dict(query))
        scopes = query.get("scope", "").split()
        problems = [
            (query.get("client_id") not in self.client_ids, "unknown client_id"),
            (query.get("response_type") != "code", "response_type must be code"),
            (not query.get("redirect_uri"), "no redirect_uri"),
            (query.get("code_challenge_method") != "S256" or not query.get("code_challenge"), "PKCE S256 required"),
            (not scopes or any(self._resource_server_of(s) is None for s in scopes), "invalid scope"),
        ]
        for failed, why in problems:
            if failed:
                return h.send_html(400, f"<html><body><h1>Error</h1><p>{html.escape(why)}</p></body></html>")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = {
                "client_id": query["client_id"], "redirect_uri": query["redirect_uri"],
                "challenge": query["code_challenge"], "scopes": scopes,
                "offline": query.get("access_type") == "offline", "expires_at": self.now() + CODE_LIFETIME,
            }
        redirect = query["redirect_uri"]
        redirect += ("&" if "?" in redirect else "?") + urllib.parse.urlencode(
            {"code": code, "state": query.get("state", "")})
        return h.send_redirect(redirect)

    def _token(self, h: _Handler, form: dict[str, str]) -> int:
        grant = form.get("grant_type", "")
        h.grant_type = grant
        client_id = form.get("client_id", "")
        if client_id not in self.client_ids:
            return h.send_json(401, {"error": "invalid_client"})
        if grant == "authorization_code":
            return self._exchange_code(h, form, client_id)
        if grant == "refresh_token":
            if self.refresh_delay and self.wait(self.refresh_delay):
                return 0  # stopping: answer nothing
            with self._lock:
                refresh = form.get("refresh_token", "")
                info = self._refresh.get(refresh)
                expired = info is not None and info["expires_at"] is not None and info["expires_at"] <= self.now()
                if (self._knobs["refresh_fails"] or info is None or info["revoked"] or expired
                        or info["client_id"] != client_id):
                    return h.send_json(400, {"error": "invalid_grant"})
                token = self._issue(info["resource_server"], info["scope"], client_id, refresh=False)
                if self._knobs["rotate_refresh"]:
                    info["revoked"] = True
                    refresh = self._new_refresh(info["resource_server"], info["scope"], client_id)
                self._access[token["access_token"]]["refresh"] = refresh
            return h.send_json(200, {**token, "refresh_token": refresh, "other_tokens": []})
        return h.send_json(400, {"error": "unsupported_grant_type"})

    def _exchange_code(self, h: _Handler, form: dict[str, str], client_id: str) -> int:
        with self._lock:
            info = self._codes.pop(form.get("code", ""), None)  # a code is good for one exchange only
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if (info is None or info["expires_at"] <= self.now() or info["client_id"] != client_id
                    or info["redirect_uri"] != form.get("redirect_uri") or info["challenge"] != challenge):
                return h.send_json(400, {"error": "invalid_grant"})
            by_rs: dict[str, list[str]] = {}
            for scope in info["scopes"]:
                by_rs.setdefault(self._resource_server_of(scope) or "", []).append(scope)
            tokens = [self._issue(rs, " ".join(s), client_id, info["offline"]) for rs, s in by_rs.items()]
        tokens.sort(key=lambda t: t["resource_server"] != AUTH_RESOURCE_SERVER)  # Globus puts auth's on top
        top = {**tokens[0], "other_tokens": [{**t, "other_tokens": []} for t in tokens[1:]]}
        if "openid" in info["scopes"]:
            top["id_token"] = self._id_token(client_id)
        return h.send_json(200, top)

    def _revoke(self, h: _Handler, form: dict[str, str]) -> int:
        token = form.get("token", "")
        with self._lock:
            if token in self._refresh:
                self._refresh[token]["revoked"] = True
                # Revoking a refresh token ends the access tokens it produced, as Globus does.
                for record in self._access.values():
                    if record["refresh"] == token:
                        record["revoked"] = True
            elif token in self._access:
                self._access[token]["revoked"] = True
        return h.send_json(200, {"active": False})

    def _introspect(self, h: _Handler, form: dict[str, str]) -> int:
        token = form.get("token", "")
        if self.token_status(token) != "valid":
            return h.send_json(200, {"active": False})
        with self._lock:
            record = dict(self._access[token])
        return h.send_json(200, {
            "active": True, "scope": record["scope"], "client_id": record["client_id"],
            "sub": self.identity["sub"], "username": self.identity["preferred_username"],
            "name": self.identity["name"], "email": self.identity["email"], "token_type": "Bearer",
            "aud": [record["resource_server"]], "iss": (self.url or "").rstrip("/"),
            "exp": int(record["expires_at"]), "iat": int(record["expires_at"] - DEFAULT_ACCESS_LIFETIME),
            "policy_evaluations": {},
        })


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
    grant_type: str | None = None
    bearer_ok: bool | None = None

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.settimeout(10)
                self.connection.do_handshake()
                self.connection.settimeout(None)
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
        if split.path.startswith("/resource_server/"):
            status = gateway_standin.route(self.standin, self, method, split.path[len("/resource_server/"):], query)
        else:
            status = self.standin._route_auth(self, method, split.path, query)
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

    def bearer(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme == "Bearer" and token.strip() else None

    # -- response helpers (each returns the status, for the log) ------------------------------

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}) -> int:
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
