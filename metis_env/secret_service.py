"""Read one secret from the freedesktop Secret Service over D-Bus, with ``jeepney`` alone.

The hot path (``export``, ``get``, ``run``) reads keys here instead of through ``keyring``, whose backend
discovery and ``secretstorage`` cost far more than the lookup itself. Writes, deletes, unlocking and
every error message stay with ``keyring`` (``keystore.py``): this module answers ``None`` whenever it is
not sure (nothing found, a locked collection or item, no bus, a daemon that does not answer in time),
and the caller then asks keyring, which gives the proper answer or the proper error.

The only module that imports jeepney.
"""

from __future__ import annotations

import os

BUS_NAME = "org.freedesktop.secrets"
SERVICE_PATH = "/org/freedesktop/secrets"
DEFAULT_COLLECTION = "/org/freedesktop/secrets/aliases/default"
SERVICE_IFACE = "org.freedesktop.Secret.Service"
COLLECTION_IFACE = "org.freedesktop.Secret.Collection"
ITEM_IFACE = "org.freedesktop.Secret.Item"

# keyring's SecretService backend (SchemeSelectable) names the two attributes after its "scheme".
SCHEMES = {"default": ("service", "username"), "KeePassXC": ("Title", "UserName")}

DEFAULT_TIMEOUT = 2.0


def lookup(service: str, username: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The secret keyring's SecretService backend would return for (service, username), or None.

    Every step is bounded: the whole lookup gives up (None) after ``timeout`` seconds.
    """
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        return None
    # Mirror keyring: KEYRING_PROPERTY_* environment variables set the backend's properties.
    scheme = SCHEMES.get(os.environ.get("KEYRING_PROPERTY_SCHEME", "default"))
    if scheme is None:
        return None
    collection = os.environ.get("KEYRING_PROPERTY_PREFERRED_COLLECTION") or DEFAULT_COLLECTION
    attributes = {scheme[0]: service, scheme[1]: username}

    from jeepney import DBusAddress, new_method_call
    from jeepney.wrappers import DBusErrorResponse

    try:
        bus = _Bus(address, timeout)
    except (OSError, ValueError, RuntimeError):  # no bus, refused, timed out, or not authenticated
        return None
    try:

        def call(path: str, interface: str, method: str, signature: str | None = None, body: tuple = ()):
            return bus.call(new_method_call(DBusAddress(path, BUS_NAME, interface), method, signature, body))

        # keyring's get_password: the first item of the preferred collection that matches.
        (items,) = call(collection, COLLECTION_IFACE, "SearchItems", "a{ss}", (attributes,))
        if not items:
            return None
        # "plain": the secret crosses the local session-bus socket unencrypted. That socket is only
        # reachable by this user, who can ask the daemon for the secret anyway; the alternative
        # (dh-ietf1024-sha256-aes128-cbc-pkcs7) would cost an import of `cryptography` on every export.
        _output, session = call(SERVICE_PATH, SERVICE_IFACE, "OpenSession", "sv", ("plain", ("s", "")))
        # A locked item answers with an IsLocked error: None, and keyring prompts or explains.
        ((_session, _params, value, _content_type),) = call(items[0], ITEM_IFACE, "GetSecret", "o", (session,))
    except (DBusErrorResponse, OSError, ValueError):  # socket.timeout is an OSError
        return None
    finally:
        bus.close()  # closing the connection also closes the session, in the daemon
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Bus:
    """A blocking D-Bus connection whose every step (connect, authentication, Hello, each call) ends
    by one deadline. jeepney's own blocking connection waits for Hello's reply without a limit."""

    def __init__(self, address: str, timeout: float):
        import socket
        import time

        from jeepney import Parser
        from jeepney.auth import BEGIN, Authenticator
        from jeepney.bus import get_bus
        from jeepney.bus_messages import message_bus

        self._clock = time.monotonic
        self.deadline = self._clock() + timeout
        self.parser = Parser()
        self.serial = 0
        self.sock = socket.socket(family=socket.AF_UNIX)
        try:
            self._bounded(self.sock.connect, get_bus(address))
            self.sock.sendall(b"\0")
            authenticator = Authenticator(inc_null_byte=False)
            for line in authenticator:
                self._bounded(self.sock.sendall, line)
                data = self._bounded(self.sock.recv, 1024)
                if not data:
                    raise ConnectionResetError("the bus closed the connection")
                authenticator.feed(data)
            self._bounded(self.sock.sendall, BEGIN)
            self.call(message_bus.Hello())
        except BaseException:
            self.sock.close()
            raise

    def _bounded(self, method, *args):
        remaining = self.deadline - self._clock()
        if remaining <= 0:
            raise TimeoutError("the Secret Service did not answer in time")
        self.sock.settimeout(remaining)
        return method(*args)

    def call(self, message) -> tuple:
        """Send one method call, and return the body of its reply (DBusErrorResponse for an error)."""
        from jeepney.low_level import HeaderFields
        from jeepney.wrappers import unwrap_msg

        self.serial += 1
        self._bounded(self.sock.sendall, message.serialise(serial=self.serial))
        while True:
            reply = self.parser.get_next_message()
            if reply is None:
                data = self._bounded(self.sock.recv, 65536)
                if not data:
                    raise ConnectionResetError("the bus closed the connection")
                self.parser.add_data(data)
                continue
            if reply.header.fields.get(HeaderFields.reply_serial) == self.serial:
                return unwrap_msg(reply)

    def close(self) -> None:
        self.sock.close()
