"""metis-env sync against a real OpenSSH sshd asking ``Password:`` through PAM with real HOTP codes
(pam_oath): codes right, wrong and replayed, host keys unknown and changed, an ~/.ssh/config alias,
and --via openssh reusing an open ControlMaster connection. Never skipped in CI (see tests/_sshd.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests._loginnode_fixtures import read_until, spawn_on_terminal, store_snapshot
from tests._sshd import real_sshd, sshd  # noqa: F401  (fixtures)
from tests.conftest import metis

pytestmark = pytest.mark.usefixtures("file_store")


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def ssh_dir() -> Path:
    path = Path(os.path.expanduser("~/.ssh"))
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def trust(sshd) -> Path:
    known_hosts = ssh_dir() / "known_hosts"
    known_hosts.write_text(sshd.host_key_line())
    return known_hosts


def fingerprint(sshd) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(sshd.base / "host_key.pub")], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def sync(sshd, code: str, *args: str) -> subprocess.CompletedProcess:
    return metis("sync", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user, "--passcode-stdin",
                 *args, input=f"{code}\n".encode())


def progress(sshd, fetched: bool = True) -> str:
    lines = [f"connecting to 127.0.0.1:{sshd.port}", f"host key ok (ED25519 {fingerprint(sshd)})", f"authenticating as {sshd.user}"]
    if fetched:
        lines += ["fetched 1/2 metis_endpoint_1.txt", "fetched 2/2 metis_endpoint_2.txt"]
    return "".join(f"metis-env: {line}\n" for line in lines)


def test_a_correct_code_syncs_and_spends_exactly_one_code(sshd):
    trust(sshd)
    before = sshd.counter()
    assert result(sync(sshd, sshd.code())) == (0, "", progress(sshd) + "endpoint 1: new\nendpoint 2: new\n")
    assert sshd.counter() == (0 if before is None else before + 1)


def test_a_wrong_code_is_refused_and_the_store_is_untouched(sshd, env_setup):
    trust(sshd)
    assert sync(sshd, sshd.code()).returncode == 0
    before, counter = store_snapshot(env_setup), sshd.counter()
    error = f"metis-env: error: 127.0.0.1:{sshd.port} refused the passcode for {sshd.user}; check the user name and wait for a fresh code before trying again\n"
    assert result(sync(sshd, "000000" if sshd.code() != "000000" else "111111")) == (10, "", progress(sshd, fetched=False) + error)
    assert (store_snapshot(env_setup), sshd.counter()) == (before, counter)


def test_a_replayed_code_is_refused(sshd, env_setup):
    trust(sshd)
    code = sshd.code()
    assert sync(sshd, code).returncode == 0
    before = store_snapshot(env_setup)
    assert sync(sshd, code).returncode == 10
    assert store_snapshot(env_setup) == before


def test_a_wrong_then_a_right_code_typed_on_the_terminal_uses_one_connection(sshd):
    trust(sshd)
    proc, master = spawn_on_terminal("sync", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user)
    seen = read_until(master, b"Password: ")
    os.write(master, b"000000\n" if sshd.code() != "000000" else b"111111\n")
    seen += read_until(master, b"Password: ")
    code = sshd.code()
    os.write(master, code.encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    seen += read_until(master, None)
    os.close(master)
    refused = f"metis-env: 127.0.0.1:{sshd.port} refused that passcode; wait for the next code (2 tries left)\n"
    assert (proc.returncode, out, err.decode()) == (
        0, b"", progress(sshd, fetched=False) + refused + progress(sshd)[len(progress(sshd, fetched=False)):] + "endpoint 1: new\nendpoint 2: new\n")
    assert seen.replace(b"\r", b"") == b"Password: \nPassword: \n"


def test_a_first_sync_on_a_terminal_asks_to_trust_the_host_then_for_the_code(sshd):
    proc, master = spawn_on_terminal("sync", "--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user)
    name = f"[127.0.0.1]:{sshd.port}"
    question = f"Trust {name} and remember its key in ~/.ssh/known_hosts? [yes/no] ".encode()
    seen = read_until(master, question)
    os.write(master, b"yes\n")
    seen += read_until(master, b"Password: ")
    os.write(master, sshd.code().encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    seen += read_until(master, None)
    os.close(master)
    assert (proc.returncode, out) == (0, b""), err
    assert seen.replace(b"\r", b"") == question + b"yes\nPassword: \n"
    lines = err.decode().splitlines()
    assert lines[1] == f"metis-env: the authenticity of {name} can't be established; its ED25519 key fingerprint is {fingerprint(sshd)}"
    assert lines[2] == f"metis-env: added {name} (ED25519) to {ssh_dir() / 'known_hosts'}"


def test_an_unknown_host_key_without_a_terminal_fails_before_the_code_is_used(sshd, env_setup):
    counter = sshd.counter()
    name = f"[127.0.0.1]:{sshd.port}"
    expected = (
        f"metis-env: connecting to 127.0.0.1:{sshd.port}\n"
        f"metis-env: the authenticity of {name} can't be established; its ED25519 key fingerprint is {fingerprint(sshd)}\n"
        f"metis-env: error: the host key of {name} (ED25519 {fingerprint(sshd)}) is not known and was not accepted; "
        "check it with ALCF, then run again with --accept-new-host-key or answer yes\n"
    )
    assert result(sync(sshd, sshd.code())) == (8, "", expected)
    assert (sshd.counter(), store_snapshot(env_setup)) == (counter, {})
    accepted = sync(sshd, sshd.code(), "--accept-new-host-key")
    assert accepted.returncode == 0
    assert f"metis-env: added {name} (ED25519) to {ssh_dir() / 'known_hosts'}\n" in accepted.stderr.decode()


def test_a_changed_host_key_is_refused_before_the_code_is_used(sshd, env_setup, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    key_type, key = (tmp_path / "other.pub").read_text().split()[:2]
    (ssh_dir() / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    counter = sshd.counter()
    proc = sync(sshd, sshd.code())
    assert (proc.returncode, proc.stdout, proc.stderr.decode().splitlines()[-1].split(":")[:3]) == (
        9, b"", ["metis-env", " error", " HOST KEY CHANGED for [127.0.0.1]"])
    assert (sshd.counter(), store_snapshot(env_setup)) == (counter, {})


def test_an_ssh_config_alias_supplies_hostname_port_and_user(sshd):
    trust(sshd)
    (ssh_dir() / "config").write_text(f"Host alcf-test\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n")
    proc = metis("sync", "--host", "alcf-test", "--passcode-stdin", input=f"{sshd.code()}\n".encode())
    assert result(proc)[:2] == (0, "")
    assert proc.stderr.decode().splitlines()[:3] == [
        f"metis-env: connecting to alcf-test (127.0.0.1:{sshd.port})",
        f"metis-env: host key ok (ED25519 {fingerprint(sshd)})",
        f"metis-env: authenticating as {sshd.user}",
    ]
    listed = metis("list", "--json")
    assert f'"source": "sync:{sshd.user}@alcf-test"' in listed.stdout.decode()


@pytest.fixture
def short_dir():
    """A folder with a short path: a ControlPath socket name must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_via_openssh_reuses_an_open_controlmaster_and_asks_no_code(sshd, tmp_path, short_dir):
    """The user's ControlMaster connection is open (one code, typed once a day); sync asks none."""
    asked = tmp_path / "askpass.log"
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho asked >> {asked}\noathtool --hotp --counter=\"$(cat {tmp_path}/counter)\" {sshd_secret()}\n")
    askpass.chmod(0o755)
    last = sshd.counter()
    (tmp_path / "counter").write_text(str(0 if last is None else last + 1))
    config = tmp_path / "ssh_config"
    # OpenSSH reads ~ from the password database, not $HOME: hence -F and explicit paths.
    config.write_text(
        f"Host alcf-cm\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n"
        f"  ControlPath {short_dir / '%C'}\n  ControlMaster auto\n  ControlPersist 120\n"
    )
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    subprocess.run(["setsid", "-w", "ssh", "-F", str(config), "-f", "-N", "-o", "ControlMaster=yes", "alcf-cm"],
                   env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
    try:
        assert asked.read_text() == "asked\n"
        counter = sshd.counter()
        proc = subprocess.run(
            ["setsid", "-w", *metis_argv("sync", "--via", "openssh", "--host", "alcf-cm")],
            env={**env, "METIS_ENV_SSH_COMMAND": f"ssh -F {config}"}, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )
        assert result(proc) == (0, "", (
            "metis-env: running ssh alcf-cm (an open ControlMaster connection needs no passcode)\n"
            "metis-env: fetched 2/2\nendpoint 1: new\nendpoint 2: new\n"))
        assert (asked.read_text(), sshd.counter()) == ("asked\n", counter)
    finally:
        subprocess.run(["ssh", "-F", str(config), "-O", "exit", "alcf-cm"], capture_output=True, timeout=30)


def test_via_openssh_without_a_master_asks_through_ssh_and_maps_a_refusal(sshd, tmp_path, env_setup):
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho 000000\n")
    askpass.chmod(0o755)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host alcf-plain\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n  NumberOfPasswordPrompts 1\n"
    )
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "METIS_ENV_SSH_COMMAND": f"ssh -F {config}"}
    proc = subprocess.run(["setsid", "-w", *metis_argv("sync", "--via", "openssh", "--host", "alcf-plain")],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr.decode().splitlines()[-1]) == (
        10, b"", "metis-env: error: ssh could not log in to alcf-plain (see ssh's message above)")
    assert store_snapshot(env_setup) == {}


def plain_ssh_config(sshd, tmp_path, strict: str = "accept-new") -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host alcf-plain\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  StrictHostKeyChecking {strict}\n"
    )
    return config


@pytest.mark.parametrize("right", [True, False])
def test_via_openssh_with_passcode_stdin_hands_ssh_exactly_one_code(sshd, tmp_path, env_setup, right):
    config = plain_ssh_config(sshd, tmp_path)
    counter = sshd.counter()
    code = sshd.code() if right else ("000000" if sshd.code() != "000000" else "111111")
    proc = subprocess.run(
        ["setsid", "-w", *metis_argv("sync", "--via", "openssh", "--host", "alcf-plain", "--passcode-stdin")],
        env={**os.environ, "METIS_ENV_SSH_COMMAND": f"ssh -F {config}"}, input=f"{code}\n".encode(), capture_output=True, timeout=60,
    )
    err = proc.stderr.decode()
    assert code not in err
    if right:
        assert (proc.returncode, proc.stdout, err.splitlines()[-2:]) == (0, b"", ["endpoint 1: new", "endpoint 2: new"])
        assert sshd.counter() == (0 if counter is None else counter + 1)
    else:
        assert (proc.returncode, proc.stdout, err.splitlines()[-1]) == (
            10, b"", "metis-env: error: ssh could not log in to alcf-plain (see ssh's message above)")
        assert (sshd.counter(), store_snapshot(env_setup)) == (counter, {})
    assert not list(Path(tempfile.gettempdir()).glob("metis-env-askpass-*"))


def test_via_openssh_an_unknown_host_is_refused_and_the_code_unused(sshd, tmp_path, env_setup):
    config = plain_ssh_config(sshd, tmp_path, strict="ask")
    counter = sshd.counter()
    proc = subprocess.run(
        ["setsid", "-w", *metis_argv("sync", "--via", "openssh", "--host", "alcf-plain", "--passcode-stdin")],
        env={**os.environ, "METIS_ENV_SSH_COMMAND": f"ssh -F {config}"}, input=f"{sshd.code()}\n".encode(), capture_output=True, timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr.decode().splitlines()[-1]) == (
        8, b"", "metis-env: error: ssh could not verify the host key of alcf-plain; connect once with ssh, or run with --accept-new-host-key")
    assert (sshd.counter(), store_snapshot(env_setup)) == (counter, {})


def metis_argv(*args: str) -> list[str]:
    import sys

    from tests.conftest import REPO

    return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "metis_env", *args]


def sshd_secret() -> str:
    from tests._sshd import SECRET_HEX

    return SECRET_HEX
