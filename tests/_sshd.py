"""A real OpenSSH sshd on 127.0.0.1 that asks ``Password:`` through PAM and checks HOTP codes with
pam_oath (recipe: ../shared/TESTING.md). Needs root, sshd, pam_oath and oathtool; under CI=true a
missing piece fails the tests instead of skipping them.

The daemon runs through a symlink named ``metis-test-sshd-<pid>``, so PAM reads our own
``/etc/pam.d/metis-test-sshd-<pid>`` and the system's sshd configuration is never touched. Everything it
creates (the PAM file, the system user, the folder) is removed when the session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Per test run: several sessions may run the suite on one machine at once.
PAM_SERVICE = f"metis-test-sshd-{os.getpid()}"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
SSHD = Path("/usr/sbin/sshd")
PAM_OATH = (*glob.glob("/lib/*-linux-gnu*/security/pam_oath.so"), *glob.glob("/usr/lib/*-linux-gnu*/security/pam_oath.so"),
            "/lib/security/pam_oath.so", "/usr/lib/security/pam_oath.so")
USER = f"metistest{os.getpid()}"
SECRET_HEX = "3132333435363738393031323334353637383930"


def require(condition: bool, why: str) -> None:
    """Skip on a developer machine without the pieces; fail in CI, where they must be there."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must run the real-sshd tests (.ci/run installs openssh-server, libpam-oath, oathtool)")
    pytest.skip(why)


@dataclass
class Sshd:
    port: int
    user: str
    home: Path
    base: Path
    users_file: Path
    host_key_pub: str  # "ssh-ed25519 AAAA..."

    def host_key_line(self, host: str = "127.0.0.1") -> str:
        key_type, key = self.host_key_pub.split()[:2]
        return f"[{host}]:{self.port} {key_type} {key}\n"

    def counter(self) -> int | None:
        """The last counter pam_oath accepted (None: none yet)."""
        fields = self.users_file.read_text().split()
        return int(fields[4]) if len(fields) > 4 else None

    def code(self, offset: int = 0) -> str:
        """The next valid code (offset 0), or one further on."""
        last = self.counter()
        counter = (0 if last is None else last + 1) + offset
        return subprocess.run(
            ["oathtool", "--hotp", f"--counter={counter}", SECRET_HEX], capture_output=True, text=True, check=True
        ).stdout.strip()

    def put_files(self, files: dict[str, str]) -> None:
        """Make the remote home hold exactly ``files`` (owned by the test user)."""
        for path in self.home.iterdir():
            if not path.name.startswith("."):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for name, text in files.items():
            path = self.home / name
            path.write_text(text)
            shutil.chown(path, self.user, self.user)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def real_sshd() -> Iterator[Sshd]:
    require(SSHD.exists(), f"{SSHD} is not installed")
    require(shutil.which("oathtool") is not None, "oathtool is not installed")
    require(any(os.path.exists(p) for p in PAM_OATH), "pam_oath (libpam-oath) is not installed")
    require(os.geteuid() == 0, "the real-sshd tests create a user and a PAM service: they need root")

    base = Path(tempfile.mkdtemp(prefix="metis-sshd-"))
    process = None
    log = None
    created_user = False
    try:
        base.chmod(0o755)  # sshd starts SFTP in / if the home is not traversable
        (base / "home").mkdir(mode=0o755)
        home = base / "home" / USER
        if subprocess.run(["id", USER], capture_output=True).returncode == 0:
            _run("usermod", "--home", str(home), USER)  # left over by an interrupted run
            home.mkdir(mode=0o755)
            shutil.chown(home, USER, USER)
        else:
            _run("useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", USER)
            created_user = True
        _run("passwd", "-l", USER)
        home.chmod(0o755)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key"))
        drain = base / "drain.sh"
        drain.write_text("#!/bin/sh\ncat >/dev/null\nexit 0\n")
        drain.chmod(0o755)
        oath_dir = base / "oath"
        oath_dir.mkdir(mode=0o700)
        users_file = oath_dir / "users.oath"
        users_file.write_text(f"HOTP {USER} - {SECRET_HEX}\n")
        users_file.chmod(0o600)
        PAM_FILE.write_text(
            f"auth     requisite  pam_exec.so expose_authtok quiet {drain}\n"
            f"auth     required   pam_oath.so use_first_pass usersfile={users_file} window=10 digits=6\n"
            "account  required   pam_permit.so\n"
            "session  required   pam_permit.so\n"
            "password required   pam_deny.so\n"
        )
        port = _free_port()
        config = base / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nUsePAM yes\n"
            "KbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication no\n"
            f"AuthenticationMethods keyboard-interactive\nAllowUsers {USER}\nMaxAuthTries 3\n"
            f"Subsystem sftp internal-sftp\nPidFile {base / 'sshd.pid'}\n"
        )
        (base / PAM_SERVICE).symlink_to(SSHD)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = open(base / "sshd.log", "wb")
        process = subprocess.Popen([str(base / PAM_SERVICE), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {(base / 'sshd.log').read_text()}") from None
                time.sleep(0.02)
        yield Sshd(port, USER, home, base, users_file, (base / "host_key.pub").read_text())
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        if log is not None:
            log.close()
        PAM_FILE.unlink(missing_ok=True)
        if created_user or subprocess.run(["id", USER], capture_output=True).returncode == 0:
            subprocess.run(["userdel", USER], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sshd(real_sshd: Sshd) -> Sshd:
    """The session's sshd with the two standard endpoint files in the home, as the only files."""
    from tests.conftest import ENDPOINT_1, ENDPOINT_2

    real_sshd.put_files({"metis_endpoint_1.txt": ENDPOINT_1, "metis_endpoint_2.txt": ENDPOINT_2})
    return real_sshd
