"""metis-env sync against the in-process login node: the protocol paths, every fault, the prompts.

After every failure: one error line, its exit code, and the store byte-for-byte as it was."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import termios
import time
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from metis_env.errors import ConnectionFailedError, HostKeyChangedError
from metis_env.sources import ssh
from metis_env.store import open_store
from metis_env.settings import load_settings
from metis_env.testing.loginnode import Faults, LoginNode, hotp, totp
from tests._loginnode_fixtures import (  # noqa: F401  (fixtures)
    SECRET_HEX,
    USER,
    ScriptedPrompter,
    login_home,
    make_node,
    read_until,
    spawn_on_terminal,
    run_sync_cli,
    store_snapshot,
    trust_host_key,
)
from tests.conftest import ENDPOINT_1, ENDPOINT_2, REPO, metis

ENDPOINT_2_ROTATED = ENDPOINT_2.replace("sk-test-two-0123456789abcdef", "sk-test-two-rotated-456789abcdef")


def progress(node: LoginNode, *extra: str, steps: int = 5) -> str:
    """The progress lines of a sync of the two standard files, up to ``steps`` of them."""
    lines = [
        f"connecting to 127.0.0.1:{node.port}",
        f"host key ok (ED25519 {ssh.fingerprint(node.host_key)})",
        f"authenticating as {USER}",
        "fetched 1/2 metis_endpoint_1.txt",
        "fetched 2/2 metis_endpoint_2.txt",
    ][:steps]
    return "".join(f"metis-env: {line}\n" for line in [*lines, *extra])


def sync(monkeypatch, capfd, node: LoginNode, prompter: ScriptedPrompter | None = None, *args: str) -> tuple[int, str, str]:
    prompter = prompter or ScriptedPrompter([node.expected_code])
    return run_sync_cli(monkeypatch, capfd, prompter, "--host", "127.0.0.1", "--port", str(node.port), "--user", USER, *args)


@pytest.fixture
def synced_node(make_node, login_home, monkeypatch, capfd, env_setup):
    """A node whose two files are already in the store; the remote key of endpoint 2 then rotates, so
    that any partial update by a failing sync would show in the store's bytes."""
    node = make_node()
    assert sync(monkeypatch, capfd, node) == (0, "", progress(node) + "endpoint 1: new\nendpoint 2: new\n")
    (login_home / "metis_endpoint_2.txt").write_text(ENDPOINT_2_ROTATED)
    return node


def test_one_code_fetches_every_file_and_stores_them(make_node, monkeypatch, capfd, env_setup):
    node = make_node()
    prompter = ScriptedPrompter([node.expected_code])
    assert sync(monkeypatch, capfd, node, prompter) == (0, "", progress(node) + "endpoint 1: new\nendpoint 2: new\n")
    assert prompter.asked == [("secret", "Password: ")]
    assert (node.counters.connections, node.counters.codes_accepted, node.counters.codes_refused) == (1, 1, 0)
    stored = open_store(load_settings()).endpoints()
    assert {k: (v.base_url, v.models, v.source) for k, v in stored.items()} == {
        "1": ("https://metis.alcf.anl.gov/v1/", ("DeepSeek-R1",), f"sync:{USER}@127.0.0.1"),
        "2": ("https://metis.alcf.anl.gov/v2/", ("Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct"), f"sync:{USER}@127.0.0.1"),
    }


def test_a_second_sync_reports_rotation_and_removal(synced_node, login_home, monkeypatch, capfd):
    (login_home / "metis_endpoint_1.txt").unlink()
    node = synced_node
    expected = (
        f"metis-env: connecting to 127.0.0.1:{node.port}\n"
        f"metis-env: host key ok (ED25519 {ssh.fingerprint(node.host_key)})\n"
        f"metis-env: authenticating as {USER}\n"
        "metis-env: fetched 1/1 metis_endpoint_2.txt\n"
        "endpoint 1: removed\nendpoint 2: key rotated\n"
    )
    assert sync(monkeypatch, capfd, node) == (0, "", expected)
    assert list(open_store(load_settings()).endpoints()) == ["2"]


def test_dry_run_reports_and_writes_nothing(synced_node, monkeypatch, capfd, env_setup):
    before = store_snapshot(env_setup)
    result = sync(monkeypatch, capfd, synced_node, None, "--dry-run")
    assert result == (0, "", progress(synced_node) + "endpoint 1: would be unchanged\nendpoint 2: key would be rotated\n")
    assert store_snapshot(env_setup) == before


CLOSED = "metis-env: error: 127.0.0.1:{port} closed the connection while {phase}; try again\n"
SILENT = "metis-env: error: 127.0.0.1:{port} stopped answering while {phase} (nothing for 1 s); try again later, or raise --timeout\n"
CODE_LOST = "metis-env: error: 127.0.0.1:{port} closed the connection after the passcode was sent; wait for a new code and run sync again\n"


@pytest.mark.parametrize(
    "faults, steps, error",
    [
        (Faults(drop_at="handshake"), 3, CLOSED.format(port="{port}", phase="logging in")),
        (Faults(drop_at="auth"), 3, CODE_LOST),
        (Faults(drop_at="listdir"), 3, CLOSED.format(port="{port}", phase="listing the home directory")),
        (Faults(drop_at="read"), 3, CLOSED.format(port="{port}", phase="reading the endpoint files")),
        (Faults(hang_at="banner"), 1, SILENT.format(port="{port}", phase="exchanging keys")),
        (Faults(hang_at="auth"), 3, SILENT.format(port="{port}", phase="logging in")),
        (Faults(hang_at="listdir"), 3, SILENT.format(port="{port}", phase="listing the home directory")),
        (Faults(hang_at="read"), 3, SILENT.format(port="{port}", phase="reading the endpoint files")),
    ],
    ids=lambda v: f"{v.drop_at or ''}{v.hang_at or ''}" if isinstance(v, Faults) else None,
)
def test_a_broken_connection_is_one_error_line_and_the_store_is_untouched(
    synced_node, monkeypatch, capfd, env_setup, faults, steps, error
):
    before = store_snapshot(env_setup)
    synced_node.faults = faults
    started = time.monotonic()
    result = sync(monkeypatch, capfd, synced_node, None, "--timeout", "1")
    assert result == (7, "", progress(synced_node, steps=steps) + error.format(port=synced_node.port))
    assert time.monotonic() - started < 5
    assert store_snapshot(env_setup) == before


def test_nothing_listening_is_a_connection_error(synced_node, monkeypatch, capfd, env_setup):
    before = store_snapshot(env_setup)
    port = synced_node.port
    synced_node.stop()
    result = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--host", "127.0.0.1", "--port", str(port), "--user", USER)
    assert result == (7, "", f"metis-env: connecting to 127.0.0.1:{port}\nmetis-env: error: cannot connect to 127.0.0.1:{port}: Connection refused\n")
    assert store_snapshot(env_setup) == before


def test_a_refused_code_is_retried_on_the_same_connection(make_node, monkeypatch, capfd, env_setup):
    node = make_node()
    prompter = ScriptedPrompter(["000000", node.expected_code])
    refused = f"127.0.0.1:{node.port} refused that passcode; wait for the next code (2 tries left)"
    expected = progress(node, steps=3) + f"metis-env: {refused}\n" + progress(node)[len(progress(node, steps=3)) :]
    assert sync(monkeypatch, capfd, node, prompter) == (0, "", expected + "endpoint 1: new\nendpoint 2: new\n")
    assert prompter.asked == [("secret", "Password: ")] * 2
    assert (node.counters.connections, node.counters.codes_accepted, node.counters.codes_refused) == (1, 1, 1)


def test_three_refused_codes_fail_with_their_own_exit_code(synced_node, monkeypatch, capfd, env_setup):
    before = store_snapshot(env_setup)
    connections = synced_node.counters.connections
    prompter = ScriptedPrompter(["000000", "111111", "222222"])
    port = synced_node.port
    expected = progress(synced_node, steps=3) + (
        f"metis-env: 127.0.0.1:{port} refused that passcode; wait for the next code (2 tries left)\n"
        f"metis-env: 127.0.0.1:{port} refused that passcode; wait for the next code (1 try left)\n"
        f"metis-env: error: 127.0.0.1:{port} refused 3 passcodes for {USER}; check the user name and wait for a fresh code before trying again\n"
    )
    assert sync(monkeypatch, capfd, synced_node, prompter) == (10, "", expected)
    assert synced_node.counters.connections == connections + 1
    assert store_snapshot(env_setup) == before


@pytest.mark.parametrize(
    "name, make, exit_code, error",
    [
        ("too big", lambda home: (home / "metis_endpoint_3.txt").write_bytes(b"#" * 70000), 11,
         "on 127.0.0.1:{port}: metis_endpoint_3.txt is 70000 bytes, over the 64 KiB limit; endpoint files must be plain files in the home directory; nothing was read"),
        ("symlink", lambda home: (home / "metis_endpoint_3.txt").symlink_to(home / "metis_endpoint_1.txt"), 11,
         "on 127.0.0.1:{port}: metis_endpoint_3.txt is a symbolic link, not a plain file; endpoint files must be plain files in the home directory; nothing was read"),
        ("directory", lambda home: (home / "metis_endpoint_3.txt").mkdir(), 11,
         "on 127.0.0.1:{port}: metis_endpoint_3.txt is a directory, not a plain file; endpoint files must be plain files in the home directory; nothing was read"),
        ("bad file", lambda home: (home / "metis_endpoint_3.txt").write_text("BASE_URL=https://x.example/\nMODELS=a\n"), 4,
         f"on {USER}@127.0.0.1: metis_endpoint_3.txt: SAMBANOVA_API_KEY is missing; an endpoint file needs BASE_URL, SAMBANOVA_API_KEY, MODELS; nothing was changed"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 12 else None,
)
def test_a_refused_remote_file_leaves_the_store_untouched(
    synced_node, login_home, monkeypatch, capfd, env_setup, name, make, exit_code, error
):
    make(login_home)
    before = store_snapshot(env_setup)
    reads = synced_node.counters.reads
    code, out, err = sync(monkeypatch, capfd, synced_node)
    fetched = "metis-env: fetched 1/3 metis_endpoint_1.txt\nmetis-env: fetched 2/3 metis_endpoint_2.txt\nmetis-env: fetched 3/3 metis_endpoint_3.txt\n"
    shown = progress(synced_node, steps=3) + (fetched if name == "bad file" else "")
    assert (code, out, err) == (exit_code, "", shown + f"metis-env: error: {error.format(port=synced_node.port)}\n")
    assert store_snapshot(env_setup) == before
    if name != "bad file":
        assert synced_node.counters.reads == reads  # refused from the listing alone, nothing read


def test_no_endpoint_file_is_an_error_and_nothing_changes(synced_node, login_home, monkeypatch, capfd, env_setup):
    for path in login_home.glob("metis_endpoint_*.txt"):
        path.unlink()
    before = store_snapshot(env_setup)
    error = (
        f"metis-env: error: no files matching metis_endpoint_*.txt in the home directory of {USER}@127.0.0.1; "
        "nothing was changed (the pattern is the 'pattern' setting)\n"
    )
    assert sync(monkeypatch, capfd, synced_node) == (11, "", progress(synced_node, steps=3) + error)
    assert store_snapshot(env_setup) == before


def test_an_unknown_host_key_declined_costs_no_passcode(make_node, monkeypatch, capfd, env_setup):
    node = make_node(trusted=False)
    prompter = ScriptedPrompter([node.expected_code], confirm=False)
    name = f"[127.0.0.1]:{node.port}"
    fp = ssh.fingerprint(node.host_key)
    expected = (
        f"metis-env: connecting to 127.0.0.1:{node.port}\n"
        f"metis-env: the authenticity of {name} can't be established; its ED25519 key fingerprint is {fp}\n"
        f"metis-env: error: the host key of {name} (ED25519 {fp}) is not known and was not accepted; "
        "check it with ALCF, then run again with --accept-new-host-key or answer yes\n"
    )
    assert sync(monkeypatch, capfd, node, prompter) == (8, "", expected)
    assert prompter.asked == [("confirm", f"Trust {name} and remember its key in ~/.ssh/known_hosts?")]
    assert node.counters.prompts == 0
    assert not Path(os.path.expanduser("~/.ssh/known_hosts")).exists()


@pytest.mark.parametrize("hashed", [True, False])
def test_an_accepted_host_key_is_remembered_as_openssh_writes_it(make_node, monkeypatch, capfd, env_setup, hashed):
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(f"Host *\n  HashKnownHosts {'yes' if hashed else 'no'}\n")
    node = make_node(trusted=False)
    code, out, err = sync(monkeypatch, capfd, node, None, "--accept-new-host-key")
    assert (code, out) == (0, "")
    line = (ssh_dir / "known_hosts").read_text()
    name, key_type, key = line.split()
    assert (key_type, key, line.endswith("\n")) == (node.host_key.get_name(), node.host_key.get_base64(), True)
    assert name.startswith("|1|") if hashed else name == f"[127.0.0.1]:{node.port}"
    assert ssh.host_matches([name], f"[127.0.0.1]:{node.port}")
    assert sync(monkeypatch, capfd, node)[0] == 0  # known now: no question


@pytest.mark.parametrize("setting, exit_code, asked", [("yes", 8, []), ("accept-new", 0, []), ("ask", 8, ["confirm"])])
def test_strict_host_key_checking_in_the_ssh_config_is_honoured(make_node, monkeypatch, capfd, env_setup, setting, exit_code, asked):
    Path(os.path.expanduser("~/.ssh")).mkdir(mode=0o700)
    Path(os.path.expanduser("~/.ssh/config")).write_text(f"Host 127.0.0.1\n  StrictHostKeyChecking {setting}\n")
    node = make_node(trusted=False)
    prompter = ScriptedPrompter([node.expected_code], confirm=False)
    assert sync(monkeypatch, capfd, node, prompter)[0] == exit_code
    assert [kind for kind, _ in prompter.asked if kind != "secret"] == asked
    assert node.counters.prompts == (1 if exit_code == 0 else 0)


def test_a_changed_host_key_is_refused_before_any_passcode(make_node, monkeypatch, capfd, env_setup):
    impostor = make_node(trusted=False)
    genuine = LoginNode(impostor.root_dir, USER, SECRET_HEX)  # same address, another key
    genuine.port = impostor.port
    known_hosts = trust_host_key(genuine)
    prompter = ScriptedPrompter([impostor.expected_code])
    name = f"[127.0.0.1]:{impostor.port}"
    error = (
        f"metis-env: error: HOST KEY CHANGED for {name}: it now sends ED25519 {ssh.fingerprint(impostor.host_key)}, "
        f"but ~/.ssh/known_hosts:1 has a different ED25519 key; someone may be intercepting the connection. "
        f"If the change is expected, remove the old key with: ssh-keygen -R '{name}'\n"
    )
    assert sync(monkeypatch, capfd, impostor, prompter) == (9, "", f"metis-env: connecting to 127.0.0.1:{impostor.port}\n" + error)
    assert (prompter.asked, impostor.counters.prompts) == ([], 0)
    assert known_hosts.read_text() == genuine.host_key_line()


def test_the_user_is_asked_once_and_remembered(make_node, monkeypatch, capfd, env_setup):
    node = make_node()
    prompter = ScriptedPrompter([node.expected_code])
    code, out, err = run_sync_cli(monkeypatch, capfd, prompter, "--host", "127.0.0.1", "--port", str(node.port))
    assert (code, out, prompter.asked[0]) == (0, "", ("ask", "Your user name on 127.0.0.1: "))
    assert "metis-env: remembered user alice in config.yaml\n" in err
    assert load_settings().user == USER
    again = ScriptedPrompter([node.expected_code])
    assert run_sync_cli(monkeypatch, capfd, again, "--host", "127.0.0.1", "--port", str(node.port))[0] == 0
    assert again.asked == [("secret", "Password: ")]


def test_ssh_config_alias_gives_hostname_port_and_user(make_node, monkeypatch, capfd, env_setup):
    node = make_node()
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    (ssh_dir / "config").write_text(f"Include conf.d/*.conf\nHost *\n  User nobody-else\n")
    (ssh_dir / "conf.d").mkdir()
    (ssh_dir / "conf.d" / "metis.conf").write_text(f"Host metis sambanova\n  HostName 127.0.0.1\n  Port {node.port}\n  User {USER}\n")
    prompter = ScriptedPrompter([node.expected_code])
    code, out, err = run_sync_cli(monkeypatch, capfd, prompter, "--host", "metis")
    assert (code, out) == (0, "")
    assert err.startswith(f"metis-env: connecting to metis (127.0.0.1:{node.port})\n")
    assert open_store(load_settings()).endpoints()["1"].source == f"sync:{USER}@metis"


def test_proxyjump_goes_through_one_jump_host(make_node, login_home, monkeypatch, capfd, env_setup, tmp_path):
    target = make_node()
    jump_home = tmp_path / "jump-home"
    jump_home.mkdir()
    jump = make_node(forwarding=True)
    jump.root_dir = jump_home
    Path(os.path.expanduser("~/.ssh/config")).write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {USER}\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  ProxyJump bastion\n"
    )
    prompter = ScriptedPrompter([jump.expected_code, target.expected_code])
    code, out, err = run_sync_cli(monkeypatch, capfd, prompter, "--host", "inner", "--user", USER)
    assert (code, out) == (0, ""), err
    assert err.splitlines()[:2] == [
        f"metis-env: connecting to bastion (127.0.0.1:{jump.port}) (jump host)",
        f"metis-env: host key ok (ED25519 {ssh.fingerprint(jump.host_key)})",
    ]
    assert (jump.counters.codes_accepted, target.counters.codes_accepted) == (1, 1)


def test_a_second_sync_while_one_runs_is_busy_and_connects_nowhere(synced_node, monkeypatch, capfd, env_setup):
    connections = synced_node.counters.connections
    with open_store(load_settings()).locked():
        code, out, err = sync(monkeypatch, capfd, synced_node)
    assert (code, out, err) == (
        16, "", f"metis-env: error: another metis-env sync or import is running (lock {env_setup / 'sync.lock'}); wait for it to finish\n"
    )
    assert synced_node.counters.connections == connections


def test_an_unusable_store_fails_before_connecting(make_node, monkeypatch, capfd, env_setup):
    node = make_node()
    monkeypatch.setenv("METIS_ENV_STORE", "keyring")
    keyring.set_keyring(fail.Keyring())
    code, out, err = sync(monkeypatch, capfd, node)
    assert (code, out, err.count("\n"), err.startswith("metis-env: error: ")) == (5, "", 1, True)
    assert node.counters.connections == 0


def test_passcode_stdin_reads_one_code_and_does_not_retry(synced_node, env_setup):
    before = store_snapshot(env_setup)
    proc = subprocess.run(
        [sys.executable, "-m", "metis_env", "sync", "--host", "127.0.0.1", "--port", str(synced_node.port),
         "--user", USER, "--passcode-stdin"],
        input=b"000000\n", capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )
    error = f"metis-env: error: 127.0.0.1:{synced_node.port} refused the passcode for {USER}; check the user name and wait for a fresh code before trying again\n"
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (10, b"", progress(synced_node, steps=3) + error)
    assert store_snapshot(env_setup) == before


def test_the_passcode_is_typed_on_the_terminal_unechoed_and_stdout_stays_clean(make_node, env_setup):
    """A real pseudo-terminal as the controlling terminal; stdout and stderr are pipes."""
    node = make_node()
    proc, master = spawn_on_terminal("sync", "--host", "127.0.0.1", "--port", str(node.port), "--user", USER)
    seen = read_until(master, b"Password: ")
    code = node.expected_code()
    os.write(master, code.encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    seen += read_until(master, None)
    os.close(master)
    assert (proc.returncode, out) == (0, b""), err
    assert seen.replace(b"\r", b"") == b"Password: \n"
    assert code.encode() not in seen and code.encode() not in err
    assert err.decode().endswith("endpoint 1: new\nendpoint 2: new\n")


def test_a_server_offering_only_password_auth_gets_the_code_as_password(make_node, monkeypatch, capfd, env_setup):
    node = make_node(auth_methods=("password",))
    prompter = ScriptedPrompter([node.expected_code])
    assert sync(monkeypatch, capfd, node, prompter) == (0, "", progress(node) + "endpoint 1: new\nendpoint 2: new\n")
    assert prompter.asked == [("secret", f"{USER}@127.0.0.1's password: ")]


def test_a_key_the_server_accepts_is_tried_first_and_no_code_is_asked(make_node, monkeypatch, capfd, env_setup):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519")], check=True)
    key = ssh.paramiko.PKey.from_path(ssh_dir / "id_ed25519")
    node = make_node(auth_methods=("publickey", "keyboard-interactive"), authorized_keys=(key,))
    prompter = ScriptedPrompter([])
    assert sync(monkeypatch, capfd, node, prompter) == (0, "", progress(node) + "endpoint 1: new\nendpoint 2: new\n")
    assert (prompter.asked, node.counters.prompts) == ([], 0)


def test_an_encrypted_key_is_skipped_and_the_passcode_asked(make_node, monkeypatch, capfd, env_setup):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "phrase", "-f", str(ssh_dir / "id_ed25519")], check=True)
    node = make_node(auth_methods=("publickey", "keyboard-interactive"))
    prompter = ScriptedPrompter([node.expected_code])
    skipped = "skipping ~/.ssh/id_ed25519: it is encrypted (add it to ssh-agent to use it)"
    expected = progress(node, steps=3) + f"metis-env: {skipped}\n"
    code, out, err = sync(monkeypatch, capfd, node, prompter)
    assert (code, out, err) == (0, "", expected + progress(node)[len(progress(node, steps=3)):] + "endpoint 1: new\nendpoint 2: new\n")


def test_match_exec_in_the_ssh_config_points_to_via_openssh(env_setup, file_store):
    """A fresh process, as a user runs it: paramiko is imported there without `invoke`."""
    Path(os.path.expanduser("~/.ssh")).mkdir()
    Path(os.path.expanduser("~/.ssh/config")).write_text('Match exec "true"\n  User x\n')
    proc = metis("sync", "--host", "metis", "--user", USER)
    err = proc.stderr.decode()
    assert (proc.returncode, proc.stdout, err.count("\n")) == (2, b"", 1)
    assert err == (
        "metis-env: error: the ssh config has a Match exec line, which metis-env's fallback ssh config reader does not "
        "run; use --via openssh, or let OpenSSH read the config (ssh installed, $HOME your home directory)\n"
    )


# --- pure parts --------------------------------------------------------------------------------

def test_hotp_and_totp_match_the_rfc_vectors():
    secret = bytes.fromhex(SECRET_HEX)
    assert [hotp(secret, c) for c in range(3)] == ["755224", "287082", "359152"]
    assert totp(secret, at=59, digits=8) == "94287082"  # RFC 6238, SHA-1, T=59


@pytest.mark.parametrize(
    "patterns, name, expected",
    [
        (["host.example"], "host.example", True),
        (["HOST.example"], "host.example", True),
        (["[127.0.0.1]:2222"], "[127.0.0.1]:2222", True),
        (["127.0.0.1"], "[127.0.0.1]:2222", False),
        (["*.alcf.anl.gov"], "sambanova.alcf.anl.gov", True),
        (["sambanova.alcf.anl.go?"], "sambanova.alcf.anl.gov", True),
        (["*.anl.gov", "!sambanova.alcf.anl.gov"], "sambanova.alcf.anl.gov", False),
        ([ssh.paramiko.HostKeys.hash_host("[127.0.0.1]:2222")], "[127.0.0.1]:2222", True),
        ([ssh.paramiko.HostKeys.hash_host("[127.0.0.1]:2222")], "[127.0.0.1]:2223", False),
    ],
)
def test_known_hosts_names_match_as_in_openssh(patterns, name, expected):
    assert ssh.host_matches(patterns, name) is expected


def test_resolve_target_reads_ssh_config_first_value_wins(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host metis\n  HostName sambanova.alcf.anl.gov\n  ConnectTimeout 7\n  ProxyJump me@bastion:2200\n"
        "  UserKnownHostsFile ~/kh\n  HashKnownHosts no\n"
        "Host *\n  User fallback\n  Port 2022\n"
    )
    target = ssh.resolve_target("metis", config=ssh.load_ssh_config([str(config)]))
    assert (target.hostname, target.port, target.user, target.connect_timeout, target.proxy_jump,
            target.known_hosts_files, target.hash_known_hosts) == (
        "sambanova.alcf.anl.gov", 2022, "fallback", 7.0, "me@bastion:2200", ("~/kh",), False)
    overridden = ssh.resolve_target("metis", port=22, user="alice", config=ssh.load_ssh_config([str(config)]))
    assert (overridden.port, overridden.user, overridden.known_hosts_name) == (22, "alice", "sambanova.alcf.anl.gov")


def test_more_than_one_jump_is_a_clear_error(monkeypatch, capfd, env_setup):
    Path(os.path.expanduser("~/.ssh")).mkdir()
    Path(os.path.expanduser("~/.ssh/config")).write_text("Host inner\n  HostName 127.0.0.1\n  ProxyJump a,b\n")
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--host", "inner", "--user", USER)
    assert (code, out, err) == (
        2, "", "metis-env: error: ProxyJump a,b has more than one hop; metis-env's own SSH goes through one jump host: use --via openssh\n"
    )


# --- --via openssh, with a stand-in for ssh that runs the remote script locally --------------------

@pytest.fixture
def fake_ssh(tmp_path, login_home, monkeypatch):
    """An 'ssh' that ignores its options and runs the remote command in login_home, recording argv."""
    script = tmp_path / "fake-ssh"
    log = tmp_path / "fake-ssh.argv"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\nexport HOME={login_home}\nexec sh -s\n')
    script.chmod(0o755)
    monkeypatch.setenv("METIS_ENV_SSH_COMMAND", str(script))
    monkeypatch.setenv("METIS_ENV_STORE", "file")
    return log


def test_via_openssh_fetches_through_one_ssh_command(fake_ssh, login_home, monkeypatch, capfd, env_setup):
    (login_home / "metis_endpoint_1.txt").write_bytes(ENDPOINT_1.encode() + b"# a line with a fake boundary 0123\n")
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--via", "openssh", "--host", "metis", "--user", USER)
    assert (code, out, err) == (0, "", (
        f"metis-env: running {fake_ssh.parent / 'fake-ssh'} metis (an open ControlMaster connection needs no passcode)\n"
        "metis-env: fetched 2/2\nendpoint 1: new\nendpoint 2: new\n"))
    argv = fake_ssh.read_text().splitlines()
    assert argv[-5:] == ["-l", USER, "--", "metis", "sh -s"]


def test_via_openssh_gives_up_on_a_login_node_that_never_answers(tmp_path, monkeypatch, capfd, env_setup):
    hung = tmp_path / "hung-ssh"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    monkeypatch.setenv("METIS_ENV_SSH_COMMAND", str(hung))
    monkeypatch.setenv("METIS_ENV_STORE", "file")
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    started = time.monotonic()
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--via", "openssh", "--host", "metis",
                                  "--user", USER, "--passcode-stdin", "--timeout", "0.5")
    assert (code, out, err.splitlines()[-1]) == (
        7, "", f"metis-env: error: {hung} metis did not finish within 2 s; check the login node, or raise --timeout")
    assert time.monotonic() - started < 10
    assert store_snapshot(env_setup) == {}


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda home: (home / "metis_endpoint_3.txt").symlink_to(home / "metis_endpoint_1.txt"),
         "metis_endpoint_3.txt is a symbolic link, not a plain file"),
        (lambda home: (home / "metis_endpoint_3.txt").mkdir(), "metis_endpoint_3.txt is a directory, not a plain file"),
        (lambda home: (home / "metis_endpoint_3.txt").write_bytes(b"#" * 70000), "metis_endpoint_3.txt is 70000 bytes, over the 64 KiB limit"),
    ],
)
def test_via_openssh_refuses_what_sftp_refuses(fake_ssh, login_home, monkeypatch, capfd, env_setup, make, error):
    make(login_home)
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([]), "--via", "openssh", "--host", "metis")
    assert (code, out, err.splitlines()[-1]) == (
        11, "", f"metis-env: error: on metis: {error}; endpoint files must be plain files in the home directory; nothing was read")
    assert store_snapshot(env_setup) == {}


def test_parse_boundary_output_handles_odd_names_and_rejects_truncation():
    token = "ab" * 16
    name = "metis_endpoint_\nx.txt"
    output = (b"motd junk" + f"\n{token} file 3 {len(name)}\n{name}\n".encode() + b"a\nb" + f"\n{token} end\n\n{token} done\n".encode())
    assert [(f.name, f.data) for f in ssh.parse_boundary_output(output, token, "h")] == [(name, b"a\nb")]
    with pytest.raises(ConnectionFailedError):
        ssh.parse_boundary_output(output[:-10], token, "h")


# --- attack 1: UserKnownHostsFile with % tokens, quoted paths, several files -----------------------

KNOWN_HOSTS_CONFIGS = [
    # (UserKnownHostsFile value, the file (under ~/.ssh) OpenSSH reads the genuine key from, the first file)
    ('"~/.ssh/my hosts"', "my hosts", "my hosts"),
    ("~/.ssh/kh_%h_%p_%r", "kh_127.0.0.1_{port}_alice", "kh_127.0.0.1_{port}_alice"),
    ("~/.ssh/first %d/.ssh/second_%k_%%", "second_metis_%", "first"),
    ("'~/.ssh/a b' \"~/.ssh/c d\"  # two quoted files and a comment", "c d", "a b"),
]


def write_known_hosts_config(node: LoginNode, value: str) -> Path:
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text(f"Host metis\n  HostName 127.0.0.1\n  Port {node.port}\n  UserKnownHostsFile {value}\n  HashKnownHosts no\n")
    return ssh_dir


@pytest.mark.parametrize("value, genuine_file, first_file", KNOWN_HOSTS_CONFIGS)
def test_a_changed_key_is_changed_whatever_userknownhostsfile_holds(make_node, monkeypatch, capfd, env_setup, value, genuine_file, first_file):
    impostor = make_node(trusted=False)
    genuine = LoginNode(impostor.root_dir, USER, SECRET_HEX)  # the key OpenSSH saved; the impostor has another
    ssh_dir = write_known_hosts_config(impostor, value)
    known = ssh_dir / genuine_file.format(port=impostor.port)
    known.write_text(genuine.host_key_line().replace(f"[127.0.0.1]:{genuine.port}", f"[127.0.0.1]:{impostor.port}"))
    before = sorted(p.name for p in ssh_dir.iterdir())
    prompter = ScriptedPrompter([impostor.expected_code], confirm=True)
    code, out, err = run_sync_cli(monkeypatch, capfd, prompter, "--host", "metis", "--user", USER, "--accept-new-host-key")
    shown = "~/.ssh/" + genuine_file.format(port=impostor.port) if "%d" not in value else f"{ssh_dir}/{genuine_file}"
    name = f"[127.0.0.1]:{impostor.port}"
    assert (code, out, err) == (
        9, "",
        f"metis-env: connecting to metis (127.0.0.1:{impostor.port})\n"
        f"metis-env: error: HOST KEY CHANGED for {name}: it now sends ED25519 {ssh.fingerprint(impostor.host_key)}, "
        f"but {shown}:1 has a different ED25519 key; someone may be intercepting the connection. "
        f"If the change is expected, remove the old key with: ssh-keygen -R '{name}'\n",
    )
    assert (prompter.asked, impostor.counters.prompts) == ([], 0)  # no passcode went to the impostor
    assert sorted(p.name for p in ssh_dir.iterdir()) == before  # no junk file (`my`, `%h`) written


@pytest.mark.parametrize("value, genuine_file, first_file", KNOWN_HOSTS_CONFIGS)
def test_a_new_key_goes_to_the_first_userknownhostsfile_expanded(make_node, monkeypatch, capfd, env_setup, value, genuine_file, first_file):
    node = make_node(trusted=False)
    ssh_dir = write_known_hosts_config(node, value)
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([node.expected_code]), "--host", "metis", "--user", USER, "--accept-new-host-key")
    assert (code, out) == (0, "")
    first = first_file.format(port=node.port)
    assert sorted(p.name for p in ssh_dir.iterdir()) == sorted({"config", first})
    assert (ssh_dir / first).read_text() == node.host_key_line()


@pytest.mark.parametrize(
    "mode, phrase",
    [(None, "of no file type the listing names"), (0o040755, "a directory"), (0o120777, "a symbolic link"), (0o010644, "a special file")],
)
def test_a_listed_entry_that_is_not_a_file_is_named_in_plain_words(mode, phrase):
    from metis_env.errors import RemoteFilesError
    from metis_env.sources.ssh.login import _refuse_unusable
    from metis_env.sources.ssh.sftp import DirEntry

    target = ssh.Target(alias="h", hostname="h")
    with pytest.raises(RemoteFilesError) as caught:
        _refuse_unusable([DirEntry("metis_endpoint_1.txt", mode, 5)], target)
    assert str(caught.value) == (
        f"on h: metis_endpoint_1.txt is {phrase}, not a plain file; endpoint files must be plain files in the home "
        "directory; nothing was read"
    )


def test_a_host_ca_in_known_hosts_is_refused_not_turned_into_trust_on_first_use(make_node, monkeypatch, capfd, env_setup):
    node = make_node(trusted=False)
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    ca = LoginNode(node.root_dir, USER, SECRET_HEX).host_key  # stands in for the site's host CA key
    (ssh_dir / "known_hosts").write_text(f"@cert-authority [127.0.0.1]:* {ca.get_name()} {ca.get_base64()}\n")
    before = (ssh_dir / "known_hosts").read_bytes()
    prompter = ScriptedPrompter([node.expected_code], confirm=True)
    assert sync(monkeypatch, capfd, node, prompter, "--accept-new-host-key") == (
        8, "",
        f"metis-env: connecting to 127.0.0.1:{node.port}\n"
        f"metis-env: error: ~/.ssh/known_hosts:1 trusts [127.0.0.1]:{node.port} through a host certificate authority "
        "(@cert-authority), which metis-env's own SSH does not verify; use --via openssh (OpenSSH checks host certificates)\n",
    )
    assert (prompter.asked, node.counters.prompts, (ssh_dir / "known_hosts").read_bytes()) == ([], 0, before)


def test_host_key_alias_is_looked_up_alone_whatever_the_port(make_node, monkeypatch, capfd, env_setup):
    node = make_node(trusted=False)
    ssh_dir = Path(os.path.expanduser("~/.ssh"))
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(f"Host metis\n  HostName 127.0.0.1\n  Port {node.port}\n  HostKeyAlias metis-login\n")
    (ssh_dir / "known_hosts").write_text(f"metis-login {node.host_key.get_name()} {node.host_key.get_base64()}\n")  # as OpenSSH saved it
    code, out, err = run_sync_cli(monkeypatch, capfd, ScriptedPrompter([node.expected_code]), "--host", "metis", "--user", USER)
    assert (code, out, err.splitlines()[1]) == (0, "", f"metis-env: host key ok (ED25519 {ssh.fingerprint(node.host_key)})")


def test_with_openssh_as_the_resolver_a_changed_key_under_tokens_is_changed(make_node, monkeypatch, capfd, env_setup, tmp_path):
    """The same attack as above, with the settings taken from ssh -G (one -F file, as the demo gives)."""
    from metis_env.settings import load_settings as settings
    from metis_env.sources.ssh import config as ssh_config
    from metis_env.sources.ssh.sync import SyncOptions, run_sync

    monkeypatch.setattr(ssh_config, "openssh_client", lambda paths, default: "ssh")
    impostor = make_node(trusted=False)
    genuine = LoginNode(impostor.root_dir, USER, SECRET_HEX)
    kh_dir = tmp_path / "kh dir"
    kh_dir.mkdir()
    (kh_dir / f"kh_metis_{impostor.port}").write_text(
        f"[127.0.0.1]:{impostor.port} {genuine.host_key.get_name()} {genuine.host_key.get_base64()}\n")
    config = tmp_path / "ssh_config"
    config.write_text(f'Host metis\n  HostName 127.0.0.1\n  Port {impostor.port}\n  UserKnownHostsFile "{kh_dir}/kh_%k_%p"\n')
    prompter = ScriptedPrompter([impostor.expected_code], confirm=True)
    options = SyncOptions(host="metis", user=USER, accept_new_host_key=True, ssh_config=(str(config),))
    with pytest.raises(HostKeyChangedError) as caught:
        run_sync(settings(), options, prompter)
    name = f"[127.0.0.1]:{impostor.port}"
    assert str(caught.value) == (
        f"HOST KEY CHANGED for {name}: it now sends ED25519 {ssh.fingerprint(impostor.host_key)}, but "
        f"{kh_dir}/kh_metis_{impostor.port}:1 has a different ED25519 key; someone may be intercepting the connection. "
        f"If the change is expected, remove the old key with: ssh-keygen -R '{name}'"
    )
    assert (prompter.asked, impostor.counters.prompts, sorted(p.name for p in kh_dir.iterdir())) == ([], 0, [f"kh_metis_{impostor.port}"])
