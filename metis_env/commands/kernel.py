"""``metis-env kernel install``: a Jupyter kernelspec whose kernel runs under ``metis-env run --proxy``.

A kernel whose ``kernel.json`` holds a token dies with the token (48 hours on the gateway); this one
holds no key at all: Jupyter starts ``metis-env run --proxy ENDPOINT -- PYTHON -m ipykernel_launcher
-f {connection_file}``, the kernel gets a loopback URL and a local key, and metis-env refreshes the
real token behind it for as long as the kernel lives. jupyter_client (which ipykernel brings) writes
the spec, so it lands where ``jupyter kernelspec list`` looks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..settings import Settings

KERNEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what jupyter_client accepts as a kernel name


def default_name(endpoint: str | None) -> str:
    """``metis-env`` or ``metis-env-endpoint``: lower case, as jupyter_client stores kernel names, and
    what a kernel name cannot hold made ``-``."""
    return "metis-env" if endpoint is None else "metis-env-" + re.sub(r"[^a-z0-9._-]+", "-", endpoint.lower())


def metis_env_command() -> list[str]:
    """This metis-env, by absolute path: Jupyter starts kernels with its own PATH."""
    beside = Path(sys.executable).parent / "metis-env"
    found = str(beside) if beside.is_file() else shutil.which("metis-env")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "metis_env"]


def kernel_argv(endpoint: str | None, python: str, metis_env: list[str]) -> list[str]:
    return [*metis_env, "run", "--proxy", *([endpoint] if endpoint else []), "--",
            python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def kernel_spec(endpoint: str | None, display_name: str, python: str, metis_env: list[str],
                interrupt_mode: str = "message") -> dict:
    """kernel.json's content: the argv, the name shown, no ``env`` (nothing secret, nothing stale).

    ``interrupt_mode`` ``message``: Jupyter asks the kernel itself, which sends itself one SIGINT. With ``signal``, Jupyter signals the kernel's whole process group, metis-env included, and
    metis-env passes its copy on (it must: a signal sent to metis-env alone has to reach the command),
    so the kernel got two, and the second broke into the interrupted cell's own ``except
    KeyboardInterrupt:`` clean-up. ``signal`` is kept for an ipykernel that does not answer interrupt
    requests (before 2021's 6.x) and on Windows, where ipykernel answers them with an error."""
    return {
        "argv": kernel_argv(endpoint, python, metis_env),
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": interrupt_mode,
        "metadata": {"metis_env": {"endpoint": endpoint}},
    }


# Run by the kernel's Python: fails without ipykernel, else prints how that ipykernel is interrupted.
INTERRUPT_MODE_OF = ("import os, ipykernel_launcher, ipykernel.kernelbase as k; "
                     "print('message' if hasattr(k.Kernel, 'interrupt_request') and os.name != 'nt' else 'signal')")


def check_python(python: str) -> tuple[str, str]:
    """The kernel's Python by absolute path, refused unless it has ipykernel -> (path, interrupt mode)."""
    path = shutil.which(python) or python
    if not os.path.isfile(path):
        raise UsageError(f"no Python at {python}; give --python the interpreter the kernel should run")
    proc = subprocess.run([path, "-c", INTERRUPT_MODE_OF], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or proc.stdout.strip() not in ("message", "signal"):
        raise UsageError(f"{path} has no ipykernel; run: {path} -m pip install ipykernel")
    return os.path.abspath(path), proc.stdout.strip()


def install_kernel(endpoint: str | None, *, name: str | None = None, display_name: str | None = None,
                   sys_prefix: bool = False, python: str | None = None) -> str:
    """Write the kernelspec for the user (default) or into the Python's sys.prefix; -> its folder."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        raise UsageError("jupyter_client is not installed with metis-env; run: pip install ipykernel "
                         "(pipx: pipx inject metis-env ipykernel)") from None
    name = name or default_name(endpoint)
    if not KERNEL_NAME.match(name):
        raise UsageError(f"kernel name {name!r} may hold only letters, digits, '.', '_' and '-'")
    python, interrupt_mode = check_python(python or sys.executable)
    label = display_name or (f"Python 3 (metis-env {endpoint})" if endpoint else "Python 3 (metis-env)")
    spec = kernel_spec(endpoint, label, python, metis_env_command(), interrupt_mode)
    prefix = None
    if sys_prefix:
        try:
            prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                                    check=True, timeout=120).stdout.strip()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            raise UsageError(f"{python} did not tell its sys.prefix for --sys-prefix; check that it runs, "
                             "or install for the user without --sys-prefix") from None
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        try:
            from ipykernel.kernelspec import RESOURCES  # the Python logos, where this Python has them
        except ImportError:
            RESOURCES = None
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            if RESOURCES and os.path.isfile(os.path.join(RESOURCES, logo)):
                shutil.copy(os.path.join(RESOURCES, logo), folder)
        try:
            return KernelSpecManager().install_kernel_spec(folder, name, user=not sys_prefix, prefix=prefix, replace=True)
        except OSError as exc:
            raise UsageError(f"cannot write the kernelspec {name}: {exc.strerror or exc}; "
                             "use --user, or --sys-prefix in an environment of your own") from exc


def install(settings: Settings, endpoint: str | None, name: str | None, display_name: str | None, sys_prefix: bool,
            python: str | None) -> None:
    """``kernel install``: the kernelspec for a stored endpoint (a kernel for one that is not stored
    would die as it starts), and a line on stderr saying where it went."""
    from ..credentials import choose_endpoint
    from ..store import open_store
    from ..text import say

    choose_endpoint(open_store(settings).endpoints(), endpoint, settings, "kernel install")
    folder = install_kernel(endpoint, name=name, display_name=display_name, sys_prefix=sys_prefix, python=python)
    say(f"installed kernel {os.path.basename(folder)} in {folder}")
