"""A minimal SFTP (version 3) client for one job: list a directory, then read small files with every
request in flight at once.

paramiko's SFTPClient waits for each reply before sending the next request and reads past the end of
each file to find it; over a 20 ms link that costs about ten round trips more than a fetch needs. The
protocol is small enough to speak directly over any channel with ``sendall`` and ``recv`` (a paramiko
Channel), which keeps us off paramiko's private internals. Standard library only.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ = 1, 2, 3, 4, 5
FXP_OPENDIR, FXP_READDIR = 11, 12
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME = 101, 102, 103, 104
FX_OK, FX_EOF = 0, 1
FXF_READ = 0x01
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
ATTR_EXTENDED = 0x80000000

CHUNK_BYTES = 32768  # what every SFTP server must accept in one READ (draft-ietf-secsh-filexfer-02)
_MAX_PACKET = 256 * 1024 + 1024
MAX_LISTING_ENTRIES = 100_000  # a home directory's names; a server sending more is stopped there


class SFTPError(Exception):
    """The server answered with an error status, or broke the protocol."""


class FileChangedError(SFTPError):
    """A file grew or shrank between the listing and the read."""


@dataclass(frozen=True)
class DirEntry:
    """One name in a directory listing, with the attributes the server gave (lstat, not stat)."""

    name: str
    mode: int | None
    size: int | None

    @property
    def kind(self) -> str:
        if self.mode is None:
            return "unknown"
        if stat.S_ISLNK(self.mode):
            return "symbolic link"
        if stat.S_ISDIR(self.mode):
            return "directory"
        if stat.S_ISREG(self.mode):
            return "file"
        return "special file"


class SFTPSession:
    """Requests go out as soon as their inputs are known; replies are matched by request id."""

    def __init__(self, channel, on_packet: Callable[[], None] = lambda: None) -> None:
        self._channel = channel
        self._on_packet = on_packet  # the server said something (a login's silence clock restarts)
        self._buffer = bytearray()
        self._next_id = 1
        self._replies: dict[int, tuple[int, bytes]] = {}
        self._unawaited: set[int] = set()

    def start(self) -> int:
        """Send INIT and return the server's protocol version."""
        self._send_init()
        return self._read_version()

    def _send_init(self) -> None:
        self._channel.sendall(_packet(FXP_INIT, struct.pack(">I", 3)))

    def _read_version(self) -> int:
        kind, body = self._read_packet()
        if kind != FXP_VERSION or len(body) < 4:
            raise SFTPError(f"expected an SFTP version reply, got packet type {kind}")
        version = struct.unpack(">I", body[:4])[0]
        if version < 3:
            raise SFTPError(f"the server speaks SFTP version {version}; version 3 is needed")
        return version

    def start_and_list_dir(self, path: str = ".") -> list[DirEntry]:
        """INIT and OPENDIR in one write: a server reads its input in order, so the directory is
        opened right after the version is agreed, one round trip sooner."""
        opendir = self._next_id
        self._next_id += 1
        first = _packet(FXP_INIT, struct.pack(">I", 3)) + _packet(FXP_OPENDIR, struct.pack(">I", opendir) + _string(path))
        self._channel.sendall(first)
        self._read_version()
        return self._list_opened_dir(opendir, path)

    def list_dir(self, path: str = ".") -> list[DirEntry]:
        """All entries of ``path`` except ``.`` and ``..``; two READDIRs stay in flight, so a directory
        that fits in one reply costs one round trip and its end-of-directory answer none extra."""
        return self._list_opened_dir(self._send(FXP_OPENDIR, _string(path)), path)

    def _list_opened_dir(self, opendir: int, path: str) -> list[DirEntry]:
        handle = self._expect_handle(opendir, path)
        entries: list[DirEntry] = []
        in_flight: list[int] = []
        done = False
        while not done:
            if not in_flight:
                in_flight = [self._send(FXP_READDIR, _string(handle)) for _ in range(2)]
            kind, body = self._reply(in_flight.pop(0))
            if kind == FXP_NAME:
                entries.extend(_parse_names(body))
                if len(entries) > MAX_LISTING_ENTRIES:
                    raise SFTPError(
                        f"the listing of {path} goes past {MAX_LISTING_ENTRIES} names; refusing to read more"
                    )
            elif kind == FXP_STATUS and _status_code(body) == FX_EOF:
                done = True
            else:
                raise _unexpected(kind, body, f"reading the directory {path}")
        for request_id in in_flight:  # a READDIR sent past the end: its answer is not needed
            self._unawaited.add(request_id)
        self._send(FXP_CLOSE, _string(handle), wait=False)
        return [e for e in entries if e.name not in (".", "..")]

    def read_files(
        self,
        files: Sequence[tuple[str, int]],
        on_file_done: Callable[[str], None] = lambda name: None,
    ) -> list[bytes]:
        """Read each ``(path, size)`` whole: all OPENs in one round trip, then every READ of the known
        sizes plus a one-byte probe past each end in the next (the probe answers EOF unless the file
        grew since the listing). Short reads are completed with follow-up requests."""
        opens = [(path, self._send(FXP_OPEN, _string(path) + struct.pack(">II", FXF_READ, 0))) for path, _ in files]
        handles = [self._expect_handle(request, path) for path, request in opens]

        buffers = [bytearray(size) for _, size in files]
        outstanding: dict[int, tuple[int, int, int]] = {}  # request id -> (file index, offset, length)
        remaining = [0] * len(files)

        def request(index: int, offset: int, length: int) -> None:
            payload = _string(handles[index]) + struct.pack(">QI", offset, length)
            outstanding[self._send(FXP_READ, payload)] = (index, offset, length)
            remaining[index] += 1

        for index, (_, size) in enumerate(files):
            for offset in range(0, size, CHUNK_BYTES):
                request(index, offset, min(CHUNK_BYTES, size - offset))
            request(index, size, 1)

        while outstanding:
            request_id = next(iter(outstanding))
            index, offset, length = outstanding.pop(request_id)
            remaining[index] -= 1
            path, size = files[index]
            kind, body = self._reply(request_id)
            if kind == FXP_DATA:
                data = _unstring(body, 0)[0]
                if offset >= size:
                    raise FileChangedError(f"{path} grew while it was being read")
                if not data or len(data) > length:
                    raise SFTPError(f"the server sent {len(data)} bytes for a read of {length} in {path}")
                buffers[index][offset : offset + len(data)] = data
                if len(data) < length:
                    request(index, offset + len(data), length - len(data))
            elif kind == FXP_STATUS and _status_code(body) == FX_EOF:
                if offset < size:
                    raise FileChangedError(f"{path} shrank while it was being read")
            else:
                raise _unexpected(kind, body, f"reading {path}")
            if remaining[index] == 0:
                on_file_done(path)

        for handle in handles:
            self._send(FXP_CLOSE, _string(handle), wait=False)
        return [bytes(b) for b in buffers]

    # -- wire --------------------------------------------------------------------------------

    def _send(self, kind: int, payload: bytes, wait: bool = True) -> int:
        request_id = self._next_id
        self._next_id += 1
        self._channel.sendall(_packet(kind, struct.pack(">I", request_id) + payload))
        if not wait:
            self._unawaited.add(request_id)
        return request_id

    def _reply(self, request_id: int) -> tuple[int, bytes]:
        while request_id not in self._replies:
            kind, body = self._read_packet()
            if len(body) < 4:
                raise SFTPError(f"short SFTP packet of type {kind}")
            reply_id = struct.unpack(">I", body[:4])[0]
            if reply_id >= self._next_id or reply_id in self._replies:
                # Kept, such replies would pile up without bound: a server that sends them is broken.
                raise SFTPError(f"the server answered request {reply_id}, which was never sent or was already answered")
            if reply_id in self._unawaited:
                self._unawaited.discard(reply_id)
            else:
                self._replies[reply_id] = (kind, body[4:])
        return self._replies.pop(request_id)

    def _expect_handle(self, request_id: int, path: str) -> bytes:
        kind, body = self._reply(request_id)
        if kind != FXP_HANDLE:
            raise _unexpected(kind, body, f"opening {path}")
        return _unstring(body, 0)[0]

    def _read_packet(self) -> tuple[int, bytes]:
        header = self._read_exactly(4)
        length = struct.unpack(">I", header)[0]
        if not 1 <= length <= _MAX_PACKET:
            raise SFTPError(f"SFTP packet of {length} bytes is out of bounds")
        packet = self._read_exactly(length)
        self._on_packet()
        return packet[0], packet[1:]

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._channel.recv(max(count - len(self._buffer), 65536))
            if not chunk:
                raise EOFError("the SFTP channel closed")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


def _packet(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def _string(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def _unstring(body: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(body):
        raise SFTPError("truncated SFTP string")
    length = struct.unpack_from(">I", body, offset)[0]
    end = offset + 4 + length
    if end > len(body):
        raise SFTPError("truncated SFTP string")
    return body[offset + 4 : end], end


def _status_code(body: bytes) -> int:
    return struct.unpack_from(">I", body, 0)[0] if len(body) >= 4 else -1


def _unexpected(kind: int, body: bytes, doing: str) -> SFTPError:
    if kind == FXP_STATUS:
        code = _status_code(body)
        try:
            message = _unstring(body, 4)[0].decode("utf-8", "replace")
        except SFTPError:
            message = ""
        return SFTPError(f"{doing}: {message or 'error'} (SFTP status {code})")
    return SFTPError(f"{doing}: unexpected SFTP packet type {kind}")


def _parse_names(body: bytes) -> list[DirEntry]:
    """A NAME reply's entries; a malformed one (short, a count past its end) is an SFTPError."""
    if len(body) < 4:
        raise SFTPError("malformed SFTP NAME reply (no count)")
    (count,) = struct.unpack_from(">I", body, 0)
    offset = 4
    entries = []
    for _ in range(count):
        try:
            raw_name, offset = _unstring(body, offset)
            _, offset = _unstring(body, offset)  # the ls -l style long name
            mode, size, offset = _parse_attrs(body, offset)
        except SFTPError as exc:
            raise SFTPError(f"malformed SFTP NAME reply ({exc})") from None
        entries.append(DirEntry(raw_name.decode("utf-8", "surrogateescape"), mode, size))
    return entries


def _parse_attrs(body: bytes, offset: int) -> tuple[int | None, int | None, int]:
    try:
        (flags,) = struct.unpack_from(">I", body, offset)
        offset += 4
        size = mode = None
        if flags & ATTR_SIZE:
            (size,) = struct.unpack_from(">Q", body, offset)
            offset += 8
        if flags & ATTR_UIDGID:
            offset += 8
        if flags & ATTR_PERMISSIONS:
            (mode,) = struct.unpack_from(">I", body, offset)
            offset += 4
        if flags & ATTR_ACMODTIME:
            offset += 8
        if flags & ATTR_EXTENDED:
            (count,) = struct.unpack_from(">I", body, offset)
            offset += 4
            for _ in range(count * 2):
                _, offset = _unstring(body, offset)
    except struct.error as exc:
        raise SFTPError("truncated SFTP attributes") from exc
    return mode, size, offset
