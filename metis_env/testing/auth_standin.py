"""The Globus Auth half of ``GlobusStandIn``: the routes a native-app login, refresh and revoke use.

What the real globus-sdk calls (``NativeAppAuthClient``, ``UserApp``, the login flow managers, the
id_token decoder): the OpenID configuration and JWKS, ``/v2/oauth2/authorize`` (a 302 to the
``redirect_uri`` with ``code`` and ``state``), the auth-code page native apps redirect to, the token
endpoint (authorization_code with PKCE S256, refresh_token, and a service account's client_credentials
with HTTP Basic client authentication), revoke, introspect and userinfo.
Token state lives in the ``GlobusStandIn``; these functions hold its lock while they change it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

from metis_env.sources.gateway.constants import AUTH_RESOURCE_SERVER

if TYPE_CHECKING:
    from metis_env.testing.globus_standin import GlobusStandIn, _Handler

CODE_LIFETIME = 600  # seconds an authorization code may wait for its exchange
ID_TOKEN_LIFETIME = 172800
OPENID_SCOPES = ("openid", "profile", "email")


@functools.lru_cache(maxsize=1)
def _signing_key() -> Any:
    # One RSA key per process: generating it costs ~50 ms, and nothing depends on its being fresh.
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def resource_server_of(scope: str) -> str | None:
    """The resource server a scope string belongs to, as Globus resolves it; None if unknown."""
    if scope in OPENID_SCOPES or scope.startswith("urn:globus:auth:scope:auth.globus.org:"):
        return AUTH_RESOURCE_SERVER
    match = re.fullmatch(r"https://auth\.globus\.org/scopes/([^/\s]+)/[^\s]+", scope)
    match = match or re.fullmatch(r"urn:globus:auth:scope:([^:\s]+):[^\s]+", scope)
    return match.group(1) if match else None


def _id_token(standin: GlobusStandIn, client_id: str) -> str:
    import jwt

    now = int(standin.now())
    claims = {
        **standin.identity, "iss": (standin.url or "").rstrip("/"), "aud": client_id,
        "iat": now, "exp": now + ID_TOKEN_LIFETIME, "last_authentication": now,
    }
    return jwt.encode(claims, _signing_key(), algorithm="RS256", headers={"kid": "standin"})


def _jwks(standin: GlobusStandIn) -> dict[str, Any]:
    import jwt

    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_signing_key().public_key()))
    return {"keys": [{**jwk, "alg": "RS256", "use": "sig", "kid": "standin"}]}


# -- Globus Auth routes -------------------------------------------------------------------


def route(standin: GlobusStandIn, h: _Handler, method: str, path: str, query: dict[str, str]) -> int:
    if (method, path) == ("GET", "/.well-known/openid-configuration"):
        base = standin.url or ""
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
        return h.send_json(200, _jwks(standin))
    if (method, path) == ("GET", "/v2/oauth2/authorize"):
        return _authorize(standin, h, query)
    if (method, path) == ("GET", "/v2/web/auth-code"):
        code = html.escape(query.get("code", ""))
        return h.send_html(200, f'<html><body><h1>Native App Authorization Code</h1>'
                                f'<p>Copy this code:</p><code id="auth-code">{code}</code></body></html>')
    if (method, path) == ("POST", "/v2/oauth2/token"):
        return _token(standin, h, h.form())
    if (method, path) == ("POST", "/v2/oauth2/token/revoke"):
        return _revoke(standin, h, h.form())
    if (method, path) == ("POST", "/v2/oauth2/token/introspect"):
        return _introspect(standin, h, h.form())
    if (method, path) == ("GET", "/v2/oauth2/userinfo"):
        token = h.bearer()
        h.bearer_ok = None if token is None else standin.token_status(token) == "valid"
        if not h.bearer_ok:
            return h.send_json(401, {"error": "invalid_token"})
        return h.send_json(200, dict(standin.identity))
    return h.send_json(404, {"code": "NotFound", "message": f"no route for {method} {path}"})


def _authorize(standin: GlobusStandIn, h: _Handler, query: dict[str, str]) -> int:
    with standin._lock:
        standin._authorizations.append(dict(query))
    scopes = query.get("scope", "").split()
    problems = [
        (query.get("client_id") not in standin.client_ids, "unknown client_id"),
        (query.get("response_type") != "code", "response_type must be code"),
        (not query.get("redirect_uri"), "no redirect_uri"),
        (query.get("code_challenge_method") != "S256" or not query.get("code_challenge"), "PKCE S256 required"),
        (not scopes or any(resource_server_of(s) is None for s in scopes), "invalid scope"),
    ]
    for failed, why in problems:
        if failed:
            return h.send_html(400, f"<html><body><h1>Error</h1><p>{html.escape(why)}</p></body></html>")
    code = secrets.token_urlsafe(24)
    with standin._lock:
        standin._codes[code] = {
            "client_id": query["client_id"], "redirect_uri": query["redirect_uri"],
            "challenge": query["code_challenge"], "scopes": scopes,
            "offline": query.get("access_type") == "offline", "expires_at": standin.now() + CODE_LIFETIME,
        }
    redirect = query["redirect_uri"]
    redirect += ("&" if "?" in redirect else "?") + urllib.parse.urlencode(
        {"code": code, "state": query.get("state", "")})
    return h.send_redirect(redirect)


def _token(standin: GlobusStandIn, h: _Handler, form: dict[str, str]) -> int:
    grant = form.get("grant_type", "")
    h.grant_type = grant
    basic = h.basic_auth()  # a confidential client (ConfidentialAppAuthClient: HTTP Basic, id and secret)
    if basic is not None:
        client_id = basic[0]
        with standin._lock:
            known = standin.service_accounts.get(client_id)
        if known is None or not secrets.compare_digest(known.encode(), basic[1].encode()):
            return h.send_json(401, {"error": "invalid_client"})
    else:
        client_id = form.get("client_id", "")
        if client_id not in standin.client_ids:
            return h.send_json(401, {"error": "invalid_client"})
    if grant == "client_credentials":
        if basic is None:
            return h.send_json(401, {"error": "invalid_client"})
        return _client_credentials(standin, h, form, client_id)
    if grant == "authorization_code":
        return _exchange_code(standin, h, form, client_id)
    if grant == "refresh_token":
        if standin.refresh_delay and standin.wait(standin.refresh_delay):
            return 0  # stopping: answer nothing
        with standin._lock:
            refresh = form.get("refresh_token", "")
            info = standin._refresh.get(refresh)
            expired = info is not None and info["expires_at"] is not None and info["expires_at"] <= standin.now()
            if (standin._knobs["refresh_fails"] or info is None or info["revoked"] or expired
                    or info["client_id"] != client_id):
                return h.send_json(400, {"error": "invalid_grant"})
            token = standin._issue(info["resource_server"], info["scope"], client_id, refresh=False)
            if standin._knobs["rotate_refresh"]:
                info["revoked"] = True
                refresh = standin._new_refresh(info["resource_server"], info["scope"], client_id)
            standin._access[token["access_token"]]["refresh"] = refresh
        return h.send_json(200, {**token, "refresh_token": refresh, "other_tokens": []})
    return h.send_json(400, {"error": "unsupported_grant_type"})


def _client_credentials(standin: GlobusStandIn, h: _Handler, form: dict[str, str], client_id: str) -> int:
    """What Globus answers a confidential client's client-credentials grant: a token per resource
    server asked for, the first on top and the others in ``other_tokens``, never a refresh token."""
    scopes = form.get("scope", "").split()
    if not scopes or any(resource_server_of(s) is None for s in scopes):
        return h.send_json(400, {"error": "invalid_scope"})
    by_rs: dict[str, list[str]] = {}
    for scope in scopes:
        by_rs.setdefault(resource_server_of(scope) or "", []).append(scope)
    with standin._lock:
        tokens = [standin._issue(rs, " ".join(s), client_id, refresh=False) for rs, s in by_rs.items()]
    return h.send_json(200, {**tokens[0], "other_tokens": [{**t, "other_tokens": []} for t in tokens[1:]]})


def _exchange_code(standin: GlobusStandIn, h: _Handler, form: dict[str, str], client_id: str) -> int:
    with standin._lock:
        info = standin._codes.pop(form.get("code", ""), None)  # a code is good for one exchange only
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if (info is None or info["expires_at"] <= standin.now() or info["client_id"] != client_id
                or info["redirect_uri"] != form.get("redirect_uri") or info["challenge"] != challenge):
            return h.send_json(400, {"error": "invalid_grant"})
        by_rs: dict[str, list[str]] = {}
        for scope in info["scopes"]:
            by_rs.setdefault(resource_server_of(scope) or "", []).append(scope)
        tokens = [standin._issue(rs, " ".join(s), client_id, info["offline"]) for rs, s in by_rs.items()]
    tokens.sort(key=lambda t: t["resource_server"] != AUTH_RESOURCE_SERVER)  # Globus puts auth's on top
    top = {**tokens[0], "other_tokens": [{**t, "other_tokens": []} for t in tokens[1:]]}
    if "openid" in info["scopes"]:
        top["id_token"] = _id_token(standin, client_id)
    return h.send_json(200, top)


def _revoke(standin: GlobusStandIn, h: _Handler, form: dict[str, str]) -> int:
    token = form.get("token", "")
    with standin._lock:
        if token in standin._refresh:
            standin._refresh[token]["revoked"] = True
            # Revoking a refresh token ends the access tokens it produced, as Globus does.
            for record in standin._access.values():
                if record["refresh"] == token:
                    record["revoked"] = True
        elif token in standin._access:
            standin._access[token]["revoked"] = True
    return h.send_json(200, {"active": False})


def _introspect(standin: GlobusStandIn, h: _Handler, form: dict[str, str]) -> int:
    token = form.get("token", "")
    if standin.token_status(token) != "valid":
        return h.send_json(200, {"active": False})
    with standin._lock:
        record = dict(standin._access[token])
    return h.send_json(200, {
        "active": True, "scope": record["scope"], "client_id": record["client_id"],
        "sub": standin.identity["sub"], "username": standin.identity["preferred_username"],
        "name": standin.identity["name"], "email": standin.identity["email"], "token_type": "Bearer",
        "aud": [record["resource_server"]], "iss": (standin.url or "").rstrip("/"),
        "exp": int(record["expires_at"]), "iat": int(record["expires_at"] - ID_TOKEN_LIFETIME),
        "policy_evaluations": {},
    })
