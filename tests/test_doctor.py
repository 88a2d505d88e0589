"""doctor on the machines newcomers have: no keyring, a locked one, loose modes, stale data, ...

Each case runs the real CLI in a subprocess and asserts whole lines of the report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from metis_env.commands import doctor
from metis_env.settings import load_settings
from metis_env.store import Store
from tests._secret_service import secret_service
from tests.conftest import ENDPOINT_1, metis

FILE_STORE_FIX = "or use the file store: metis-env --store file sync (or export METIS_ENV_STORE=file)"
PROBLEMS_STDERR = "metis-env: error: doctor found 1 problem(s) ({}); each is listed above with its fix\n"


def run_doctor(*args: str, env: dict | None = None) -> tuple[int, list[str], str]:
    proc = metis("doctor", *args, env=env)
    return proc.returncode, proc.stdout.decode().splitlines(), proc.stderr.decode()


def line_of(lines: list[str], name: str) -> str:
    """The report line of one finding (names are followed by a colon)."""
    found = [line for line in lines if line[9:].startswith(f"{name}:")]
    assert len(found) == 1, lines
    return found[0]


def lines_of(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line[9:].startswith(f"{name}:")]


def test_no_keyring_backend_is_a_problem_with_its_fix():
    # conftest sets PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring for subprocesses
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("keyring"))
    assert line_of(lines, "keyring") == (
        "problem  keyring: no OS keyring is available: keyring chose keyring.backends.fail.Keyring, named by "
        "PYTHON_KEYRING_BACKEND; fix: unset PYTHON_KEYRING_BACKEND (it names keyring.backends.fail.Keyring) to let "
        f"keyring detect one, {FILE_STORE_FIX}"
    )
    assert line_of(lines, "store") == "ok       store: keyring (the default): keys in the OS keyring, service 'metis-env'"
    assert lines[-1] == "1 problem(s), 0 warning(s)"


def test_no_keyring_is_no_problem_with_the_file_store():
    code, lines, stderr = run_doctor(env={"METIS_ENV_STORE": "file"})
    assert (code, stderr) == (0, "")
    assert line_of(lines, "store").startswith("ok       store: file (METIS_ENV_STORE): keys in ")
    assert line_of(lines, "keyring") == (
        "ok       keyring: not used (the store is file); keyring would use keyring.backends.fail.Keyring, "
        "named by PYTHON_KEYRING_BACKEND"
    )
    assert lines[-1] == "0 problem(s), 0 warning(s)"


def test_a_locked_secret_service_is_a_problem_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    with secret_service(tmp_path / "gk", locked=True) as env:
        code, lines, stderr = run_doctor(env=env)
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("keyring"))
    assert line_of(lines, "keyring") == (
        "problem  keyring: keyring.backends.SecretService.Keyring (auto-detected) is locked and refused to unlock "
        "(KeyringLocked: Failed to unlock the collection!); fix: unlock it: log in to the desktop session, or run "
        f"gnome-keyring-daemon --unlock with your login password; {FILE_STORE_FIX}"
    )


def test_an_unlocked_secret_service_is_ok(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    with secret_service(tmp_path / "gk") as env:
        code, lines, stderr = run_doctor(env=env)
    assert (code, stderr) == (0, "")
    line = re.sub(r"answered in \d+ ms", "answered in N ms", line_of(lines, "keyring"))
    assert line == "ok       keyring: keyring.backends.SecretService.Keyring, auto-detected; answered in N ms"


@pytest.fixture
def synced(env_setup, endpoint_files, file_store):
    """Two endpoints imported into the file store; returns the config dir."""
    proc = metis("import", *map(str, endpoint_files))
    assert proc.returncode == 0, proc.stderr
    return env_setup


def test_private_modes_are_ok(synced):
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (0, "")
    assert lines_of(lines, "config dir") == [f"ok       config dir: {synced} (mode 700)"]
    assert line_of(lines, "endpoints.yaml") == f"ok       endpoints.yaml: {synced / 'endpoints.yaml'} (mode 600)"
    assert line_of(lines, "keys.json") == f"ok       keys.json: {synced / 'keys.json'} (mode 600)"


def test_loose_modes_warn_and_a_readable_key_file_is_a_problem(synced):
    os.chmod(synced, 0o755)
    os.chmod(synced / "endpoints.yaml", 0o644)
    os.chmod(synced / "keys.json", 0o640)
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("keys.json"))
    assert line_of(lines, "config dir") == (
        f"warn     config dir: {synced} has mode 755, looser than 700; fix: chmod 700 {synced}"
    )
    assert line_of(lines, "endpoints.yaml") == (
        f"warn     endpoints.yaml: {synced / 'endpoints.yaml'} has mode 644, looser than 600; "
        f"fix: chmod 600 {synced / 'endpoints.yaml'}"
    )
    assert line_of(lines, "keys.json") == (
        f"problem  keys.json: {synced / 'keys.json'} has mode 640, readable by other users: metis-env refuses to "
        f"read keys from it; fix: chmod 600 {synced / 'keys.json'}, then consider the keys seen (metis-env sync "
        "after they rotate)"
    )
    assert line_of(lines, "endpoint 1") == (  # never "ok": its key cannot be read
        "warn     endpoint 1: imported just now; its key is in keys.json, which cannot be read (see keys.json above); "
        "fix: metis-env sync"
    )
    assert lines[-1] == "1 problem(s), 4 warning(s)"  # and endpoints 1 and 2: their keys cannot be read


def test_loose_metadata_alone_is_a_warning_and_exit_0(synced):
    os.chmod(synced / "endpoints.yaml", 0o644)
    code, lines, stderr = run_doctor()
    assert (code, stderr, lines[-1]) == (0, "", "0 problem(s), 1 warning(s)")


def test_a_symlinked_file_and_a_foreign_owner_are_problems(synced, tmp_path):
    elsewhere = tmp_path / "elsewhere.yaml"
    (synced / "config.yaml").rename(elsewhere) if (synced / "config.yaml").exists() else elsewhere.write_text("")
    (synced / "config.yaml").symlink_to(elsewhere)
    if os.geteuid() == 0:
        os.chown(synced / "endpoints.yaml", 65534, 65534)
    code, lines, stderr = run_doctor()
    assert code == 17
    assert line_of(lines, "config.yaml") == (
        f"problem  config.yaml: {synced / 'config.yaml'} is a symbolic link; metis-env refuses to read it; "
        f"fix: remove the link: rm {synced / 'config.yaml'}"
    )
    if os.geteuid() == 0:
        path = synced / "endpoints.yaml"
        assert line_of(lines, "endpoints.yaml") == (
            f"problem  endpoints.yaml: {path} belongs to another user (uid 65534); fix: move it away: mv {path} {path}.old"
        )


def _age_metadata(config_dir, days: int) -> None:
    path = config_dir / "endpoints.yaml"
    data = json.loads(path.read_text())
    import datetime as dt

    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).replace(microsecond=0).isoformat()
    for record in data["endpoints"].values():
        record["synced_at"] = when
    path.write_text(json.dumps(data))


def test_stale_data_is_a_warning_with_its_fix(synced):
    _age_metadata(synced, 45)
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (0, "")
    assert lines_of(lines, "endpoint 1") + lines_of(lines, "endpoint 2") == [
        "warn     endpoint 1: imported 45 days ago, older than stale_after_days (30); new at the last import; "
        "fix: metis-env sync",
        "warn     endpoint 2: imported 45 days ago, older than stale_after_days (30); new at the last import; "
        "fix: metis-env sync",
    ]


def test_fresh_data_and_a_rotated_key_are_reported(synced, tmp_path):
    settings = load_settings()
    before = Store(settings).endpoints()["1"].fingerprint
    rotated = tmp_path / "metis_endpoint_1.txt"
    rotated.write_text(ENDPOINT_1.replace("sk-test-one-0123456789abcdef", "sk-test-one-rotated-456789abcdef"))
    assert metis("import", str(rotated)).returncode == 0
    after = Store(settings).endpoints()["1"].fingerprint
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (0, "")
    assert lines_of(lines, "endpoint 1") + lines_of(lines, "endpoint 2") == [
        f"ok       endpoint 1: imported just now; key changed at the last import ({before} -> {after})",
        "ok       endpoint 2: imported just now; new at the last import",
    ]


def test_a_missing_key_is_a_problem(synced):
    (synced / "keys.json").write_text('{"version": 1, "keys": {}}\n')
    os.chmod(synced / "keys.json", 0o600)
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (17, "metis-env: error: doctor found 2 problem(s) (endpoint 1, endpoint 2); each is listed above with its fix\n")
    assert line_of(lines, "endpoint 1") == (
        f"problem  endpoint 1: imported just now; the key of endpoint 1 is missing from {synced / 'keys.json'}; "
        "run metis-env sync to fetch it again; fix: metis-env sync"
    )


def test_hooks_are_found_in_rc_files_and_the_direnv_library(tmp_path):
    home = tmp_path / "home"
    (home / ".bashrc").write_text('# eval "$(metis-env hook bash)" (commented out: not installed)\n')
    (home / ".zshrc").write_text('eval "$(metis-env hook zsh)"\n')
    (home / ".config" / "fish" / "conf.d").mkdir(parents=True)
    (home / ".config" / "fish" / "conf.d" / "metis-env.fish").write_text("# the fish hook\n")
    (home / ".config" / "direnv" / "lib").mkdir(parents=True)
    (home / ".config" / "direnv" / "lib" / "metis-env.sh").write_text("use_metis() { :; }\n")
    environ = {"HOME": str(home)}
    assert doctor.check_hooks(environ, which=lambda name: "/usr/bin/metis-env") == [
        doctor.Finding(
            "shell hook", "ok", f"installed for zsh ({home / '.zshrc'}), fish ({home / '.config/fish/conf.d/metis-env.fish'})"
        ),
        doctor.Finding("direnv library", "ok", f"installed at {home / '.config/direnv/lib/metis-env.sh'}"),
    ]
    assert doctor.check_hooks(environ, which=lambda name: None)[-1] == doctor.Finding(
        "shell hook",
        "problem",
        "a hook calls metis-env, but metis-env is not on PATH",
        "put metis-env's directory on PATH (pipx ensurepath) before the hook line",
    )


def test_no_hooks_is_fine():
    assert doctor.check_hooks({"HOME": os.environ["HOME"]}) == [
        doctor.Finding("shell hook", "ok", "not installed (optional: metis-env hook --help)"),
        doctor.Finding("direnv library", "ok", "not installed (optional: metis-env hook direnv --install)"),
    ]


def test_json_has_a_stable_schema(synced):
    os.chmod(synced / "endpoints.yaml", 0o644)
    proc = metis("doctor", "--json")
    data = json.loads(proc.stdout)
    assert (proc.returncode, proc.stderr.decode()) == (0, "")
    assert (data["version"], data["ok"], sorted(data["counts"])) == (1, True, ["ok", "problem", "warn"])
    assert {tuple(sorted(f)) for f in data["findings"]} == {("fix", "message", "name", "status")}
    assert {
        "name": "endpoints.yaml",
        "status": "warn",
        "message": f"{synced / 'endpoints.yaml'} has mode 644, looser than 600",
        "fix": f"chmod 600 {synced / 'endpoints.yaml'}",
    } in data["findings"]


def test_openssh_without_a_control_path_or_a_master(tmp_path):
    settings = load_settings()
    assert doctor.check_openssh(settings, control_path=str(tmp_path / "no-master-%C")) == [
        doctor.Finding(
            "openssh",
            "ok",
            "no live ControlMaster connection to sambanova.alcf.anl.gov: the next sync --via openssh asks for a passcode",
        )
    ]
    assert doctor.check_openssh(settings, which=lambda name: None) == [
        doctor.Finding("openssh", "ok", "ssh is not installed (only --via openssh needs it)")
    ]


def test_doctor_writes_nothing(tmp_path):
    code, _lines, _stderr = run_doctor(env={"METIS_ENV_STORE": "file"})
    assert code == 0
    assert not (tmp_path / "config").exists()
    assert subprocess.run(["ls", "-A", str(tmp_path / "home")], capture_output=True, text=True).stdout == ""


def test_no_known_hosts_entry_is_a_warning_with_its_fix(file_store):
    from metis_env.endpoint import parse_endpoint_file

    Store(load_settings()).replace_all([parse_endpoint_file(ENDPOINT_1, "metis_endpoint_1.txt")], "sync:alice@sambanova.alcf.anl.gov")
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (0, "")
    assert line_of(lines, "known_hosts") == (
        "warn     known_hosts: no host key for sambanova.alcf.anl.gov in ~/.ssh/known_hosts, ~/.ssh/known_hosts2, "
        "/etc/ssh/ssh_known_hosts, /etc/ssh/ssh_known_hosts2: the first sync shows its fingerprint and asks before "
        "trusting it (a sync without a terminal fails); fix: compare the fingerprint sync shows with ALCF's "
        "published one and answer yes, or run ssh sambanova.alcf.anl.gov once"
    )
    assert line_of(lines, "ssh config") == (
        "ok       ssh config: sambanova.alcf.anl.gov -> sambanova.alcf.anl.gov:22, no user name set yet "
        "(sync asks once and remembers it)"
    )


def test_the_ssh_config_and_known_hosts_are_read_as_sync_reads_them(file_store, tmp_path):
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(
        "Host metis\n  HostName sambanova.alcf.anl.gov\n  User alice\n  Port 2222\n  UserKnownHostsFile ~/.ssh/alcf_hosts\n"
    )
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    (ssh_dir / "alcf_hosts").write_text(f"[sambanova.alcf.anl.gov]:2222 ssh-ed25519 {key}\n")
    code, lines, stderr = run_doctor(env={"METIS_ENV_HOST": "metis"})
    assert (code, stderr) == (0, "")
    assert line_of(lines, "ssh config") == "ok       ssh config: metis -> sambanova.alcf.anl.gov:2222, as alice (from the ssh config)"
    assert line_of(lines, "known_hosts") == (
        "ok       known_hosts: [sambanova.alcf.anl.gov]:2222: ED25519 in ~/.ssh/alcf_hosts:1"
    )


def test_a_proxy_command_needs_the_openssh_transport(file_store, tmp_path):
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text("Host sambanova.alcf.anl.gov\n  ProxyCommand nc -X connect -x proxy:3128 %h %p\n")
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("ssh config"))
    assert line_of(lines, "ssh config") == (
        "problem  ssh config: sambanova.alcf.anl.gov -> sambanova.alcf.anl.gov:22 through a ProxyCommand, no user "
        "name set yet (sync asks once and remembers it); metis-env's own SSH cannot follow a ProxyCommand or a "
        "multi-hop ProxyJump; fix: metis-env config set transport openssh (or metis-env sync --via openssh)"
    )


def test_a_bad_setting_is_reported_and_doctor_goes_on(file_store):
    code, lines, stderr = run_doctor(env={"METIS_ENV_PORT": "seventy"})
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("settings"))
    assert lines[0] == (
        "problem  settings: METIS_ENV_PORT: port must be a number from 1 to 65535; sync refuses it (the other commands "
        "do not use it); fix: fix the value named (metis-env config list shows where it comes from)"
    )


def test_a_live_controlmaster_is_found(tmp_path):
    """A real OpenSSH master connection to the in-process login node, found by ssh -O check."""
    import shutil

    from metis_env.settings import Settings
    from metis_env.testing.loginnode import LoginNode

    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is needed")
    home = tmp_path / "node-home"
    home.mkdir()
    socket_path = tmp_path / "cm.sock"
    askpass = tmp_path / "askpass.sh"
    with LoginNode(home, "demo", b"0123456789abcdefghij") as node:
        askpass.write_text(f"#!/bin/sh\necho {node.expected_code()}\n")
        askpass.chmod(0o700)
        base = ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-p", str(node.port)]
        env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
        subprocess.run(
            [*base, "-M", "-N", "-f", "-o", "ControlPersist=60", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=accept-new",
             "-o", "PreferredAuthentications=keyboard-interactive", "demo@127.0.0.1"],
            stdin=subprocess.DEVNULL, capture_output=True, env=env, start_new_session=True, timeout=30, check=True,
        )
        try:
            settings = Settings(config_dir=tmp_path / "config", host="127.0.0.1", port=node.port, user="demo")
            assert doctor.check_openssh(settings, control_path=str(socket_path)) == [
                doctor.Finding(
                    "openssh", "ok", "a ControlMaster connection to 127.0.0.1 is live: sync --via openssh needs no passcode now"
                )
            ]
        finally:
            subprocess.run([*base, "-O", "exit", "demo@127.0.0.1"], capture_output=True, timeout=30)
    assert doctor.check_openssh(settings, control_path=str(socket_path)) == [
        doctor.Finding(
            "openssh", "ok", "no live ControlMaster connection to 127.0.0.1: the next sync --via openssh asks for a passcode"
        )
    ]


def test_a_keyring_backend_that_does_not_exist():
    code, lines, stderr = run_doctor(env={"PYTHON_KEYRING_BACKEND": "no_such_module.Keyring"})
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("keyring"))
    assert line_of(lines, "keyring") == (
        "problem  keyring: keyring could not load a backend, named by PYTHON_KEYRING_BACKEND (ModuleNotFoundError: "
        "No module named 'no_such_module'); fix: unset PYTHON_KEYRING_BACKEND (it names no_such_module.Keyring) to "
        f"let keyring detect one, {FILE_STORE_FIX}"
    )


# One cause, one finding: a config dir doctor cannot read, or one bad value in config.yaml, must not
# also produce "no OS keyring" (config.yaml says store: file) or an endpoints problem.
@pytest.mark.parametrize("case", ["symlinked dir", "foreign dir", "one bad value"])
def test_one_cause_gives_one_finding_with_its_own_fix(case, tmp_path, monkeypatch):
    real = tmp_path / "real-config"
    real.mkdir(mode=0o700)
    (real / "config.yaml").write_text("store: file\n" + ("timeout: -3\n" if case == "one bad value" else ""))
    os.chmod(real / "config.yaml", 0o600)
    config = {"symlinked dir": tmp_path / "link", "foreign dir": real, "one bad value": real}[case]
    if case == "symlinked dir":
        config.symlink_to(real)
    if case == "foreign dir":
        os.chown(real, 65534, 65534)
    monkeypatch.delenv("METIS_ENV_STORE", raising=False)
    code, lines, stderr = run_doctor(env={"METIS_ENV_CONFIG_DIR": str(config), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    problems = [line for line in lines if line.startswith("problem")]
    expected = {
        "symlinked dir": f"problem  config dir: {config} is a symbolic link; refusing to keep credentials there (remove the link); "
                         "fix: move it away, or set METIS_ENV_CONFIG_DIR to a directory of your own",
        "foreign dir": f"problem  config dir: {config} belongs to another user (uid 65534); refusing to use it; "
                       "fix: move it away, or set METIS_ENV_CONFIG_DIR to a directory of your own",
        "one bad value": f"problem  settings: {real / 'config.yaml'}: timeout must be a positive number; doctor goes on with the "
                         "valid settings and defaults for the rest; fix: fix the value named, or delete config.yaml",
    }[case]
    assert (code, problems) == (17, [expected])


def test_a_jump_host_sync_refuses_is_a_problem_in_syncs_words(file_store, tmp_path):
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(
        "Host sambanova.alcf.anl.gov\n  ProxyJump bastion\n  User ada\nHost bastion\n  ProxyJump outer\n"
    )
    code, lines, stderr = run_doctor()
    assert (code, stderr) == (17, PROBLEMS_STDERR.format("ssh config"))
    assert line_of(lines, "ssh config") == (
        "problem  ssh config: sambanova.alcf.anl.gov -> sambanova.alcf.anl.gov:22 through ProxyJump bastion, as ada "
        "(from the ssh config); the jump host bastion has its own ProxyJump/ProxyCommand; use --via openssh; "
        "fix: metis-env config set transport openssh (or metis-env sync --via openssh)"
    )


@pytest.mark.parametrize("stored", ["nothing", "an import", "a gateway login"])
def test_no_host_key_is_no_warning_for_who_never_syncs_over_ssh(file_store, stored):
    from metis_env.endpoint import parse_endpoint_file
    from tests.test_store import logged_in_store

    store = Store(load_settings())
    if stored == "an import":
        store.merge([parse_endpoint_file(ENDPOINT_1, "metis_endpoint_1.txt")], "import")
    elif stored == "a gateway login":
        logged_in_store(store)
    code, lines, stderr = run_doctor()
    assert line_of(lines, "known_hosts") == (
        "ok       known_hosts: no host key for sambanova.alcf.anl.gov yet; needed only by sync over SSH, whose "
        "first run shows its fingerprint"
    )


def test_an_endpoint_whose_keyring_cannot_be_read_is_not_ok(env_setup):
    """The key went into a keyring (a laptop's), and doctor runs where no keyring answers."""
    from metis_env.endpoint import parse_endpoint_file

    Store(load_settings()).merge([parse_endpoint_file(ENDPOINT_1, "metis_endpoint_1.txt")], "import")  # in-memory keyring
    for store in ("keyring", "file"):  # the keyring is found broken above, or (file store) not probed at all
        code, lines, stderr = run_doctor(env={"METIS_ENV_STORE": store})
        assert (code, line_of(lines, "endpoint 1")) == (17, {
            "keyring": "warn     endpoint 1: imported just now; its key is in the OS keyring, which cannot be read "
                       "(see keyring above); fix: unlock the keyring (then metis-env store move --to file), or fetch the "
                       "key again into the file store: metis-env --store file sync (import or login)",
            "file": "problem  endpoint 1: imported just now; the key of endpoint 1 is in the OS keyring, and no OS "
                    "keyring is available here (usual on HPC nodes, containers and CI): unlock the keyring (then "
                    "metis-env store move --to file makes the keys usable without it), or fetch the key again into "
                    "the file store (metis-env --store file sync, import or login); fix: unlock the keyring (then "
                    "metis-env store move --to file), or fetch the key again into the file store: metis-env --store "
                    "file sync (import or login)",
        }[store]), lines


def test_the_keyring_probe_waits_as_long_as_the_store_would(monkeypatch):
    """A busy machine: keyring's import alone took most of 3 s. doctor's bound is the store's own, so a
    keyring export would wait for is never called broken."""
    import keyring

    class Hanging(keyring.backend.KeyringBackend):
        priority = 1

        def get_password(self, service, username):
            threading.Event().wait()

        def set_password(self, service, username, password):
            raise NotImplementedError

        def delete_password(self, service, username):
            raise NotImplementedError

    import threading

    from metis_env.keystore import KeyringSecrets

    keyring.set_keyring(Hanging())
    monkeypatch.setenv("METIS_ENV_KEYRING_TIMEOUT", "0.5")
    findings = doctor.check_keyring(load_settings(), environ={})
    monkeypatch.delenv("METIS_ENV_KEYRING_TIMEOUT")
    assert (doctor.KEYRING_PROBE_TIMEOUT, KeyringSecrets().timeout, [f.message for f in findings]) == (
        None, 10.0,
        [f"{Hanging.__module__}.Hanging (auto-detected) did not answer within 0.5 s: locked, or waiting for an unlock dialog"],
    )
