"""Trust suite, category ``loginnode``: a hostile login node (after its host key is accepted) and a
hostile ssh config. Each attack ends in one error line saying what happened, its exit code, bounded
time and memory, and the store byte for byte as it was.

Attacks: endless keyboard-interactive rounds that ask nothing (with flooding instruction text), too
many or too large endpoint files, malformed, endless and unsolicited SFTP replies, names with ``/``,
two files naming one endpoint, an unreadable file behind ``--via openssh``, recursive Includes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from metis_env.sources import ssh
from metis_env.testing.loginnode import Faults
from tests._loginnode_fixtures import (  # noqa: F401  (fixtures)
    USER,
    ScriptedPrompter,
    login_home,
    make_node,
    run_sync_cli,
    store_snapshot,
)


def sync(monkeypatch, capfd, node, *args: str) -> tuple[int, str, str]:
    prompter = ScriptedPrompter([node.expected_code])
    return run_sync_cli(monkeypatch, capfd, prompter, "--host", "127.0.0.1", "--port", str(node.port), "--user", USER, *args)


def head(node, steps: int = 3) -> str:
    lines = [f"connecting to 127.0.0.1:{node.port}", f"host key ok (ED25519 {ssh.fingerprint(node.host_key)})", f"authenticating as {USER}"]
    return "".join(f"metis-env: {line}\n" for line in lines[:steps])


def test_endless_empty_keyboard_interactive_rounds_are_stopped_and_said_so(make_node, monkeypatch, capfd, env_setup):
    node = make_node(Faults(empty_rounds=-1, instructions="flood " * 5000))
    before = store_snapshot(env_setup)
    started = time.monotonic()
    code, out, err = sync(monkeypatch, capfd, node, "--timeout", "2")
    assert (code, out, err) == (
        7, "",
        head(node) + "metis-env: " + ("flood " * 50)[:300] + "...\n"
        f"metis-env: error: 127.0.0.1:{node.port} sent 9 keyboard-interactive rounds that ask nothing (a login takes one "
        "or two); stopped there. The login node is broken or hostile; try again later\n",
    )
    assert time.monotonic() - started < 2  # well inside --timeout, not 235,577 rounds a minute
    assert store_snapshot(env_setup) == before


def test_slow_empty_rounds_are_named_for_what_they_are_not_silence(make_node, monkeypatch, capfd, env_setup):
    node = make_node(Faults(empty_rounds=-1, delay=0.4))
    code, out, err = sync(monkeypatch, capfd, node, "--timeout", "1")
    assert (code, out, err) == (
        7, "",
        head(node) + f"metis-env: error: 127.0.0.1:{node.port} kept sending keyboard-interactive rounds that ask nothing "
        "for 1 s without finishing the login; stopped there; try again later\n",
    )


def test_a_server_alive_but_never_done_is_stopped_at_four_timeouts(make_node, monkeypatch, capfd, env_setup):
    node = make_node(Faults(sftp="endless-readdir", delay=0.3))
    before = store_snapshot(env_setup)
    started = time.monotonic()
    code, out, err = sync(monkeypatch, capfd, node, "--timeout", "1")
    assert (code, out, err) == (
        7, "",
        head(node) + f"metis-env: error: 127.0.0.1:{node.port} kept the sync going for 4 s of server time without "
        "finishing (while listing the home directory); stopped there; try again later, or raise --timeout\n",
    )
    assert 4 <= time.monotonic() - started < 10
    assert store_snapshot(env_setup) == before


@pytest.mark.parametrize(
    "count, size, error",
    [
        (300, 10, "300 files match metis_endpoint_*.txt, over the limit of 256; nothing was read"),
        (80, 60_000, "the files matching metis_endpoint_*.txt hold 4800000 bytes together, over the 4 MiB limit; nothing was read"),
    ],
    ids=["files", "bytes"],
)
def test_too_many_files_or_bytes_are_refused_before_reading_any(make_node, login_home, monkeypatch, capfd, env_setup, count, size, error):
    for path in login_home.glob("metis_endpoint_*.txt"):
        path.unlink()
    for n in range(count):
        (login_home / f"metis_endpoint_{n + 1}.txt").write_bytes(b"#" * size)
    node = make_node()
    before = store_snapshot(env_setup)
    assert sync(monkeypatch, capfd, node) == (11, "", head(node) + f"metis-env: error: on 127.0.0.1:{node.port}: {error}\n")
    assert (node.counters.reads, store_snapshot(env_setup)) == (0, before)


@pytest.mark.parametrize(
    "attack, code, error",
    [
        ("malformed-name", 7, "the connection to 127.0.0.1:{port} broke while listing the home directory: "
         "malformed SFTP NAME reply (truncated SFTP string); try again"),
        ("endless-readdir", 7, "the connection to 127.0.0.1:{port} broke while listing the home directory: "
         "the listing of . goes past 100000 names; refusing to read more; try again"),
        ("unsent-ids", 7, "the connection to 127.0.0.1:{port} broke while listing the home directory: "
         "the server answered request 10000, which was never sent or was already answered; try again"),
        ("slash-names", 11, "on 127.0.0.1:{port}: the listing holds the name metis_endpoint_1/../../x.txt, which is not a "
         "file name in the home directory (it has a /); the server is broken or hostile; nothing was read"),
    ],
)
def test_a_hostile_sftp_server_is_one_error_line(make_node, monkeypatch, capfd, env_setup, attack, code, error):
    node = make_node(Faults(sftp=attack))
    before = store_snapshot(env_setup)
    started = time.monotonic()
    result = sync(monkeypatch, capfd, node, "--timeout", "5")
    assert result == (code, "", head(node) + "metis-env: error: " + error.format(port=node.port) + "\n")
    assert time.monotonic() - started < 5
    assert store_snapshot(env_setup) == before


def test_two_files_naming_one_endpoint_are_refused(make_node, login_home, monkeypatch, capfd, env_setup):
    (login_home / "metis_endpoint_01.txt").write_bytes((login_home / "metis_endpoint_2.txt").read_bytes())
    node = make_node()
    code, out, err = sync(monkeypatch, capfd, node)
    assert (code, out, err.splitlines()[-1]) == (
        11, "", f"metis-env: error: on {USER}@127.0.0.1: metis_endpoint_01.txt and metis_endpoint_1.txt both name "
        "endpoint 1; remove one of them; nothing was changed")
    assert store_snapshot(env_setup) == {}


def test_an_unreadable_remote_file_via_openssh_is_not_a_failed_login(tmp_path, monkeypatch, capfd, env_setup):
    fake = tmp_path / "fake-ssh"  # what sshd relays when the remote wc meets a 0000 file: its stderr, status 98
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'wc: metis_endpoint_1.txt: Permission denied' >&2\nexit 98\n")
    fake.chmod(0o755)
    monkeypatch.setenv("METIS_ENV_SSH_COMMAND", str(fake))
    monkeypatch.setenv("METIS_ENV_STORE", "file")
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--via", "openssh", "--host", "metis", "--user", USER)
    assert (code, out, err.splitlines()[1:]) == (11, "", [
        "metis-env: ssh: wc: metis_endpoint_1.txt: Permission denied",
        "metis-env: error: the remote shell on metis could not read the home directory or a file in it (see its message above)",
    ])


def test_ssh_s_own_messages_are_not_prefixed_twice(tmp_path, monkeypatch, capfd, env_setup):
    fake = tmp_path / "fake-ssh"  # what ssh says, status 255, when the name does not resolve
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'ssh: Could not resolve hostname metis: Name or service not known' >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setenv("METIS_ENV_SSH_COMMAND", str(fake))
    monkeypatch.setenv("METIS_ENV_STORE", "file")
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--via", "openssh", "--host", "metis", "--user", USER)
    assert (code, out, err.splitlines()[1:]) == (7, "", [
        "metis-env: ssh: Could not resolve hostname metis: Name or service not known",
        "metis-env: error: ssh to metis failed with exit status 255 (see ssh's message above)",
    ])


def test_recursive_includes_stop_at_openssh_depth_at_once(tmp_path, monkeypatch, capfd, env_setup):
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    names = [f"c{n}" for n in range(6)]
    for name in names:  # each includes all six: 6**16 files if nothing stopped it
        (ssh_dir / name).write_text("".join(f"Include {other}\n" for other in names) + "User x\n")
    (ssh_dir / "config").write_text("Include c0\n")
    started = time.monotonic()
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--host", "metis", "--user", USER)
    assert (code, out, err) == (
        2, "", f"metis-env: error: cannot read the ssh config: too many recursive configuration includes (in {ssh_dir}/c0); "
        "fix the Include lines\n")
    assert time.monotonic() - started < 2
