"""known_hosts as OpenSSH reads it: hashed names, patterns, markers; fingerprints as ssh-keygen prints them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass


from ._paramiko import paramiko

@dataclass(frozen=True)
class KnownKey:
    patterns: tuple[str, ...]
    key_type: str
    blob: bytes
    marker: str | None
    where: str


def load_known_hosts(paths: Sequence[str]) -> list[KnownKey]:
    """Every key line of the files that exist, in OpenSSH's format (hashed names, patterns, markers)."""
    keys = []
    for path in paths:
        full = os.path.expanduser(path)
        try:
            with open(full, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = fields.pop(0) if fields[0].startswith("@") else None
            if len(fields) < 3:
                continue
            try:
                blob = base64.b64decode(fields[2], validate=True)
            except ValueError:
                continue
            keys.append(KnownKey(tuple(fields[0].split(",")), fields[1], blob, marker, f"{path}:{number}"))
    return keys


def host_matches(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH's rule: some pattern matches and no negated (``!``) pattern does."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = _hashed_name_matches(pattern, name)
        else:
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
            hit = re.fullmatch(regex, name.lower()) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _hashed_name_matches(entry: str, name: str) -> bool:
    try:
        _, _, salt, digest = entry.split("|")
        expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(expected, base64.b64decode(digest))
    except ValueError:
        return False


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def key_label(key_type: str) -> str:
    """``ssh-ed25519`` -> ``ED25519``, as OpenSSH names key types to people."""
    labels = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}
    return labels.get(key_type, "ECDSA" if key_type.startswith("ecdsa-") else key_type)


def preferred_algorithms(known: Sequence[KnownKey], offered: Sequence[str]) -> tuple[str, ...]:
    """Ask the server for a key type we already know first, as OpenSSH does, so that a known host is
    not mistaken for a new one because it also has a key of another type."""
    first: list[str] = []
    for entry in known:
        names = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if entry.key_type == "ssh-rsa" else (entry.key_type,)
        first += [n for n in names if n in offered and n not in first]
    return tuple(first) + tuple(n for n in offered if n not in first)
