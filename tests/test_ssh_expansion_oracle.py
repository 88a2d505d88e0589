"""The files metis-env reads for a login (known_hosts, identities), held against the files OpenSSH
itself opens: ``ssh -vvv`` connecting to a real sshd prints each one (``load_hostkeys: fopen PATH``,
``identity file PATH``); none exists, so the host key is never known and no passcode is asked.

The configs are those where metis-env's own reading once differed from OpenSSH's: ``${VAR}``,
``%`` tokens, quotes, spaces and ``Match exec`` (which makes the fallback reader refuse, and once
made the OpenSSH route split a path at its space). Both of metis-env's readers are held: OpenSSH as
the resolver (``ssh -G``), and the fallback parser, which refuses ``Match exec`` in one line."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from metis_env.errors import UsageError
from metis_env.sources import ssh
from tests._sshd import real_sshd, sshd  # noqa: F401  (fixtures)

MATCH_EXEC = 'Match exec "true"\n  ConnectTimeout 20\n'

# (id, the Host block's lines, a Match exec block after it?)
TABLE = [
    ("${HOME} and a space in UserKnownHostsFile", ['UserKnownHostsFile "${HOME}/ALCF keys/known_hosts"'], False),
    ("the same under Match exec", ['UserKnownHostsFile "${HOME}/ALCF keys/known_hosts"'], True),
    ("an unexpanded path with a space beside an expanded one, Match exec",
     ['UserKnownHostsFile "{dir}/plain a" "${HOME}/b c" {dir}/third'], True),
    ("%h %p %% and quotes", ['UserKnownHostsFile "{dir}/kh %h_%p_%%" \'{dir}/single q\''], False),
    ("a variable's value holding % is not expanded again",
     ["UserKnownHostsFile ${METIS_T_PCT}", "IdentityFile ${METIS_T_PCT}_id"], True),
    ("IdentityFile ${HOME}, quoted with a space, %r, IdentitiesOnly",
     ["IdentityFile ${HOME}/.ssh/id_alcf", 'IdentityFile "{dir}/id with space_%r"', "IdentitiesOnly yes"], False),
    ("IdentityFile none is skipped", ["IdentityFile none", "IdentityFile {dir}/id_%h_%p"], True),
    ("GlobalKnownHostsFile: no tokens expanded, quoted space", ['GlobalKnownHostsFile "{dir}/g a/%h" {dir}/g2'], False),
    ("UserKnownHostsFile=, several ${VAR}s", ["UserKnownHostsFile=${METIS_T_DIR}/${METIS_T_NAME} {dir}/x"], True),
]


def write_config(tmp_path, sshd, lines: list[str], match_exec: bool) -> str:
    """The Host block; without a UserKnownHostsFile line, one in the test's folder (OpenSSH's default
    is under the password database's home, the fallback's under $HOME, which the tests move)."""
    if not any(line.startswith("UserKnownHostsFile") for line in lines):
        lines = [*lines, "UserKnownHostsFile {dir}/known_hosts"]
    body = "".join(f"  {line}\n" for line in lines).replace("{dir}", str(tmp_path))
    text = f"Host metis\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n{body}"
    path = tmp_path / "ssh_config"
    path.write_text(text + (MATCH_EXEC if match_exec else ""))
    return str(path)


def openssh_opens(config: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known_hosts files, identity files) the real ssh opens to log in to ``metis``, in order."""
    proc = subprocess.run(
        ["ssh", "-vvv", "-F", config, "-o", "BatchMode=yes", "metis", "true"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert "Host key verification failed." in proc.stderr, proc.stderr
    known = re.findall(r"^debug1: load_hostkeys: fopen (.*): No such file or directory$", proc.stderr, re.M)
    identities = re.findall(r"^debug1: identity file (.*) type -?\d+$", proc.stderr, re.M)
    return tuple(dict.fromkeys(known)), tuple(p for p in identities if not p.endswith("-cert"))


def metis_env_opens(config: str, use_openssh: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    target = ssh.resolve_target("metis", config=ssh.load_ssh_config([config], use_openssh=use_openssh))
    known = tuple(os.path.expanduser(p) for p in target.known_hosts_files + target.global_known_hosts_files)
    return tuple(dict.fromkeys(known)), tuple(os.path.expanduser(p) for p in target.identity_files)


@pytest.fixture
def variables(monkeypatch, tmp_path):
    monkeypatch.setenv("METIS_T_PCT", f"{tmp_path}/p%h")
    monkeypatch.setenv("METIS_T_DIR", f"{tmp_path}/a dir")
    monkeypatch.setenv("METIS_T_NAME", "known hosts")


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_openssh_as_the_resolver_reads_the_files_openssh_opens(case, real_sshd, tmp_path, variables):
    _, lines, match_exec = case
    config = write_config(tmp_path, real_sshd, lines, match_exec)
    known, identities = openssh_opens(config)
    mine_known, mine_identities = metis_env_opens(config, use_openssh=True)
    assert (mine_known, mine_identities if any("IdentityFile" in l for l in lines) else identities) == (known, identities)


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_the_fallback_reads_the_same_files_or_refuses_match_exec(case, real_sshd, tmp_path, variables):
    _, lines, match_exec = case
    config = write_config(tmp_path, real_sshd, lines, match_exec)
    if match_exec:
        with pytest.raises(UsageError, match="Match exec line, which metis-env's fallback ssh config reader does not run"):
            metis_env_opens(config, use_openssh=False)
        return
    known, identities = openssh_opens(config)
    mine_known, mine_identities = metis_env_opens(config, use_openssh=False)
    assert (mine_known, mine_identities if any("IdentityFile" in l for l in lines) else identities) == (known, identities)


UNSET = [
    # (keyword line, what OpenSSH says, on which of its runs)
    ("IdentityFile ${METIS_T_UNSET}/id_alcf", "invalid environment variable expansion"),
    ("UserKnownHostsFile ${METIS_T_UNSET}/known_hosts", "invalid environment variable expansion"),
]


@pytest.mark.parametrize("line, openssh_says", UNSET, ids=["IdentityFile", "UserKnownHostsFile"])
@pytest.mark.parametrize("use_openssh", [True, False], ids=["openssh", "fallback"])
def test_an_unset_variable_stops_as_openssh_stops(line, openssh_says, use_openssh, real_sshd, tmp_path, monkeypatch):
    monkeypatch.delenv("METIS_T_UNSET", raising=False)
    config = write_config(tmp_path, real_sshd, [line], False)
    proc = subprocess.run(["ssh", "-F", config, "-o", "BatchMode=yes", "metis", "true"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (255, openssh_says)
    keyword, value = line.split(" ", 1)
    with pytest.raises(UsageError) as caught:
        metis_env_opens(config, use_openssh=use_openssh)
    if use_openssh and keyword == "UserKnownHostsFile":  # ssh -G itself stops: its words, passed on
        assert str(caught.value) == (
            "OpenSSH refuses the ssh config for metis: vdollar_percent_expand: env var ${METIS_T_UNSET} has no value; "
            "fix it (ssh -G metis shows the same)"
        )
    else:
        assert str(caught.value) == (
            f"ssh config: {keyword} {value}: the environment variable METIS_T_UNSET is not set, so OpenSSH stops here "
            "(\"invalid environment variable expansion\"); set it, or fix the line"
        )


# --- issue 14, security 4: the known_hosts path with a space, under Match exec, with the real sshd --------

def other_key_line(sshd, tmp_path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    key_type, key = (tmp_path / "other.pub").read_text().split()[:2]
    return f"[127.0.0.1]:{sshd.port} {key_type} {key}\n"


def openssh_verdict(config: str) -> str:
    """What the real ssh makes of the host key (BatchMode: it never gets to ask for a code)."""
    proc = subprocess.run(["ssh", "-F", config, "-o", "BatchMode=yes", "metis", "true"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr:
        return "changed"
    if "Permission denied" in proc.stderr:
        return "host key ok"
    return proc.stderr


# (StrictHostKeyChecking, the key in "${HOME}/ALCF keys/known_hosts", OpenSSH's verdict, metis-env's)
STRICTNESS = [
    ("accept-new", "other", "changed", "HOST KEY CHANGED"),
    ("ask", "genuine", "host key ok", "synced"),
    ("yes", "genuine", "host key ok", "synced"),
]


@pytest.mark.parametrize("strict, key, openssh_says, metis_env_does", STRICTNESS, ids=[s[0] for s in STRICTNESS])
def test_a_known_hosts_path_with_a_space_under_match_exec_is_the_file_openssh_reads(
        strict, key, openssh_says, metis_env_does, sshd, tmp_path, monkeypatch, env_setup):
    from metis_env.errors import HostKeyChangedError
    from metis_env.settings import load_settings
    from metis_env.sources.ssh import config as ssh_config
    from metis_env.sources.ssh.sync import SyncOptions, run_sync
    from tests._loginnode_fixtures import ScriptedPrompter, store_snapshot

    monkeypatch.setattr(ssh_config, "openssh_client", lambda paths, default: "ssh")  # HOME is a test's
    home = os.path.expanduser("~")
    folder = os.path.join(home, ".ssh", "ALCF keys")
    os.makedirs(folder, mode=0o700)
    with open(os.path.join(folder, "known_hosts"), "w") as handle:
        handle.write(other_key_line(sshd, tmp_path) if key == "other" else sshd.host_key_line())
    config = write_config(tmp_path, sshd, ['UserKnownHostsFile "${HOME}/.ssh/ALCF keys/known_hosts"',
                                           f"StrictHostKeyChecking {strict}"], True)
    assert openssh_verdict(config) == openssh_says
    counter = sshd.counter()
    prompter = ScriptedPrompter([sshd.code()], confirm=True, user=sshd.user)
    options = SyncOptions(host="metis", user=sshd.user, ssh_config=(config,))
    if metis_env_does == "HOST KEY CHANGED":
        with pytest.raises(HostKeyChangedError, match=r"^HOST KEY CHANGED for \[127\.0\.0\.1\]:\d+: .* but .*/ALCF keys/known_hosts:1 "):
            run_sync(load_settings(), options, prompter)
        assert (sshd.counter(), store_snapshot(env_setup)) == (counter, {})
    else:
        assert [c.id for c in run_sync(load_settings(), options, prompter)] == ["1", "2"]
    assert prompter.asked == ([] if metis_env_does == "HOST KEY CHANGED" else [("secret", "Password: ")])
    assert sorted(os.listdir(os.path.join(home, ".ssh"))) == ["ALCF keys"]  # no stray ~/.ssh/ALCF
    assert os.listdir(folder) == ["known_hosts"]
