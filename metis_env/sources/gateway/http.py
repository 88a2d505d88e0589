"""The gateway's HTTP client: one request function, one classifier of answers, and discovery.

Standard library only (urllib), shared by login, ``sync --gateway``, ``status``, ``check`` and the
proxy. TLS is always verified, against the CAs loaded when each request starts, so ``SSL_CERT_FILE``
and ``SSL_CERT_DIR`` are honoured (the opener, the scrubber and the failure ladder are the HTTP floor's,
``metis_env/http.py``). Redirects are
refused: a bearer token goes only to the URL asked for. The whole call, connect to last byte, is
bounded by one timeout.

The token never appears in an answer's text, a message or an exception: server words are scrubbed
of it and no exception is chained.

Example::

    answer = request("GET", gateway_url + "whoami", token, timeout=10)
    who = expect_json(answer, "whoami")          # dict, or the MetisEnvError that fits
    endpoints = list_endpoints(gateway_url, token)
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
from collections import namedtuple
from urllib.parse import urlsplit

from ...errors import (
    ConnectionFailedError,
    GatewayError,
    IdentityNotAuthorizedError,
    LoginRequiredError,
    MetisEnvError,
    NotLiveError,
    ReauthRequiredError,
)
from ...http import call_within  # noqa: F401  (the gateway's deadline is the HTTP floor's)
from ...http import FAILED, HEADER_SAFE, Scrubber, TransportError, Wording, describe_failure, json_request, verified_opener

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
USER_AGENT = "metis-env"
LOGOUT_URL = "https://app.globus.org/logout"
REAUTH_MESSAGE = (
    "the gateway's policy asks for a fresh Globus login (high-assurance re-authentication, about every 30 days); "
    f"log out at {LOGOUT_URL}, then run `metis-env login --force`"
)
POLICY_WORDS = "permission denied from internal policies"
# FIRST's auth.py: the session's identity provider is not one the gateway authorises ("Error: Permission
# denied. Must authenticate with {domains}. Currently authenticated as {user}. ...") or check_permission's
# "Permission denied due to IdP domain restrictions.". A refresh cannot cure either.
IDP_WORDS = ("permission denied. must authenticate with", "permission denied due to idp domain restrictions")
NOT_LIVE_CODES = ("cluster_under_maintenance",)

# A cluster, framework or path segment from list-endpoints: what an endpoint id may be.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# A model name reaches shells (quoted) and comma-joined lists (`get models`): no controls, no commas.
_BAD_MODEL = re.compile(r"[\x00-\x1f\x7f-\x9f,]|^\s|\s$")
MAX_NAME = 200
MAX_ROUTES = 32
# A route from list-endpoints: "/v1/chat/completions".
_ROUTE = re.compile(r"(/[A-Za-z0-9_.-]+){1,6}\Z")
# Every export reads every stored record: a hostile listing must not make them all slow (88,000
# clusters took export from 0.05 s to 3 s). ALCF serves 4 clusters and a few dozen models each.
MAX_CLUSTERS = 64
MAX_MODELS = 256


class Answer(namedtuple("Answer", "url status body content_type location")):
    """One HTTP answer: ``url`` (as shown, scrubbed), ``status: int``, ``body: bytes``, ``content_type``,
    ``location`` (a redirect's target, scrubbed). Holds no token."""

    __slots__ = ()

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error_fields(self) -> tuple[str, str]:
        """(code, message) of a gateway ``{"error": {"code", "message"}}`` body (or an OpenAI or
        django-ninja ``{"detail": ...}`` one); empty strings when there are none."""
        payload = self.json()
        if not isinstance(payload, dict):
            return "", ""
        error = payload.get("error", payload.get("detail"))
        code, message = "", ""
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), str) else ""
            message = error.get("message") if isinstance(error.get("message"), str) else ""
        elif isinstance(error, str):
            message = error
        if not message and isinstance(payload.get("message"), str):
            message = payload["message"]
        return _clean(code, 60), _clean(message, 200)

    def describe_body(self) -> str:
        kind = self.content_type or "no Content-Type"
        if self.json() is None:
            return f"not JSON: {kind}, {len(self.body)} bytes"
        return f"JSON, {len(self.body)} bytes"


class GatewayEndpoint(namedtuple("GatewayEndpoint", "id base_url models framework routes capabilities", defaults=((), None))):
    """One cluster from list-endpoints: ``id`` (the cluster name), ``base_url`` (ends in ``/v1``, no
    slash, as ALCF's docs write it), ``models: tuple[str, ...]`` in the gateway's order, ``framework``
    (``api``, ``vllm``), ``routes``: the paths its framework serves (``("/v1/chat/completions",)``),
    ``capabilities``: model -> what ``{cluster}/models`` said of it, None where it was not asked
    (``sources/gateway/models.py`` fills it in)."""

    __slots__ = ()


# --- one request -----------------------------------------------------------------------------------


def request(method: str, url: str, token: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Answer:
    """Send one request with ``Authorization: Bearer <token>``; every HTTP answer is returned.

    Raises ConnectionFailedError (no answer: refused, DNS, TLS, timeout) in one line, and GatewayError
    for a token an HTTP header cannot carry. ``timeout`` bounds the whole call.
    """
    scrub = Scrubber(token, mask="<token>", printable=True)
    shown = scrub(url, 160)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise GatewayError(f"{shown!r} is not an http(s) URL; check the gateway_url setting")
    if not HEADER_SAFE.match(token):
        raise LoginRequiredError("the stored Globus token is empty or damaged; run `metis-env login`")
    opener, proxy = verified_opener(parts.scheme, host)
    where = scrub(f"{host}:{parts.port}" if parts.port else host, 80)
    req = json_request(url, method, token, body, USER_AGENT)
    deadline = time.monotonic() + timeout

    def exchange() -> tuple[int, Any, bytes]:
        try:
            with opener.open(req, timeout=timeout) as response:
                return response.status, response.headers, _read_bounded(response, deadline)
        except urllib.error.HTTPError as exc:
            try:
                payload = _read_bounded(exc, deadline)
            except (OSError, http.client.HTTPException):
                payload = b""
            finally:
                exc.close()
            return exc.code, exc.headers, payload

    failure: MetisEnvError | None = None
    try:
        # The body's reads are bounded by the deadline, but connect and the status line and headers
        # are read by http.client with a per-read timeout: a server dripping its headers is cut here.
        status, headers, payload = call_within(timeout, exchange, lambda: TimeoutError("no answer in time"))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line, worded below
        failure = _connection_failure(describe_failure(exc, where, timeout, scrub, via=" through a proxy" if proxy else "", wording=WORDING))
    if failure is not None:
        raise failure  # outside the except block: nothing the token could hide in is chained
    if not 200 <= status < 300 and token:
        payload = payload.replace(token.encode(), b"<token>")  # an error body is for messages only
    return Answer(
        url=shown,
        status=status,
        body=payload,
        content_type=scrub((headers.get("Content-Type") or "").split(";")[0], 60),
        location=scrub(headers.get("Location") or "", 160),
    )


def _read_bounded(response: Any, deadline: float) -> bytes:
    """The body, at most MAX_RESPONSE_BYTES, each wait bounded by the time left to the deadline."""
    if not isinstance(response, http.client.HTTPResponse):  # an HTTPError wraps one
        response = getattr(response, "fp", response)
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    read = getattr(response, "read1", response.read)  # read() would wait for the whole length
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive in time")
        if getattr(response, "isclosed", lambda: False)():
            break  # the whole body is in: http.client closed the socket
        if sock is not None:
            sock.settimeout(left)
        chunk = read(min(65536, MAX_RESPONSE_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


WORDING = Wording("; check your network and try again", "is the gateway up and gateway_url right?", False)
"""How the HTTP floor's failure ladder words the gateway's failures (``http.describe_failure``)."""


def _connection_failure(failure: TransportError) -> MetisEnvError:
    """No answer from the gateway: the connection failed, or (FAILED) the gateway answered nonsense."""
    return (GatewayError if failure.status == FAILED else ConnectionFailedError)(failure.message)


# --- what an answer means --------------------------------------------------------------------------


def classify(answer: Answer, what: str) -> MetisEnvError | None:
    """The error an answer means, or None for a 2xx. ``what`` names the request in the message
    (``list-endpoints``). Callers that word things differently (check, status) map these again."""
    status = answer.status
    if 200 <= status < 300:
        return None
    code, message = answer.error_fields()
    detail = f": {message}" if message else ""
    if status == 401:
        return refusal_401(answer, what)
    if status == 503 and (code in NOT_LIVE_CODES or "not currently live" in message.lower() or "not live" in message.lower()):
        return NotLiveError(f"{what}: {message or code} (HTTP 503); see `metis-env status`")
    if 300 <= status < 400:
        target = f" to {answer.location}" if answer.location else ""
        return GatewayError(f"{answer.url} redirected{target} (HTTP {status}), not followed; check the gateway_url setting")
    return GatewayError(f"{answer.url} answered HTTP {status}{detail} ({answer.describe_body()})")


def refusal_401(answer: Answer, what: str) -> MetisEnvError:
    """What a gateway 401 means: the policy's re-authentication (19), an identity provider the
    gateway does not accept (24), or a token it does not take (18), with the gateway's words kept
    whole enough that its advice survives."""
    body = answer.body[:4000].decode("utf-8", "replace")
    lowered = body.lower()
    if POLICY_WORDS in lowered:
        return ReauthRequiredError(REAUTH_MESSAGE)
    if any(words in lowered for words in IDP_WORDS):
        return IdentityNotAuthorizedError(idp_refusal(_full_message(answer) or body))
    message = _full_message(answer)
    detail = f": {_clean(message, 400)}" if message else ""
    return LoginRequiredError(f"the gateway refused the Globus token ({what}: HTTP 401{detail}); run `metis-env login`")


def idp_refusal(message: str) -> str:
    """FIRST's unauthorised-IdP message -> one line of advice, naming who was refused and what is accepted."""
    accepted = re.search(r"must authenticate with (.+?)\.(?: |$)", message, re.IGNORECASE)
    current = re.search(r"currently authenticated as (.+?)\.(?: if |$| )", message, re.IGNORECASE)
    who = f" ({_clean(current.group(1), 160)})" if current else ""
    takes = f"; it accepts {_clean(accepted.group(1), 120)}" if accepted else ""
    return (
        f"the gateway does not accept the identity provider of your Globus login{who}{takes}: log out at {LOGOUT_URL}, "
        "then run `metis-env login --force` and log in with an ALCF or Argonne identity"
    )


def _full_message(answer: Answer) -> str:
    payload = answer.json()
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error", payload.get("detail"))
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str):
        message = payload.get("message") if isinstance(payload.get("message"), str) else ""
    return _clean(message, 2000)


def expect_json(answer: Answer, what: str) -> Any:
    """The JSON object of a 2xx answer; otherwise raise the error ``classify`` gives."""
    error = classify(answer, what)
    if error is not None:
        raise error
    payload = answer.json()
    if not isinstance(payload, dict):
        raise GatewayError(f"{answer.url} answered {answer.status} but not with a JSON object ({answer.describe_body()})")
    return payload


def get_json(url: str, token: str, what: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    return expect_json(request("GET", url, token, timeout=timeout), what)


# --- discovery -------------------------------------------------------------------------------------


def list_endpoints(gateway_url: str, token: str, timeout: float = DEFAULT_TIMEOUT) -> list[GatewayEndpoint]:
    """``GET {gateway_url}list-endpoints`` -> one record per cluster that serves models, by name."""
    base = gateway_url if gateway_url.endswith("/") else gateway_url + "/"
    answer = request("GET", base + "list-endpoints", token, timeout=timeout)
    return parse_list_endpoints(expect_json(answer, "list-endpoints"), base, answer.url)


def parse_list_endpoints(payload: Any, gateway_url: str, shown_url: str = "list-endpoints") -> list[GatewayEndpoint]:
    """The gateway's ``{"clusters": {name: {"base_url", "frameworks": {fw: {"models": [...]}}}}}``
    -> records; any name that could not be an endpoint id or a model name refuses the whole answer.

    A cluster's base_url is taken relative to gateway_url (``/resource_server/metis`` under
    ``.../resource_server/`` -> ``metis``); its first framework with models is the endpoint's, and
    that framework's ``endpoints`` are the routes it serves.
    """
    clusters = payload.get("clusters") if isinstance(payload, dict) else None
    if not isinstance(clusters, dict):
        raise GatewayError(f"{shown_url} answered JSON without a \"clusters\" object; is gateway_url right?")
    base = gateway_url if gateway_url.endswith("/") else gateway_url + "/"
    prefix = urlsplit(base).path
    records = []
    crowded: list[str] = []
    for name, cluster in clusters.items():
        _check_name(name, "cluster name", shown_url)
        if name.isdigit():
            raise GatewayError(f"{shown_url}: cluster name {name!r} is a number; numbers are the endpoint files' ids")
        if not isinstance(cluster, dict) or not isinstance(cluster.get("frameworks", {}), dict):
            raise GatewayError(f"{shown_url}: the entry of cluster {name} is not of the expected shape")
        path = cluster.get("base_url", name)
        if not isinstance(path, str):
            raise GatewayError(f"{shown_url}: the base_url of cluster {name} is not a string")
        relative = path[len(prefix):] if path.startswith(prefix) else path.lstrip("/")
        segments = [s for s in relative.strip("/").split("/") if s] or [name]
        for segment in segments:
            _check_name(segment, f"base_url of cluster {name}", shown_url)
        for framework, detail in cluster.get("frameworks", {}).items():
            _check_name(framework, f"framework of cluster {name}", shown_url)
            models = detail.get("models") if isinstance(detail, dict) else None
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise GatewayError(f"{shown_url}: the models of {name}/{framework} are not a list of names")
            for model in models:
                if not model or len(model) > MAX_NAME or _BAD_MODEL.search(model):
                    raise GatewayError(f"{shown_url}: cluster {name} lists a model name that is not usable ({_clean(model, 60)!r})")
            if len(set(models)) != len(models):
                raise GatewayError(f"{shown_url}: cluster {name} lists a model twice")
            if models:
                if len(models) > MAX_MODELS:
                    crowded.append(name)
                url = base + "/".join(segments) + f"/{framework}/v1"
                routes = _routes(detail.get("endpoints", []), f"{name}/{framework}", shown_url)
                records.append(GatewayEndpoint(name, url, tuple(models[:MAX_MODELS]), framework, routes))
                break
    if crowded:
        more = f" and {len(crowded) - 3} more" if len(crowded) > 3 else ""
        which = f"clusters {', '.join(crowded[:3])}{more} each list" if len(crowded) > 1 else f"cluster {crowded[0]} lists"
        _warn(f"{shown_url}: {which} more than {MAX_MODELS} models; only the first {MAX_MODELS} are kept")
    if len(records) > MAX_CLUSTERS:
        _warn(f"{shown_url} lists {len(records)} clusters with models; only the first {MAX_CLUSTERS} are kept")
    return sorted(records[:MAX_CLUSTERS], key=lambda r: r.id)


def _warn(line: str) -> None:
    import sys

    sys.stderr.write(f"metis-env: warning: {line}\n")


def _routes(value: Any, where: str, shown_url: str) -> tuple[str, ...]:
    """A framework's ``endpoints`` (``["/v1/chat/completions", ...]``) -> the routes, each a plain path."""
    if not isinstance(value, list) or len(value) > MAX_ROUTES or not all(isinstance(r, str) for r in value):
        raise GatewayError(f"{shown_url}: the endpoints of {where} are not a list of paths")
    for path in value:
        if not _ROUTE.match(path) or "/../" in path + "/" or "/./" in path + "/":
            raise GatewayError(f"{shown_url}: {where} lists a route that is not a plain path ({_clean(path, 60)!r}); refusing the whole list")
    return tuple(dict.fromkeys(value))


def _check_name(value: Any, what: str, shown_url: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.match(value) or value in (".", ".."):
        shown = _clean(value, 60) if isinstance(value, str) else type(value).__name__
        raise GatewayError(f"{shown_url}: a {what} is not a plain name ({shown!r}); refusing the whole list")


# --- helpers ---------------------------------------------------------------------------------------


_clean = Scrubber("", printable=True)  # a server's words, one printable bounded line
