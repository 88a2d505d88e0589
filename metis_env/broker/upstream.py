"""The proxy's side toward the endpoints: the current real key of each (``KeyCache``), one request
upstream (``send``), and the ``Retry-After`` of an answer. The pace requests go at is pacing.py's.
Standard library only.
"""

from __future__ import annotations

import datetime
import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from .. import credentials
from ..text import warn

UPSTREAM_TIMEOUT = 900.0  # seconds for connect and for each read: a long generation may be slow to start
MIN_RECHECK = 30.0  # at most this many seconds between look-ups of a token inside the refresh margin


class KeyCache:
    """The current real key of each endpoint, from ``credentials.select_with_key``; one look-up at a time.

    A gateway token is asked for again when ``export`` would refresh it (``credentials.refresh_margin``
    before expiry: ``token_refresh_margin``, or ``min_ttl`` when that is more); ``select_with_key``
    refreshes it under the store's lock, so brokers on several nodes sharing one home make one refresh
    per expiry between them.
    """

    def __init__(self, store, settings) -> None:
        self._store = store
        self._settings = settings
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float | None]] = {}
        self._warned: set[str] = set()
        self._seen: list[str] = []
        self.refreshes = 0  # how often a look-up gave a key other than the one cached

    def __repr__(self) -> str:
        return f"KeyCache(endpoints={sorted(self._cache)!r})"

    def prime(self, selection, key: str) -> None:
        with self._lock:
            self._remember(selection, key)

    def known_keys(self) -> list[str]:
        """Every real key this cache has held: what must never be relayed to a client."""
        with self._lock:
            return list(self._seen)

    def get(self, endpoint_id: str, refused: str | None = None) -> str:
        """The key to send to ``endpoint_id``; ``refused``: the key the endpoint just answered 401 to."""
        with self._lock:
            cached = self._cache.get(endpoint_id)
            if cached is not None:
                key, recheck_at = cached
                if refused is not None and key != refused:
                    return key  # another request already got a new one
                if refused is None and (recheck_at is None or time.time() < recheck_at):
                    return key
            selection, key = credentials.select_with_key(self._store, endpoint_id, None, self._settings)
            for warning in selection.warnings:
                self._warn_once(warning)
            if cached is not None and cached[0] != key:
                self.refreshes += 1
            self._remember(selection, key)
            return key

    @property
    def min_ttl(self) -> float | None:
        """Seconds of token life below which a token is refreshed, if more than ``token_refresh_margin``."""
        return self._settings.min_ttl

    def want_min_ttl(self, seconds: float) -> None:
        """A client asked for ``--min-ttl seconds``: from now on refresh when less than that is left
        (export's rule), and look the keys up again at their next request."""
        from ..settings import with_overrides

        with self._lock:
            if seconds <= (self._settings.min_ttl or 0.0):
                return
            self._settings = with_overrides(self._settings, min_ttl=seconds)
            self._cache = {endpoint: (key, 0.0 if recheck_at is not None else None)
                           for endpoint, (key, recheck_at) in self._cache.items()}

    def warn_once(self, message: str) -> None:
        with self._lock:
            self._warn_once(message)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warn(message)

    def _remember(self, selection, key: str) -> None:
        expires = parse_expiry(getattr(selection, "expires_at", None))
        now = time.time()
        lead = 0.0 if expires is None else credentials.refresh_margin(self._settings, credentials.read_state(self._store))
        if expires is None:
            recheck_at = None  # an endpoint file's key: until the endpoint refuses it
        elif expires - lead > now:
            recheck_at = expires - lead  # when export would refresh it
        else:  # already inside the margin (a refresh failed, or tokens live less than the margin)
            recheck_at = now + min(MIN_RECHECK, max(1.0, (expires - now) / 2))
        self._cache[selection.endpoint.id] = (key, recheck_at)
        if key not in self._seen:
            self._seen.append(key)


def parse_expiry(value: str | None) -> float | None:
    """ISO 8601 (``2026-12-02T03:00:00+00:00`` or ``...Z``) -> seconds since the epoch; None if absent."""
    if not value:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return time.time()  # unreadable: ask again at every request rather than trust it
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def retry_after(headers) -> float | None:
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None


# --- one request ------------------------------------------------------------------------------------


class Unreachable(Exception):
    """No HTTP answer from the endpoint; the message names the host, never the key."""


class Buffered:
    """An answer read into memory (and its connection closed), with the interface the relay uses."""

    def __init__(self, answer) -> None:
        self.status, self.reason, self.headers = answer.status, answer.reason, answer.headers
        try:
            self._body = answer.read()
        except (OSError, http.client.HTTPException):
            self._body = b""
        finally:
            answer.close()

    def peek(self) -> bytes:
        return self._body[:4000]

    def read1(self, _size: int) -> bytes:
        body, self._body = self._body, b""
        return body

    def read(self) -> bytes:
        return self.read1(0)

    def close(self) -> None:
        pass


_OPENERS: dict[tuple[str, str], object] = {}
_OPENERS_LOCK = threading.Lock()


def _opener_for(scheme: str, host: str):
    """check's opener (verified TLS, proxy variables, no redirects), one per host: loading the CA
    bundle for each request would cost tens of milliseconds."""
    from ..http import verified_opener

    with _OPENERS_LOCK:
        if (scheme, host) not in _OPENERS:
            _OPENERS[(scheme, host)] = verified_opener(scheme, host)[0]  # SSL_CERT_FILE read here
        return _OPENERS[(scheme, host)]


def send(url: str, method: str, body: bytes | None, headers: Mapping[str, str], key: str):
    """One request upstream -> the open answer (any status), with ``status``, ``reason``, ``headers``,
    ``read1``, ``read`` and ``close``; Unreachable when there is no answer."""
    parts = urlsplit(url)
    opener = _opener_for(parts.scheme, parts.hostname or "")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    request.add_header("Authorization", f"Bearer {key}")
    try:
        return opener.open(request, timeout=UPSTREAM_TIMEOUT)  # an http.client.HTTPResponse
    except urllib.error.HTTPError as exc:
        return _HTTPErrorAnswer(exc)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        failure = f"cannot reach {parts.hostname}:{parts.port or ''} ({type(reason).__name__}: {getattr(reason, 'strerror', None) or reason})"
    raise Unreachable(failure.replace(key, "<key>"))


class _HTTPErrorAnswer:
    """urllib's HTTPError for a 4xx/5xx answer, seen as an answer to relay."""

    def __init__(self, exc: urllib.error.HTTPError) -> None:
        self._exc = exc
        self.status = exc.code
        self.reason = str(exc.reason)
        self.headers = exc.headers

    def read1(self, size: int) -> bytes:
        fp = self._exc.fp
        if fp is None:
            return b""
        reader = getattr(fp, "read1", None)
        return reader(size) if reader else fp.read(size)

    def read(self) -> bytes:
        return self._exc.read()

    def close(self) -> None:
        self._exc.close()
