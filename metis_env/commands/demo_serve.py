"""`metis-env demo --serve`: the demo's Globus login, ALCF gateway and two endpoints, kept running so that
a person can try `login`, `status`, `export metis`, `import` and `run --proxy` by hand in another shell.

Everything lives in a throwaway directory: an ``env.sh`` there points a shell at the servers and at a config
dir of its own (the file store), so the user's own config, keyring and Globus tokens are never touched.
It runs until Ctrl-C (or SIGTERM), then stops the servers, deletes the directory and exits 0.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable

ENV_FILE = "env.sh"


def demo(yes: bool, serve: bool) -> int:
    """``metis-env demo``: the whole flow (demo.run_demo), or with ``serve`` its servers alone until Ctrl-C."""
    if serve:
        import sys

        return serve_demo(sys.stderr)
    from .demo import run_demo

    return run_demo(yes=yes)


def serve_demo(err: IO[str], stop: threading.Event | None = None, on_ready: Callable[[Path], None] | None = None) -> int:
    """Start the servers, say how to use them on ``err``, and wait until ``stop`` is set or Ctrl-C."""
    from .demo import DEMO_ENDPOINTS, terminate_as_interrupt, endpoint_file_text
    from ..testing.globus_standin import GlobusStandIn
    from ..testing.openai_server import OpenAIStubServer

    workdir = Path(tempfile.mkdtemp(prefix="metis-env-demo-"))
    servers: list = []
    stop = stop or threading.Event()
    try:
        with terminate_as_interrupt():
            files = workdir / "files"
            files.mkdir(mode=0o700)
            for endpoint_id, models in DEMO_ENDPOINTS:
                api_key = f"sk-demo-{endpoint_id}-{secrets.token_hex(12)}"
                stub = OpenAIStubServer(api_key, models, reply=f"Hello from demo endpoint {endpoint_id} ({models[0]}).")
                servers.append(stub)
                base_url = stub.start() + "/"
                (files / f"metis_endpoint_{endpoint_id}.txt").write_text(endpoint_file_text(base_url, api_key, models))
            globus = GlobusStandIn()
            servers.append(globus)
            globus.start()
            env = {**globus.env(), "METIS_ENV_CONFIG_DIR": str(workdir / "config"), "METIS_ENV_STORE": "file"}
            env_file = workdir / ENV_FILE
            env_file.write_text(
                "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
                # after Ctrl-C the servers and the config dir are gone: one word points the shell away again
                + "metis_demo_off() {\n"
                + '  eval "$(metis-env export --unset --shell sh)"\n'
                + f"  unset {' '.join(env)}\n"
                + "  unset -f metis_demo_off\n"
                + "}\n"
            )
            err.write(
                f"metis-env demo --serve: a demo Globus login, a demo ALCF gateway ({globus.gateway_url}) and two demo\n"
                f"endpoints on 127.0.0.1, until you press Ctrl-C. In another shell:\n\n"
                f"  . {env_file}                      # this shell now uses the demo (its own config dir, the file store)\n"
                f"  metis-env login --no-browser      # open the URL it prints: the demo Globus shows the code at once\n"
                f"  metis-env status metis\n"
                f'  eval "$(metis-env export metis)"\n'
                f"  metis-env import {files}/metis_endpoint_1.txt {files}/metis_endpoint_2.txt\n"
                f"  metis-env run --proxy metis -- python examples/chat_completion.py 'What is an extinction vortex?'\n\n"
                f"  metis_demo_off                    # when done: the shell forgets the demo again\n\n"
                f"(the demo's login node needs the demo's own ssh config: `metis-env demo` shows sync)\n"
            )
            err.flush()
            if on_ready is not None:
                on_ready(workdir)
            stop.wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) is how a server is stopped: not an error
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        err.write(f"\nCleaned up: stopped the demo servers, deleted {workdir}. In a shell that sourced its env.sh: metis_demo_off\n")
        err.flush()
    return 0
