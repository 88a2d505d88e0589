"""``--via openssh``: the same job through the system ``ssh`` (its config, host-key check, prompts and
ControlMaster), one run, files between random boundary lines."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import subprocess
import threading
from collections.abc import Sequence

from ...endpoint import MAX_FILE_BYTES
from ...render import printable, quote_posix
from ...errors import (
    AuthenticationError,
    ConnectionFailedError,
    HostKeyChangedError,
    MetisEnvError,
    RemoteFilesError,
    UnknownHostKeyError,
)
from .remote import MAX_FILES, MAX_TOTAL_BYTES, Prompter, RemoteFile, natural, kind_phrase

# --- the system ssh ----------------------------------------------------------------------------

_REMOTE_SCRIPT = r"""
LC_ALL=C; export LC_ALL
cd || exit 97
pattern=%(pattern)s
token=%(token)s
count=0
total=0
for f in * .[!.]* ..?*; do
  case $f in $pattern) ;; *) continue ;; esac
  count=$((count + 1))
  if [ "$count" -gt %(max_files)d ]; then printf '\n%%s toomany\n' "$token"; exit 0; fi
  size=0
  if [ -L "$f" ]; then kind=link
  elif [ -d "$f" ]; then kind=directory
  elif [ -f "$f" ]; then kind=file; size=$(wc -c < "$f") || exit 98; size=$((size + 0))
  elif [ -e "$f" ]; then kind=special
  else continue
  fi
  total=$((total + size))
  if [ "$total" -gt %(max_total)d ]; then printf '\n%%s toobig\n' "$token"; exit 0; fi
  printf '\n%%s %%s %%s %%s\n%%s\n' "$token" "$kind" "$size" "${#f}" "$f"
  if [ "$kind" = file ] && [ "$size" -le %(max)d ]; then
    dd if="$f" bs=%(limit)d count=1 2>/dev/null || exit 98
  fi
  printf '\n%%s end\n' "$token"
done
printf '\n%%s done\n' "$token"
"""


def fetch_with_openssh(
    host: str,
    pattern: str,
    ui: Prompter,
    *,
    user: str | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    accept_new_host_key: bool = False,
    ssh_command: Sequence[str] = ("ssh",),
    passcode: str | None = None,
) -> list[RemoteFile]:
    """Run the system ssh once; it prints every matching file between random boundary lines.

    OpenSSH does its own config, host-key check and prompts (on the terminal), and reuses an open
    ControlMaster connection, so then no passcode is asked at all. Only the host, the user name and
    the port go into argv; the script (with the pattern) goes to the remote ``sh`` on stdin. A
    ``passcode`` (--passcode-stdin) reaches ssh through a one-shot askpass (``_OneCodeAskpass``)."""
    token = secrets.token_hex(16)
    script = _REMOTE_SCRIPT % {
        "pattern": quote_posix(pattern),
        "token": token,
        "max": MAX_FILE_BYTES,
        "limit": MAX_FILE_BYTES + 1,
        "max_files": MAX_FILES,
        "max_total": MAX_TOTAL_BYTES,
    }
    alive = max(1, math.ceil(timeout / 3))
    argv = [*ssh_command, "-T", "-o", f"ConnectTimeout={max(1, math.ceil(timeout))}",
            "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3"]
    if accept_new_host_key:
        argv += ["-o", "StrictHostKeyChecking=accept-new"]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    if passcode is not None:
        argv += ["-o", "NumberOfPasswordPrompts=1"]
    argv += ["--", host, "sh -s"]
    ui.progress(f"running {ssh_command[0]} {host} (an open ControlMaster connection needs no passcode)")
    # ServerAlive catches a dead link, not a remote `sh` stuck on a hung home directory: bound the
    # whole run too, leaving a person two minutes to type a code at ssh's own prompt.
    limit = 4 * timeout + (0 if passcode is not None else 120)
    try:
        with _OneCodeAskpass(passcode) as env:
            result = subprocess.run(
                argv, input=script.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False,
                timeout=limit,
            )
    except subprocess.TimeoutExpired:
        raise ConnectionFailedError(
            f"{ssh_command[0]} {host} did not finish within {limit:g} s; check the login node, or raise --timeout"
        ) from None
    except OSError as exc:
        raise ConnectionFailedError(f"cannot run {ssh_command[0]}: {exc.strerror or exc}; install OpenSSH or use --via paramiko") from exc
    messages = result.stderr.decode("utf-8", "replace")
    for line in messages.splitlines():
        text = printable(line.strip())
        if text:  # ssh words its own messages "ssh: ..." already: never "ssh: ssh: Could not ..."
            ui.progress(text if text.startswith("ssh: ") else f"ssh: {text}")
    if result.returncode != 0:
        raise _ssh_failure(host, result.returncode, messages)
    files = parse_boundary_output(result.stdout, token, host)
    if files:
        ui.progress(f"fetched {len(files)}/{len(files)}")
    return files


class _OneCodeAskpass:
    """Hands one passcode to ssh through SSH_ASKPASS without argv, environment or a file holding it:
    the askpass script reads a FIFO in a private directory, which a thread here writes once and then
    removes, so a second question (a refused code) gets nothing. Host-key questions are declined
    (ssh then says so and fails). Without a passcode: ssh's own environment, untouched."""

    _SCRIPT = """#!/bin/sh
case "$1" in *"continue connecting"*) exit 1 ;; esac
[ -p '{fifo}' ] && exec cat '{fifo}'
exit 1
"""

    def __init__(self, passcode: str | None) -> None:
        self.passcode = passcode
        self.directory: str | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> dict[str, str] | None:
        if self.passcode is None:
            return None
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="metis-env-askpass-")  # 0700
        fifo = os.path.join(self.directory, "code")
        os.mkfifo(fifo, 0o600)
        script = os.path.join(self.directory, "askpass")
        with open(os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700), "w") as handle:
            handle.write(self._SCRIPT.format(fifo=fifo))
        self.thread = threading.Thread(target=self._serve, args=(fifo,), name="metis-env-askpass", daemon=True)
        self.thread.start()
        return {**os.environ, "SSH_ASKPASS": script, "SSH_ASKPASS_REQUIRE": "force"}

    def _serve(self, fifo: str) -> None:
        while not self.stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until askpass opens it
            except OSError:
                self.stop.wait(0.01)
                continue
            with contextlib.suppress(OSError):
                os.unlink(fifo)
                os.set_blocking(fd, True)
                os.write(fd, f"{self.passcode}\n".encode())
            os.close(fd)
            return

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.directory is not None:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)


def _ssh_failure(host: str, code: int, messages: str) -> MetisEnvError:
    # ssh's own failures exit 255; any other status is the remote shell's, whose stderr (say, cat's
    # "Permission denied" on an unreadable file) must not be read as ssh's login messages.
    if code != 255:
        if code in (97, 98):
            return RemoteFilesError(f"the remote shell on {host} could not read the home directory or a file in it (see its message above)")
        return ConnectionFailedError(f"the remote shell on {host} failed with exit status {code} (see its message above)")
    if "IDENTIFICATION HAS CHANGED" in messages or "has changed and you have requested strict" in messages:
        return HostKeyChangedError(f"ssh refused {host}: its host key changed (see ssh's warning above)")
    if "Host key verification failed" in messages or "No ED25519 host key is known" in messages:
        return UnknownHostKeyError(
            f"ssh could not verify the host key of {host}; connect once with ssh, or run with --accept-new-host-key"
        )
    if "Permission denied" in messages or "Too many authentication failures" in messages:
        return AuthenticationError(f"ssh could not log in to {host} (see ssh's message above)")
    return ConnectionFailedError(f"ssh to {host} failed with exit status {code} (see ssh's message above)")


def parse_boundary_output(output: bytes, token: str, host: str) -> list[RemoteFile]:
    """Parse what ``_REMOTE_SCRIPT`` printed; refuse what is not a plain file of at most 64 KiB."""
    marker = b"\n" + token.encode() + b" "
    for word, limit in ((b"toomany", f"more than {MAX_FILES} files match"), (b"toobig", f"the matching files hold more than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB together")):
        if marker + word + b"\n" in output:
            raise RemoteFilesError(f"on {host}: {limit}, over the limit; nothing was read")
    if marker + b"done\n" not in output:
        raise ConnectionFailedError(f"the output of ssh {host} ended early (no end marker); try again")
    files: list[RemoteFile] = []
    problems = []
    position = output.find(marker)
    while position != -1:
        start = position + len(marker)
        header_end = output.find(b"\n", start)
        header = output[start:header_end].split()
        if header == [b"done"]:
            break
        try:
            kind, size, name_length = header[0].decode(), int(header[1]), int(header[2])
        except (IndexError, ValueError):
            raise ConnectionFailedError(f"cannot parse the output of ssh {host}: a header is malformed") from None
        name_bytes = output[header_end + 1 : header_end + 1 + name_length]
        name = name_bytes.decode("utf-8", "surrogateescape")
        body_start = header_end + 1 + name_length + 1
        end = output.find(marker + b"end\n", body_start - 1)
        if end == -1:
            raise ConnectionFailedError(f"cannot parse the output of ssh {host}: {printable(name)} has no end marker")
        data = output[body_start:end]
        if kind != "file":
            problems.append(f"{printable(name)} is {kind_phrase(kind.replace('link', 'symbolic link'))}, not a plain file")
        elif size > MAX_FILE_BYTES:
            problems.append(f"{printable(name)} is {size} bytes, over the {MAX_FILE_BYTES // 1024} KiB limit")
        elif len(data) != size:
            raise RemoteFilesError(f"on {host}: {printable(name)} changed while it was being read; run sync again")
        else:
            files.append(RemoteFile(name, data))
        position = output.find(marker, end + len(marker) + 4)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RemoteFilesError(
            f"on {host}: {problems[0]}{more}; endpoint files must be plain files in the home directory; nothing was read"
        )
    return sorted(files, key=lambda f: natural(f.name))
