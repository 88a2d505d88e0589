"""Helpers for the tests that run real shells, direnv and shellcheck with the real metis-env on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SHELL_DIR = REPO / "shell"
EXPORTED = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "MODEL_NAME",
    "SAMBANOVA_API_KEY",
    "SAMBANOVA_API_BASE",
    "SAMBA_NOVA_BASE_URL",
    "ALCF_AI_TOKEN",
    "OPENAI_AGENTS_DISABLE_TRACING",
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "METIS_ENV_ENDPOINT",
)


def need(tool: str) -> str:
    """The tool's path; a missing tool skips the test on a workstation and fails it in CI (CI=true)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install {tool})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run this test")
        pytest.skip(message)
    return path


def write_metis_wrapper(bin_dir: Path) -> Path:
    """A `metis-env` on PATH that runs this checkout, as the console script would."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "metis-env"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{REPO}'${{PYTHONPATH:+:$PYTHONPATH}} exec '{sys.executable}' -m metis_env \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def write_recording_fake(bin_dir: Path, record: Path) -> Path:
    """A `metis-env` that only notes that it ran (sourcing a hook must never run metis-env)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "metis-env"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\n")
    fake.chmod(0o755)
    return fake


def shell_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment (private config dir, fake HOME, file store) with bin_dir first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for name in EXPORTED:
        env.pop(name, None)
    env.update(extra)
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, input=input, capture_output=True, timeout=60)


HOSTILE_KEY = "sk-'quote\"dq $(touch /tmp/pwned) `id` \\back ;|&<> *?[x] ~ \t tab %s {a,b} é"
"""An API key no shell may interpret (endpoint files forbid newlines, so there is none here)."""


def endpoint_text(key: str, models: str = "Llama-4-Maverick-17B-128E-Instruct,DeepSeek-R1", url: str = "https://metis.alcf.anl.gov/v1/") -> str:
    return f"BASE_URL={url}\nSAMBANOVA_API_KEY={key}\nMODELS={models}\n"
