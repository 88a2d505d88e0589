"""A raw SFTP server for the login node's hostile knobs (``Faults.sftp``): paramiko's SFTPServer
cannot be made to break the protocol, this one breaks it on purpose."""

from __future__ import annotations

import contextlib
import time

import paramiko

SFTP_ATTACKS = ("malformed-name", "endless-readdir", "unsent-ids", "slash-names")


class HostileSFTP(paramiko.SubsystemHandler):
    """A raw SFTP v3 server that breaks the protocol as ``attack`` says, after a normal INIT/OPENDIR:
    ``malformed-name`` (a NAME reply whose count runs past its end), ``endless-readdir`` (a new page
    of names for every READDIR, never EOF), ``unsent-ids`` (replies to requests never sent, without
    end), ``slash-names`` (names with ``/`` in them, as no real directory has)."""

    def __init__(self, channel, name, server, attack: str, delay: float = 0.0) -> None:
        super().__init__(channel, name, server)
        self.attack = attack
        self.delay = delay
        self.pages = 0

    def start_subsystem(self, name, transport, channel) -> None:
        buffer = b""
        with contextlib.suppress(Exception):  # the client hanging up ends the attack
            while transport.is_active():
                while len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "big"):
                    chunk = channel.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                length = int.from_bytes(buffer[:4], "big")
                packet, buffer = buffer[4 : 4 + length], buffer[4 + length :]
                for reply in self.answer(packet[0], packet[1:5]):
                    channel.sendall(len(reply).to_bytes(4, "big") + reply)

    def answer(self, kind: int, request_id: bytes):
        if kind == 1:  # INIT
            return [bytes([2]) + (3).to_bytes(4, "big")]
        if kind == 11:  # OPENDIR
            return [bytes([102]) + request_id + _sftp_string(b"dir")]
        if kind != 12:  # READDIR is where every attack happens; anything else fails
            return [bytes([101]) + request_id + (4).to_bytes(4, "big") + _sftp_string(b"no") + _sftp_string(b"")]
        if self.attack == "malformed-name":
            return [bytes([104]) + request_id + (5).to_bytes(4, "big") + _sftp_string(b"metis_endpoint_1.txt")]
        if self.attack == "unsent-ids":
            return [bytes([101]) + (10_000 + n).to_bytes(4, "big") + (0).to_bytes(4, "big") for n in range(1000)]
        if self.attack == "slash-names" and self.pages:
            return [bytes([101]) + request_id + (1).to_bytes(4, "big") + _sftp_string(b"eof") + _sftp_string(b"")]
        self.pages += 1
        time.sleep(self.delay)
        names = (
            [b"metis_endpoint_1/../../x.txt", b"metis_endpoint_2.txt"]
            if self.attack == "slash-names"
            else [f"f{self.pages}_{n}".encode() for n in range(1000)]
        )
        body = b"".join(_sftp_string(n) + _sftp_string(n) + (0x5).to_bytes(4, "big") + (7).to_bytes(8, "big")
                        + (0o100644).to_bytes(4, "big") for n in names)
        return [bytes([104]) + request_id + len(names).to_bytes(4, "big") + body]


def _sftp_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value
