"""The gateway half of ``metis-env demo``: a demo Globus login and a demo ALCF gateway on 127.0.0.1.

``testing.globus_standin.GlobusStandIn`` (plain http, in this process) answers what globus-sdk and
the gateway client ask. The real ``metis-env login --no-browser`` runs against it in a child process
(``GLOBUS_SDK_SERVICE_URL_AUTH`` and ``METIS_ENV_GATEWAY_URL`` point there; the demo's throwaway config
dir and the file store keep the tokens): it prints the Globus URL, the demo's "browser" (or yours)
approves it and shows a code, and the code is typed on login's stdin, as you would paste it. Then the
real ``status``, ``export`` and ``run`` of the ``metis`` endpoint, and the seed page's example against
the demo gateway. Nothing here touches your keyring, config dir or ``~/.globus``.

``drive_login`` is also what the tests use to log in through the real CLI.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import MetisEnvError

NO_OPENAI_HINT = "(the openai package is not installed here: pip install openai, then run it after export)"
"""What the demo shows in place of the seed page's example when it cannot run it."""

AUTHORIZE_URL = re.compile(r"https?://\S+/v2/oauth2/authorize\?\S+")
STEPS = 4


def drive_login(
    argv: Sequence[str],
    env: Mapping[str, str],
    answer: Callable[[str], str],
    on_line: Callable[[str], None] = lambda line: None,
    timeout: float = 60.0,
) -> int:
    """Run ``metis-env login --no-browser`` (``argv``) as a person would: wait for the authorize URL
    it prints, get the code from ``answer(url)``, type it on its stdin. Each line it prints (stdout
    or stderr) goes to ``on_line``. Returns its exit code."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env))
    lines: queue.Queue = queue.Queue()

    def pump(stream) -> None:
        while True:
            chunk = os.read(stream.fileno(), 4096)
            lines.put(chunk or None)
            if not chunk:
                return

    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    deadline = time.monotonic() + timeout
    seen, pending, open_streams, answered = "", "", 2, False
    try:
        while open_streams:
            try:
                chunk = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise MetisEnvError(f"demo: metis-env login did not finish within {timeout:g} s") from None
            if chunk is None:
                open_streams -= 1
                continue
            text = chunk.decode("utf-8", "replace")
            seen += text
            pending += text
            while "\n" in pending:
                line, pending = pending.split("\n", 1)
                on_line(line)
            match = AUTHORIZE_URL.search(seen)
            if match and not answered:
                answered = True
                code = answer(match.group(0))
                if pending:  # login's prompt for the code, waiting on the same line
                    on_line(f"{pending}{'*' * len(code)}")
                    pending = ""
                proc.stdin.write(code.encode() + b"\n")
                proc.stdin.close()
        if pending:
            on_line(pending)
        return proc.wait(timeout=max(0.01, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def child_env(config_dir: Path, globus) -> dict[str, str]:
    """The environment of the demo's metis-env children: the throwaway config dir, the file store, the
    demo Globus and gateway; none of the user's own METIS_ENV_* or Globus settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METIS_ENV_", "GLOBUS_SDK_"))}
    env.update(globus.env())
    env.update(METIS_ENV_CONFIG_DIR=str(config_dir), METIS_ENV_STORE="file")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "MODEL_NAME", "SAMBANOVA_API_KEY"):
        env.pop(name, None)
    return env


def run_gateway_steps(workdir: Path, servers: list, yes: bool, ui, narrator, python: str, question: str, script: Path | None) -> None:
    """Steps after the SSH part of the demo (``narrator`` numbers them on)."""
    from .testing.globus_standin import GlobusStandIn

    narrator.step("Start a demo Globus login and a demo ALCF gateway (ALCF's way to Metis today)")
    globus = GlobusStandIn()
    servers.append(globus)
    globus.start()
    narrator.detail(f"Globus Auth: {globus.url}   (globus-sdk is pointed there by GLOBUS_SDK_SERVICE_URL_AUTH)")
    narrator.detail(f"gateway: {globus.gateway_url}   (METIS_ENV_GATEWAY_URL; clusters: {', '.join(sorted(globus.clusters))})")
    env = child_env(workdir / "gateway-config", globus)
    metis_env = [python, "-m", "metis_env"]

    narrator.step(f"metis-env login --no-browser   (the real login, tokens into the file store in {workdir / 'gateway-config'})")

    def answer(url: str) -> str:
        if yes:
            code = globus.approve(url)
            narrator.detail(f"(the demo's browser opened that URL, logged in as {globus.identity['preferred_username']} and was shown the code; --yes pastes it)")
            return code
        narrator.detail("Open that URL in a browser on this machine (the demo Globus logs you in at once and shows a code),")
        typed = ui.ask("      and paste the code here, or press Enter to let the demo's browser do it: ").strip()
        return typed or globus.approve(url)

    code = drive_login([*metis_env, "login", "--no-browser"], env, answer, narrator.detail)
    if code != 0:
        raise MetisEnvError(f"demo: metis-env login failed against the demo Globus (exit {code})")

    narrator.step("metis-env status metis   (the gateway's {cluster}/jobs: which models are live)")
    _show(narrator, [*metis_env, "status", "metis"], env)
    shell = "sh"
    narrator.step('eval "$(metis-env export metis)"   then the seed page\'s example, against the demo gateway')
    _show(narrator, [*metis_env, "export", "metis", "--shell", shell], env)
    if script is None:
        narrator.detail(NO_OPENAI_HINT)
        return
    narrator.detail(f"$ python chat_completion.py '{question}'   # with the variables export sets")
    started = time.monotonic()
    done = subprocess.run([*metis_env, "run", "metis", "--", python, str(script), question], env=env,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MetisEnvError(f"demo: the openai example failed against the demo gateway: {last}")
    narrator.detail(f"{done.stdout.strip()}   ({(time.monotonic() - started):.1f} s)")


def _show(narrator, argv: Sequence[str], env: Mapping[str, str]) -> None:
    done = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, timeout=60)
    for line in (done.stdout + done.stderr).splitlines():
        narrator.detail(line)
    if done.returncode != 0:
        raise MetisEnvError(f"demo: `{' '.join(argv[2:])}` failed (exit {done.returncode})")
