"""Permissions: the config dir is created 0700 and every file in it 0600 whatever the umask; a config
dir or file that is a symlink or belongs to another user is refused by readers and writers alike with
one line; the file store refuses a keys.json that others could read.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests._trust import cases, subprocess_env, write_endpoint
from tests.conftest import metis

pytestmark = pytest.mark.usefixtures("file_store")

KEY = "sk-perm-0123456789abcdef"
NOBODY = pwd.getpwnam("nobody").pw_uid


def result(proc: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def modes(directory: Path) -> dict[str, str]:
    found = {".": oct(stat.S_IMODE(os.lstat(directory).st_mode))}
    for path in sorted(directory.iterdir()):
        found[path.name] = oct(stat.S_IMODE(os.lstat(path).st_mode))
    return found


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o002])
def test_the_config_dir_is_0700_and_every_file_0600_whatever_the_umask(umask, tmp_path, monkeypatch):
    config = tmp_path / "deep" / "er" / "metis-env"
    monkeypatch.setenv("METIS_ENV_CONFIG_DIR", str(config))
    endpoint = write_endpoint(tmp_path / "files", "1", KEY)
    for args in (["import", str(endpoint)], ["config", "set", "default_endpoint", "1"], ["forget", "1"], ["import", str(endpoint)]):
        proc = subprocess.run([sys.executable, "-m", "metis_env", *args], env=subprocess_env(), capture_output=True,
                              preexec_fn=lambda: os.umask(umask), timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert modes(config) == {".": "0o700", "config.yaml": "0o600", "endpoints.yaml": "0o600", "keys.json": "0o600", "sync.lock": "0o600"}


def test_an_existing_loose_config_dir_and_metadata_are_tightened_on_the_next_write(tmp_path, env_setup):
    endpoint = write_endpoint(tmp_path / "files", "1", KEY)
    metis("import", str(endpoint), check=True)
    env_setup.chmod(0o755)
    (env_setup / "endpoints.yaml").chmod(0o644)
    assert result(metis("import", str(endpoint))) == (0, "", "endpoint 1: unchanged\n")
    assert modes(env_setup) == {".": "0o700", "endpoints.yaml": "0o600", "keys.json": "0o600", "sync.lock": "0o600"}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o700])
def test_the_file_store_refuses_a_keys_file_others_can_read(mode, tmp_path, env_setup):
    metis("import", str(write_endpoint(tmp_path / "files", "1", KEY)), check=True)
    keys = env_setup / "keys.json"
    keys.chmod(mode)
    message = f"metis-env: error: {keys} is readable by other users (mode {mode:o}); run: chmod 600 {keys}\n"
    if not mode & 0o077:
        assert result(metis("get", "key", "1")) == (0, KEY + "\n", "")
        return
    assert result(metis("export", "1")) == (6, "false\n", message)
    assert result(metis("get", "key", "1")) == (6, "", message)
    assert result(metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"))) == (6, "", message)
    assert stat.S_IMODE(keys.stat().st_mode) == mode  # refused, not silently "fixed"


COMMANDS = {
    # command: (argv, what stdout holds when it is refused)
    "export": (["export", "1"], "false\n"),
    "get": (["get", "key", "1"], ""),
    "list": (["list"], ""),
    "import": (["import", "{file}"], ""),
    "config set": (["config", "set", "default_model", "DeepSeek-R1"], ""),
    "forget": (["forget", "1"], ""),
}


def refused_everywhere(config: Path, endpoint: Path, message: str) -> list:
    """Run every command against ``config``; the ones that did not give exactly ``message``."""
    wrong = []
    for name, (argv, stdout) in COMMANDS.items():
        argv = [a.format(file=endpoint) for a in argv]
        got = result(metis(*argv, env={"METIS_ENV_CONFIG_DIR": str(config)}))
        if got[1:] != (stdout, message) or got[0] not in (5, 6):
            wrong.append((name, got))
    return wrong


def stored_config(tmp_path: Path, env_setup: Path) -> Path:
    endpoint = write_endpoint(tmp_path / "files", "1", KEY)
    metis("import", str(endpoint), check=True)
    metis("config", "set", "default_endpoint", "1", check=True)
    return endpoint


def test_a_symlinked_config_dir_is_refused_by_every_command(tmp_path, env_setup):
    endpoint = stored_config(tmp_path, env_setup)
    link = tmp_path / "linked-config"
    link.symlink_to(env_setup)
    before = {p.name: p.read_bytes() for p in env_setup.iterdir()}
    message = f"metis-env: error: {link} is a symbolic link; refusing to keep credentials there (remove the link)\n"
    assert refused_everywhere(link, endpoint, message) == []
    assert {p.name: p.read_bytes() for p in env_setup.iterdir()} == before
    cases(len(COMMANDS))


def test_a_config_dir_owned_by_another_user_is_refused_by_every_command(tmp_path, env_setup):
    endpoint = stored_config(tmp_path, env_setup)
    os.chown(env_setup, NOBODY, -1)
    message = f"metis-env: error: {env_setup} belongs to another user (uid {NOBODY}); refusing to use it\n"
    assert refused_everywhere(env_setup, endpoint, message) == []
    cases(len(COMMANDS))


@pytest.mark.parametrize("name", ["endpoints.yaml", "config.yaml", "keys.json", "sync.lock"])
def test_a_symlinked_or_foreign_file_in_the_config_dir_is_refused_and_its_target_untouched(name, tmp_path, env_setup):
    endpoint = stored_config(tmp_path, env_setup)
    path = env_setup / name
    # a symlink to a copy: the content is fine, the link is the attack (it could point anywhere)
    target = tmp_path / "elsewhere" / name
    target.parent.mkdir()
    shutil.copy2(path, target)
    target.chmod(0o644)
    original = target.read_bytes()
    path.unlink()
    path.symlink_to(target)
    link_message = {
        "sync.lock": f"metis-env: error: {path} is a symbolic link; refusing to use it (remove the link)\n",
    }.get(name, f"metis-env: error: {path} is a symbolic link; refusing to read it (remove the link)\n")
    writers = {"import", "forget"} | ({"config set"} if name != "sync.lock" else set())
    for command, (argv, stdout) in COMMANDS.items():
        if name == "sync.lock" and command not in writers:
            continue  # readers never take the lock
        if name == "keys.json" and command in ("list", "config set"):
            continue  # list shows the key as unreadable and goes on; config never reads keys
        if name == "endpoints.yaml" and command == "config set":
            continue  # config never reads the metadata
        argv = [a.format(file=endpoint) for a in argv]
        assert result(metis(*argv)) == (6, stdout, link_message), (command, name)
    assert (target.read_bytes(), stat.S_IMODE(target.stat().st_mode)) == (original, 0o644)
    path.unlink()
    shutil.copy2(target, path)
    path.chmod(0o600)
    os.chown(path, NOBODY, -1)
    foreign = f"metis-env: error: {path} belongs to another user (uid {NOBODY}); refusing to read it\n"
    if name == "sync.lock":
        return  # a lock file holds nothing to read; the dir (0700, ours) decides who can swap it
    for command in ("export", "import"):
        argv, stdout = COMMANDS[command]
        argv = [a.format(file=endpoint) for a in argv]
        assert result(metis(*argv)) == (6, stdout, foreign), (command, name)
    cases(len(COMMANDS) + 2)


# Attack: a FIFO (or a device) planted as a config file in a loose (0777) config dir hung every command
# in open(), before the type and owner checks could refuse it.
@pytest.mark.parametrize("name", ["config.yaml", "endpoints.yaml", "keys.json"])
def test_a_fifo_planted_in_a_loose_config_dir_is_refused_at_once_and_the_dir_tightened(name, tmp_path, env_setup):
    write_endpoint(tmp_path / "files", "1", KEY)
    metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"), check=True)
    (env_setup / name).unlink(missing_ok=True)
    os.mkfifo(env_setup / name)
    os.chmod(env_setup, 0o777)
    path = env_setup / name
    stdout = {"export": "false\n"}
    for argv in (["export", "1"], ["get", "key", "1"], ["list"], ["config", "list"], ["import", str(tmp_path / "files" / "metis_endpoint_1.txt")]):
        if (name != "config.yaml" and argv[0] == "config") or (name == "keys.json" and argv[0] == "list"):
            continue  # config list reads no store; list shows an unreadable key as such and goes on
        proc = subprocess.run([sys.executable, "-m", "metis_env", *argv], capture_output=True, timeout=20, env=subprocess_env())
        assert result(proc) == (6, stdout.get(argv[0], ""), f"metis-env: error: {path} is not a regular file; move it away\n"), argv
        assert stat.S_IMODE(os.lstat(env_setup).st_mode) == 0o700
        os.chmod(env_setup, 0o777)
    cases(5)


def test_doctor_reports_a_loose_dir_and_a_fifo_without_changing_or_hanging(tmp_path, env_setup):
    env_setup.mkdir(mode=0o700)
    os.mkfifo(env_setup / "config.yaml")
    os.chmod(env_setup, 0o777)
    proc = subprocess.run([sys.executable, "-m", "metis_env", "doctor", "--json"], capture_output=True, timeout=60, env=subprocess_env())
    import json

    found = {f["name"]: (f["status"], f["message"]) for f in json.loads(proc.stdout)["findings"]}
    assert (proc.returncode, found["config dir"], found["config.yaml"], stat.S_IMODE(os.lstat(env_setup).st_mode)) == (
        17,
        ("warn", f"{env_setup} has mode 777, looser than 700"),
        ("problem", f"{env_setup / 'config.yaml'} is not a regular file"),
        0o777,
    )


# Attack: `hook --install` under umask 000 created ~/.local/share/metis-env world-writable, so another
# user could replace the file ~/.bashrc sources.
@pytest.mark.parametrize("target", ["bash", "zsh", "fish", "direnv"])
def test_hook_install_under_umask_000_creates_nothing_others_can_write(target, tmp_path):
    home = tmp_path / "hook-home"
    home.mkdir(mode=0o755)
    env = subprocess_env(HOME=str(home), XDG_CONFIG_HOME="", XDG_DATA_HOME="")
    env.pop("DIRENV_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "metis_env", "hook", target, "--install"], capture_output=True, timeout=60,
                          env=env, preexec_fn=lambda: os.umask(0o000))
    assert proc.returncode == 0, proc.stderr
    written = {str(p.relative_to(home)): oct(stat.S_IMODE(os.lstat(p).st_mode)) for p in sorted(home.rglob("*"))}
    loose = {p: m for p, m in written.items() if int(m, 8) & 0o022}
    assert (loose, len(written) >= 3) == ({}, True), written
