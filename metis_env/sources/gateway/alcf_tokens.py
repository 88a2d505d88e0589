"""Read, never write, the token cache of ALCF's ``alcf-tokens`` (globus-sdk's JSON format 2.0).

alcf-tokens rewrites the file in place with no lock and no rename, so a reader can meet it empty or
cut short: such a read is retried a few times, never taken for "logged out". A symlink, a FIFO or a
file of another user is refused in one line (files.read_private_text). Standard library only.

Example::

    data, identity = read_cache(cache_path())    # the inference token data, the identity id
"""

from __future__ import annotations

import json
import os
import time

from ...errors import LoginRequiredError, StoreError
from ...files import read_private_text
from .constants import ALCF_TOKENS_CLIENT_ID, INFERENCE_RESOURCE_SERVER

ATTEMPTS = 8
PAUSE = 0.05
MAX_BYTES = 1024 * 1024


def cache_path(environ: dict | None = None) -> str:
    """``~/.globus/app/<alcf-tokens' client id>/alcf_tokens/tokens.json``."""
    environ = dict(os.environ) if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".globus", "app", ALCF_TOKENS_CLIENT_ID, "alcf_tokens", "tokens.json")


def read_cache(path: str) -> tuple[dict, str]:
    """The inference resource server's entry (``access_token``, ``refresh_token``,
    ``expires_at_seconds``, ``scope``) and its identity id."""
    payload = None
    for attempt in range(ATTEMPTS):
        text = _read_once(path)
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            break
        time.sleep(PAUSE * (attempt + 1))  # alcf-tokens may be halfway through rewriting it
    if not isinstance(payload, dict):
        raise StoreError(f"{path} is empty or not JSON (read {ATTEMPTS} times); run `alcf-tokens login` again, or `metis-env login`")
    namespaces = payload.get("data")
    entry = namespaces.get("DEFAULT", {}).get(INFERENCE_RESOURCE_SERVER) if isinstance(namespaces, dict) else None
    if not isinstance(entry, dict):
        raise LoginRequiredError(f"{path} holds no token for the ALCF inference service; run `metis-env login`")
    access, refresh, expires = entry.get("access_token"), entry.get("refresh_token"), entry.get("expires_at_seconds")
    if not isinstance(access, str) or not access or not isinstance(expires, (int, float)):
        raise StoreError(f"{path}: the inference entry has no access token or expiry; run `metis-env login`")
    data = {
        "access_token": access,
        "refresh_token": refresh if isinstance(refresh, str) and refresh else None,
        "expires_at_seconds": int(expires),
        "scope": str(entry.get("scope", "")),
        "resource_server": INFERENCE_RESOURCE_SERVER,
    }
    return data, str(entry.get("identity_id") or "")


def _read_once(path: str) -> str:
    # The project's one private reader: O_NONBLOCK|O_NOFOLLOW, so a FIFO or a symlink planted there
    # is refused at once instead of hanging `login` in open().
    text = read_private_text(path, foreign=True, max_bytes=MAX_BYTES)
    if text is None:
        raise LoginRequiredError(f"alcf-tokens is not logged in here ({path} does not exist); run `metis-env login`")
    return text
