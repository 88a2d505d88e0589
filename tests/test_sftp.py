"""The pipelined SFTP reader against an in-memory SFTP server that can answer short, out of order,
or from a file that changed; and the number of round trips a fetch costs, pinned."""

from __future__ import annotations

import struct

import pytest

from metis_env.sources.ssh import sftp


class MemorySFTP:
    """A channel whose far end is an SFTP v3 server over ``files``. Replies wait until the client reads
    (one "round trip" each time it has to), optionally reversed and with reads cut to ``max_read``."""

    def __init__(self, files: dict[str, bytes], max_read: int = 1 << 20, reverse: bool = False, grown: bytes = b"",
                 batch: int = 100) -> None:
        self.files = files
        self.max_read = max_read
        self.reverse = reverse
        self.grown = grown  # bytes that appear past each file's end once it is opened
        self.inbox = bytearray()
        self.pending: list[bytes] = []
        self.outbox = bytearray()
        self.round_trips = 0
        self.batch = batch  # names per READDIR answer (OpenSSH's sftp-server sends up to 100)
        self.unlisted = list(files)

    def sendall(self, data: bytes) -> None:
        self.inbox += data
        while len(self.inbox) >= 4:
            length = struct.unpack(">I", self.inbox[:4])[0]
            if len(self.inbox) < 4 + length:
                break
            packet = bytes(self.inbox[4 : 4 + length])
            del self.inbox[: 4 + length]
            self.pending.append(self.answer(packet[0], packet[1:]))

    def recv(self, count: int) -> bytes:
        if not self.outbox and self.pending:
            self.round_trips += 1
            version = [r for r in self.pending if r[4] == sftp.FXP_VERSION]  # never reordered: no id
            others = [r for r in self.pending if r[4] != sftp.FXP_VERSION]
            for reply in version + (others[::-1] if self.reverse else others):
                self.outbox += reply
            self.pending = []
        data = bytes(self.outbox[:count])
        del self.outbox[:count]
        return data

    def answer(self, kind: int, body: bytes) -> bytes:
        if kind == sftp.FXP_INIT:
            return reply(sftp.FXP_VERSION, struct.pack(">I", 3))
        request_id = body[:4]
        name, _ = sftp._unstring(body, 4)
        if kind == sftp.FXP_OPENDIR:
            return reply(sftp.FXP_HANDLE, request_id + sftp._string(b"dir"))
        if kind == sftp.FXP_READDIR:
            names, self.unlisted = self.unlisted[: self.batch], self.unlisted[self.batch :]
            if not names:
                return status(request_id, sftp.FX_EOF)
            entries = b"".join(
                sftp._string(n) + sftp._string(b"") + struct.pack(">IQI", sftp.ATTR_SIZE | sftp.ATTR_PERMISSIONS, len(self.files[n]), 0o100644)
                for n in names
            )
            return reply(sftp.FXP_NAME, request_id + struct.pack(">I", len(names)) + entries)
        if kind == sftp.FXP_OPEN:
            if name.decode() not in self.files:
                return status(request_id, 2, "No such file")
            return reply(sftp.FXP_HANDLE, request_id + sftp._string(name))
        if kind == sftp.FXP_READ:
            offset, length = struct.unpack_from(">QI", body, 4 + 4 + len(name))
            data = self.files[name.decode()] + self.grown
            chunk = data[offset : offset + min(length, self.max_read)]
            return reply(sftp.FXP_DATA, request_id + sftp._string(chunk)) if chunk else status(request_id, sftp.FX_EOF)
        if kind == sftp.FXP_CLOSE:
            return status(request_id, sftp.FX_OK)
        raise AssertionError(f"unexpected request {kind}")


def reply(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def status(request_id: bytes, code: int, message: str = "") -> bytes:
    return reply(sftp.FXP_STATUS, request_id + struct.pack(">I", code) + sftp._string(message) + sftp._string(""))


FILES = {"metis_endpoint_1.txt": b"A" * 40000, "metis_endpoint_2.txt": b"second\n"}


def fetch(channel: MemorySFTP) -> tuple[list[str], list[bytes]]:
    session = sftp.SFTPSession(channel)
    entries = session.start_and_list_dir(".")
    return [e.name for e in entries], session.read_files([(e.name, e.size) for e in entries])


@pytest.mark.parametrize("max_read, reverse", [(1 << 20, False), (1 << 20, True), (5000, False), (5000, True)])
def test_every_byte_arrives_whatever_the_reply_order_and_read_size(max_read, reverse):
    names, contents = fetch(MemorySFTP(FILES, max_read=max_read, reverse=reverse))
    assert (names, contents) == (list(FILES), list(FILES.values()))


def test_a_fetch_costs_four_round_trips_however_many_files():
    many = {f"metis_endpoint_{n}.txt": f"file {n}\n".encode() * 1000 for n in range(1, 9)}
    channel = MemorySFTP(many)
    assert fetch(channel) == (list(many), list(many.values()))
    # version + opened dir | listing + end of listing | every open | every read and end-of-file probe
    assert channel.round_trips == 4


def test_a_long_listing_keeps_two_requests_in_flight():
    many = {f"metis_endpoint_{n}.txt": b"x" for n in range(1, 9)}
    channel = MemorySFTP(many, batch=3, reverse=True)
    assert fetch(channel) == (list(many), list(many.values()))
    assert channel.round_trips == 5  # 3 + 3 names, then 2 + the end: one wave more than a short listing


def test_a_file_that_grew_since_the_listing_is_refused():
    with pytest.raises(sftp.FileChangedError, match="^metis_endpoint_1.txt grew while it was being read$"):
        fetch(MemorySFTP(FILES, grown=b"more"))


def test_a_file_that_shrank_since_the_listing_is_refused():
    session = sftp.SFTPSession(MemorySFTP(FILES))
    session.start_and_list_dir(".")
    with pytest.raises(sftp.FileChangedError, match="^metis_endpoint_2.txt shrank while it was being read$"):
        session.read_files([("metis_endpoint_2.txt", 100)])


def test_an_error_status_names_the_file():
    session = sftp.SFTPSession(MemorySFTP(FILES))
    session.start_and_list_dir(".")
    with pytest.raises(sftp.SFTPError, match=r"^opening gone.txt: No such file \(SFTP status 2\)$"):
        session.read_files([("gone.txt", 10)])


def test_a_closed_channel_is_eof():
    class Closed:
        def sendall(self, data: bytes) -> None:
            pass

        def recv(self, count: int) -> bytes:
            return b""

    with pytest.raises(EOFError):
        sftp.SFTPSession(Closed()).start_and_list_dir(".")
