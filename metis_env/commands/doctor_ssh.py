"""doctor's findings about SSH: how the ssh config resolves the login host, whether known_hosts has its
key (sources/ssh reads both, as sync does), and whether OpenSSH is there for ``--via openssh`` with a
ControlMaster to reuse. Nothing here changes anything.

    for finding in check_ssh(settings): print(finding.line())
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

from ..errors import MetisEnvError
from ..findings import OK, PROBLEM, WARN, Finding
from ..settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store import Store

SSH_CHECK_TIMEOUT = 5.0


def ssh_destination(settings: Settings) -> str:
    return f"{settings.user}@{settings.host}" if settings.user else settings.host


def check_openssh(
    settings: Settings,
    which: Callable[[str], str | None] = shutil.which,
    control_path: str | None = None,
    timeout: float = SSH_CHECK_TIMEOUT,
) -> list[Finding]:
    """``--via openssh`` readiness: is ``ssh`` installed, and is a ControlMaster connection live?"""
    needed = settings.transport == "openssh"
    ssh = which("ssh")
    if ssh is None:
        if needed:
            return [Finding("openssh", PROBLEM, "the transport is openssh but ssh is not installed", "install openssh-client, or metis-env config set transport paramiko")]
        return [Finding("openssh", OK, "ssh is not installed (only --via openssh needs it)")]
    argv = [ssh, "-O", "check", "-o", "BatchMode=yes"]
    if control_path:
        argv += ["-o", f"ControlPath={control_path}"]
    if settings.port:
        argv += ["-p", str(settings.port)]
    argv.append(ssh_destination(settings))
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [Finding("openssh", WARN, f"ssh -O check {settings.host} did not answer within {timeout:g} s", "close the stuck master: ssh -O exit " + settings.host)]
    except OSError as exc:
        return [Finding("openssh", PROBLEM if needed else WARN, f"cannot run {ssh}: {exc.strerror}", "reinstall openssh-client")]
    said = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode == 0:
        return [Finding("openssh", OK, f"a ControlMaster connection to {settings.host} is live: sync --via openssh needs no passcode now")]
    if "No ControlPath specified" in said:
        return [
            Finding(
                "openssh",
                OK,
                f"no ControlPath is configured for {settings.host}: each sync --via openssh asks for a passcode "
                "(to reuse one login, add ControlMaster auto, ControlPath ~/.ssh/cm-%C, ControlPersist 4h to its Host block)",
            )
        ]
    return [Finding("openssh", OK, f"no live ControlMaster connection to {settings.host}: the next sync --via openssh asks for a passcode")]


# --- all together ----------------------------------------------------------------------------------


def uses_ssh(store: Store) -> bool:
    """Whether any stored endpoint came from a sync over SSH: a missing host key matters only then."""
    try:
        return any(stored.source.startswith("sync:") for stored in store.endpoints().values())
    except MetisEnvError:
        return True  # the endpoints finding reports the damage; say what a sync would meet


def check_ssh(settings: Settings, ssh_config: Sequence[str] | None = None, ssh_used: bool = True) -> list[Finding]:
    """How the ssh config resolves the login host, and whether known_hosts has its key (sources/ssh reads both,
    as sync does)."""
    from ..sources import ssh  # paramiko: only doctor and sync pay for it

    try:
        config = ssh.load_ssh_config() if ssh_config is None else ssh.load_ssh_config(ssh_config)
        target = ssh.resolve_target(settings.host, port=settings.port, user=settings.user, config=config)
    except MetisEnvError as exc:
        return [Finding("ssh config", PROBLEM, str(exc), "fix the ssh config (ssh -G HOST shows how OpenSSH reads it)")]
    if target.user:
        who = f"as {target.user}" + (" (from the user setting)" if settings.user else " (from the ssh config)")
    else:
        who = "no user name set yet (sync asks once and remembers it)"
    route = ""
    if target.proxy_jump:
        route = f" through ProxyJump {target.proxy_jump}"
    elif target.proxy_command:
        route = " through a ProxyCommand"
    resolved = f"{settings.host} -> {target.hostname}:{target.port}{route}, {who}"
    findings = []
    jump_refusal = None
    if settings.transport == "paramiko" and target.proxy_jump and "," not in target.proxy_jump and not target.proxy_command:
        try:
            ssh.parse_jump(target.proxy_jump, config)
        except MetisEnvError as exc:  # what sync would refuse, doctor calls a problem in the same words
            jump_refusal = str(exc)
    if jump_refusal is not None:
        findings.append(
            Finding("ssh config", PROBLEM, f"{resolved}; {jump_refusal}",
                    "metis-env config set transport openssh (or metis-env sync --via openssh)")
        )
    elif settings.transport == "paramiko" and (target.proxy_command or "," in (target.proxy_jump or "")):
        findings.append(
            Finding(
                "ssh config",
                PROBLEM,
                f"{resolved}; metis-env's own SSH cannot follow a ProxyCommand or a multi-hop ProxyJump",
                "metis-env config set transport openssh (or metis-env sync --via openssh)",
            )
        )
    else:
        findings.append(Finding("ssh config", OK, resolved))
    name = target.known_hosts_name
    files = target.known_hosts_files + target.global_known_hosts_files
    entries = [k for k in ssh.load_known_hosts(files) if ssh.host_matches(k.patterns, name)]
    revoked = [k for k in entries if k.marker == "@revoked"]
    plain = [k for k in entries if k.marker is None]
    if plain:
        where = ", ".join(f"{ssh.key_label(k.key_type)} in {k.where}" for k in plain)
        findings.append(Finding("known_hosts", OK, f"{name}: {where}" + (f"; {len(revoked)} revoked" if revoked else "")))
    elif not ssh_used:  # gateway users and hand imports never meet the login node's host key
        findings.append(Finding("known_hosts", OK, f"no host key for {name} yet; needed only by sync over SSH, whose first run shows its fingerprint"))
    else:
        findings.append(
            Finding(
                "known_hosts",
                WARN,
                f"no host key for {name} in {', '.join(files)}: the first sync shows its fingerprint and asks "
                "before trusting it (a sync without a terminal fails)",
                f"compare the fingerprint sync shows with ALCF's published one and answer yes, or run ssh {settings.host} once",
            )
        )
    return findings
