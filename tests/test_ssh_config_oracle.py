"""~/.ssh/config held against OpenSSH itself: a corpus of configs, each resolved by ``ssh -G`` (which
never connects) and by metis-env, both ways it can read it: OpenSSH as the resolver (where an ssh is
installed) and the fallback parser (paramiko's, where none is).

Every case that ever disagreed stays in the table. ``expected`` is what OpenSSH says (the test
checks it against a bare ``ssh -G`` run, so the table cannot drift from OpenSSH); ``fallback_differs``
names the fields where the fallback parser is known to answer otherwise (docs/sync.md: "Reading the ssh
config"); a fix or a new difference both fail the test, so the list stays true."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from metis_env.errors import UsageError
from metis_env.sources import ssh

FIELDS = ("hostname", "port", "user", "proxy_jump", "known_hosts_name", "known_hosts_files", "identity_files")

# (id, files {name: text} under DIR (the first is the config), host, port, user, expected {field: value}, fallback_differs)
CORPUS = [
    ("plain alias", {"config": "Host metis\n  HostName login.example\n  Port 2222\n  User alice\n"}, "metis", None, None,
     {"hostname": "login.example", "port": 2222, "user": "alice", "known_hosts_name": "[login.example]:2222"}, set()),
    ("first value wins", {"config": "Host metis\n  HostName a.example\nHost *\n  HostName b.example\n  User fallback\n  Port 2022\n"},
     "metis", None, None, {"hostname": "a.example", "port": 2022, "user": "fallback"}, set()),
    ("-p and -l win", {"config": "Host metis\n  Port 2222\n  User bob\n"}, "metis", 2200, "alice",
     {"hostname": "metis", "port": 2200, "user": "alice"}, set()),
    ("Match user sees -l", {"config": "Match user alice\n  Port 2200\n"}, "metis", None, "alice", {"port": 2200, "user": "alice"}, set()),
    ("%r sees -l", {"config": "Host metis\n  UserKnownHostsFile {dir}/kh_%r_%h_%p\n"}, "metis", None, "alice",
     {"known_hosts_files": ("{dir}/kh_alice_metis_22",)}, set()),
    ("Match with capitals", {"config": "Match Host other\n  User wrong\nHost metis\n  HostName login.example\n"}, "metis", None, None,
     {"hostname": "login.example", "user": None}, set()),
    ("Include=file", {"config": "Include={dir}/b.conf\n", "b.conf": "Host metis\n  HostName viaeq.example\n"}, "metis", None, None,
     {"hostname": "viaeq.example"}, set()),
    ("lines after an Include stay in their block",
     {"config": "Host metis\n  Include {dir}/a.conf\n  User alice\n", "a.conf": "Host other\n  Port 2999\n"}, "metis", None, None,
     {"user": "alice", "port": 22}, set()),
    ("Include inside Host is conditional",
     {"config": "Host *.other-site\n  Include {dir}/other.conf\nHost metis\n  HostName login.example\n", "other.conf": "Host *\n  User wrong\n"},
     "metis", None, None, {"hostname": "login.example", "user": None}, {"user"}),
    ("trailing comments", {"config": "Host metis\n  User alice # me\n  HostName login.example # the login node\n"}, "metis", None, None,
     {"hostname": "login.example", "user": "alice"}, set()),
    ("HostKeyAlias with a port: the alias alone", {"config": "Host metis\n  HostName login.example\n  Port 2222\n  HostKeyAlias metis-login\n"},
     "metis", None, None, {"known_hosts_name": "metis-login"}, set()),
    ("%k and %% in UserKnownHostsFile", {"config": "Host metis\n  HostKeyAlias k1\n  UserKnownHostsFile {dir}/kh_%k_%%\n"}, "metis", None, None,
     {"known_hosts_files": ("{dir}/kh_k1_%",)}, set()),
    ("quoted UserKnownHostsFile with a space", {"config": 'Host metis\n  UserKnownHostsFile "{dir}/my hosts" {dir}/second\n'}, "metis", None, None,
     {"known_hosts_files": ("{dir}/my hosts", "{dir}/second")}, set()),
    ("%p in IdentityFile", {"config": "Host metis\n  Port 2222\n  IdentityFile {dir}/id_%p\n"}, "metis", None, None,
     {"identity_files": ("{dir}/id_2222",)}, set()),
    ("~ only leading", {"config": "Host metis\n  IdentityFile {dir}/a~b\n"}, "metis", None, None,
     {"identity_files": ("{dir}/a~b",)}, set()),
    ("Match host sees the expanded HostName", {"config": "Host metis\n  HostName %h.example\nMatch host metis.example\n  Port 2202\n"},
     "metis", None, None, {"hostname": "metis.example", "port": 2202}, {"port"}),
    ("Match final", {"config": "Host metis\n  HostName login.example\nMatch final host login.example\n  Port 2201\n"}, "metis", None, None,
     {"hostname": "login.example", "port": 2201}, set()),
    ("ProxyJump", {"config": "Host metis\n  ProxyJump me@bastion.example:2200\n"}, "metis", None, None,
     {"proxy_jump": "me@bastion.example:2200"}, set()),
]


def write_corpus(tmp_path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text.replace("{dir}", str(tmp_path)))
    return str(tmp_path / next(iter(files)))


def fields(target: ssh.Target, tmp_path) -> dict:
    values = {name: getattr(target, name) for name in FIELDS}
    return {k: tuple(p.replace(str(tmp_path), "{dir}") for p in v) if isinstance(v, tuple) else v for k, v in values.items()}


def resolve(tmp_path, case, use_openssh: bool) -> dict:
    _, files, host, port, user, _, _ = case
    config = ssh.load_ssh_config([write_corpus(tmp_path, files)], use_openssh=use_openssh)
    return fields(ssh.resolve_target(host, port=port, user=user, config=config), tmp_path)


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_the_table_is_what_ssh_g_prints(case, tmp_path):
    _, files, host, port, user, expected, _ = case
    argv = ["ssh", "-G", "-T", "-F", write_corpus(tmp_path, files)] + (["-p", str(port)] if port else []) + (["-l", user] if user else [])
    printed = subprocess.run([*argv, "--", host], capture_output=True, text=True, check=True).stdout.splitlines()
    options = dict(line.split(" ", 1) for line in reversed(printed))  # first identityfile wins the dict
    openssh = {
        "hostname": options["hostname"], "port": int(options["port"]),
        "user": None if options["user"] == "root" else options["user"], "proxy_jump": options.get("proxyjump"),
        "known_hosts_name": options.get("hostkeyalias") or (options["hostname"] if options["port"] == "22" else f"[{options['hostname']}]:{options['port']}"),
        "known_hosts_files": tuple(options["userknownhostsfile"].replace(str(tmp_path), "{dir}").split(" {dir}/")),
    }
    for name, value in expected.items():
        if name in openssh and name != "known_hosts_files":
            assert (name, openssh[name]) == (name, value)
    if "known_hosts_files" in expected:  # printed joined by spaces: compare the joined line
        assert options["userknownhostsfile"] == " ".join(expected["known_hosts_files"]).replace("{dir}", str(tmp_path))


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_metis_env_with_openssh_as_resolver_agrees_with_openssh(case, tmp_path):
    expected = case[5]
    resolved = resolve(tmp_path, case, use_openssh=True)
    assert {k: resolved[k] for k in expected} == expected


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_the_fallback_parser_agrees_except_where_the_readme_says(case, tmp_path):
    expected, differs = case[5], case[6]
    resolved = resolve(tmp_path, case, use_openssh=False)
    disagree = {k for k in expected if resolved[k] != expected[k]}
    assert disagree == differs


def test_openssh_refusing_the_config_is_one_line(tmp_path):
    config = ssh.load_ssh_config([write_corpus(tmp_path, {"config": "Hostt metis\n"})], use_openssh=True)
    with pytest.raises(UsageError) as caught:
        ssh.resolve_target("metis", config=config)
    assert str(caught.value) == (
        f"OpenSSH refuses the ssh config for metis: {tmp_path}/config: line 1: Bad configuration option: hostt; "
        "fix it (ssh -G metis shows the same)"
    )


def test_openssh_is_the_resolver_only_where_it_reads_the_same_home(monkeypatch, tmp_path):
    from metis_env.sources.ssh.openssh_config import openssh_client

    default = ("~/.ssh/config", "/etc/ssh/ssh_config")
    import pwd, os

    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    assert openssh_client(default, default) == shutil.which("ssh")
    assert openssh_client(["/one/file"], default) == shutil.which("ssh")
    assert openssh_client(["/a", "/b"], default) is None  # ssh -F takes one file
    monkeypatch.setenv("HOME", str(tmp_path))
    assert openssh_client(default, default) is None  # OpenSSH would read another home's files
