"""The SSH source: endpoint files from the SambaNova login node, one MobilePASS+ login. The only package
that imports paramiko.

``config`` (~/.ssh/config as OpenSSH reads it), ``known_hosts``, ``login`` (metis-env's own SSH, with
``sftp``, ``watchdog`` and ``prompts``), ``openssh`` (``--via openssh``), ``sync`` (the command). The
names below are the package's interface, e.g.::

    from metis_env.sources import ssh
    target = ssh.resolve_target("metis", user="alice")
"""

from ._paramiko import paramiko, set_debug_logging
from .config import SSHConfig, Target, load_ssh_config, parse_jump, resolve_target
from .known_hosts import KnownKey, fingerprint, host_matches, key_label, load_known_hosts
from .login import fetch_endpoint_files
from .openssh import fetch_with_openssh, parse_boundary_output
from .remote import Prompter, RemoteFile

__all__ = [
    "KnownKey",
    "Prompter",
    "SSHConfig",
    "RemoteFile",
    "Target",
    "fetch_endpoint_files",
    "fetch_with_openssh",
    "fingerprint",
    "host_matches",
    "key_label",
    "load_known_hosts",
    "load_ssh_config",
    "paramiko",
    "parse_boundary_output",
    "parse_jump",
    "resolve_target",
    "set_debug_logging",
]
