"""`metis-env demo --serve`: the demo's Globus login and gateway stay up so that a person can try login,
status and export by hand in another shell (issue 14: expected and missing)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests._gateway import login_headless
from tests.conftest import REPO


HUNG = 600.0


class Browser:
    """What a person's browser does with the login URL at the demo Globus: follow it to the code page."""

    def approve(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=30) as page:
            return re.search(r'<code id="auth-code">([^<]*)</code>', page.read().decode()).group(1)


def test_demo_serve_lets_a_person_log_in_check_status_and_export_by_hand_then_cleans_up():
    serve = subprocess.Popen([sys.executable, "-m", "metis_env", "demo", "--serve"], stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONFAULTHANDLER": "1"})
    try:
        said = []
        for line in serve.stderr:  # the state to wait for: it says where env.sh is once everything listens
            said.append(line)
            if line.strip().endswith("(its own config dir, the file store)"):
                break
        env_file = Path(said[-1].split()[1])
        env = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines() if line.startswith("export "))
        env = {k: v.strip("'") for k, v in env.items()}
        code, out, err, url = login_headless({"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent), **env}, Browser())
        assert (code, out, url.startswith(env["GLOBUS_SDK_SERVICE_URL_AUTH"])) == (0, b"", True), err
        shell = f". {env_file} && {sys.executable} -m metis_env status metis && {sys.executable} -m metis_env export metis --shell sh"
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)})
        assert (done.returncode, "gpt-oss-120b" in done.stdout, "export METIS_ENV_ENDPOINT='metis';" in done.stdout) == (0, True, True), done.stderr
        off = (f'. {env_file} && eval "$({sys.executable} -m metis_env export metis --shell sh)" && metis_demo_off && '
               'env | grep -E "^(METIS_ENV_|GLOBUS_SDK_|OPENAI_|ALCF_AI_TOKEN)" || true; type metis_demo_off >/dev/null 2>&1 || echo gone')
        shell_off = subprocess.run(["bash", "-c", off], capture_output=True, text=True, timeout=60,
                                   env={"PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(env_file.parent)})
        assert (shell_off.returncode, shell_off.stdout) == (0, "gone\n"), shell_off.stderr
    finally:
        serve.send_signal(signal.SIGINT)
        try:  # not a clock for the clean-up: it only turns a demo that never stops into a failure
            rest = serve.communicate(timeout=HUNG)[1]
        except subprocess.TimeoutExpired:
            serve.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            raise AssertionError(f"demo --serve did not stop on Ctrl-C in {HUNG:g} s; its threads:\n{serve.communicate()[1]}") from None
    assert (serve.returncode, env_file.parent.exists()) == (0, False)
    assert rest.splitlines()[-1] == (f"Cleaned up: stopped the demo servers, deleted {env_file.parent}. "
                                     "In a shell that sourced its env.sh: metis_demo_off")
