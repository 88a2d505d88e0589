"""metis-env demo end to end: the real sync against the in-process login node, check, export, cleanup."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metis_env.commands.demo import run_demo
from metis_env.errors import AuthenticationError
from tests.conftest import REPO, metis

STEP_HEADERS = [
    "[1/10] Start a demo login node and two OpenAI-compatible endpoints",
    "[2/10] metis-env sync   (the real sync: demo@metis-demo, store=file in TMP/config)",
    "[3/10] metis-env list",
    "[4/10] metis-env check   (GET {BASE_URL}models with the stored key)",
    '[5/10] eval "$(metis-env export 1)"   (metis-env export 1 prints this; bash, zsh, sh and fish read it alike)',
    "[6/10] python chat_completion.py '...'   (the example from ALCF's 'Using an inference endpoint' page)",
    "[7/10] Start a demo Globus login and a demo ALCF gateway (ALCF's way to Metis today)",
    "[8/10] metis-env login --no-browser   (the real login, tokens into the file store in TMP/gateway-config)",
    "[9/10] metis-env status metis   (the gateway's {cluster}/jobs: which models are live)",
    '[10/10] eval "$(metis-env export metis)"   then the seed page\'s example, against the demo gateway',
]


def workdir_of(stderr: str) -> Path:
    match = re.search(r"deleted (/\S+metis-env-demo-[^/\s]+)\.\n", stderr)
    assert match, stderr
    return Path(match.group(1))


def normalized(stderr: str) -> list[str]:
    text = stderr.replace(str(workdir_of(stderr)), "TMP")
    text = re.sub(r"127\.0\.0\.1(\]?):\d+", r"127.0.0.1\1:PORT", text)
    text = re.sub(r"-p \d+", "-p PORT", text)
    text = re.sub(r"ok in \d+ ms", "ok in N ms", text)
    text = re.sub(r"shows \d{6}\): \d{6}", "shows CODE): CODE", text)
    text = re.sub(r"\(\d+\.\d s\)", "(N s)", text)
    return text.splitlines()


def test_demo_yes_runs_the_whole_flow_and_leaves_nothing_behind(env_setup, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "known_hosts").write_text("# the user's own file\n")
    proc = metis("demo", "--yes")
    stderr = proc.stderr.decode()
    assert (proc.returncode, proc.stdout.decode()) == (0, ""), stderr
    lines = normalized(stderr)
    assert [line for line in lines if line.startswith("[")] == STEP_HEADERS
    for expected in (
        "      endpoint 1: http://127.0.0.1:PORT/v1/ serving DeepSeek-R1",
        "      Trust [127.0.0.1]:PORT and remember its key in TMP/ssh/known_hosts? yes   <- answered by --yes",
        "      Password (the demo token shows CODE): CODE   <- typed by --yes",
        "      endpoint 1: new",
        "      endpoint 2: new",
        "      1: ok in N ms: DeepSeek-R1 served",
        "      2: ok in N ms: Llama-4-Maverick-17B-128E-Instruct served, Llama-3.3-70B-Instruct served",
        "      export OPENAI_BASE_URL='http://127.0.0.1:PORT/v1/';",
        "      export MODEL_NAME='DeepSeek-R1';",
        "      Hello from demo endpoint 1 (DeepSeek-R1).   (N s)",
        "      (the demo's browser opened that URL, logged in as demo@anl.gov and was shown the code; --yes pastes it)",
        "      endpoint metis: new",
        "      metis     gpt-oss-120b                        live    131072   no     yes        200000/2000000",
        "      export METIS_ENV_ENDPOINT='metis';",
        "      Hello from the metis-env stand-in gateway.   (N s)",
        "Cleaned up: stopped the demo servers, deleted TMP.",
    ):
        assert expected in lines, expected
    assert lines.index("      endpoint 1: new") < lines.index("      1: ok in N ms: DeepSeek-R1 served")
    assert not workdir_of(stderr).exists()
    assert not env_setup.exists()  # METIS_ENV_CONFIG_DIR: the demo never used it
    assert sorted(p.name for p in home.rglob("*")) == [".ssh", "known_hosts"]
    assert (home / ".ssh" / "known_hosts").read_text() == "# the user's own file\n"


def test_demo_without_the_openai_package_shows_the_hint_in_place_of_both_examples_and_goes_on(tmp_path):
    hide = tmp_path / "hide-openai"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['openai'] = None  # find_spec('openai') is None\n")
    proc = metis("demo", "--yes", env={"PYTHONPATH": os.pathsep.join([str(hide), str(REPO)])})
    lines = normalized(proc.stderr.decode())
    hint = "      (the openai package is not installed here: pip install openai, then run it after export)"
    assert (proc.returncode, [line for line in lines if line.startswith("[")], lines.count(hint)) == (0, STEP_HEADERS, 2)
    assert not [line for line in lines if "Hello from" in line]


class ScriptedUser:
    """Answers like a person at the terminal: first a wrong code, then the one the demo shows."""

    def __init__(self, wrong_codes: int) -> None:
        self.wrong_codes = wrong_codes
        self.prompts: list[str] = []

    def secret(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if sum("Password" in p for p in self.prompts) <= self.wrong_codes:
            return "000000"
        return re.search(r"shows (\d{6})", prompt).group(1)

    def confirm(self, question: str) -> bool:
        self.prompts.append(question)
        return True

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        assert "paste the code here, or press Enter" in prompt, prompt  # the demo sets the user name
        return ""  # the demo's own browser approves the Globus URL


def test_a_wrong_demo_passcode_is_refused_and_asked_again():
    user = ScriptedUser(wrong_codes=1)
    err = io.StringIO()
    assert run_demo(yes=False, ui=user, err=err) == 0
    lines = normalized(err.getvalue())
    assert [p for p in user.prompts if "Password" in p] == [
        p for p in user.prompts if re.fullmatch(r"      Password \(the demo token shows \d{6}\): ", p)
    ]
    assert len([p for p in user.prompts if "Password" in p]) == 2
    refused = "      metis-env: metis-demo (127.0.0.1:PORT) refused that passcode; type the code the demo token shows (2 tries left)"
    assert refused in lines
    assert lines.index(refused) < lines.index("      endpoint 1: new")


class BrowserUser(ScriptedUser):
    """Opens the Globus URL the demo printed in a "browser" (follows the redirects to the page that shows
    the code) and pastes the code it shows, as a person would."""

    def __init__(self, err: io.StringIO) -> None:
        super().__init__(wrong_codes=0)
        self.err = err

    def ask(self, prompt: str) -> str:
        import html
        import urllib.request

        self.prompts.append(prompt)
        url = re.findall(r"https?://\S+/v2/oauth2/authorize\?\S+", self.err.getvalue())[-1]
        with urllib.request.urlopen(url, timeout=10) as page:
            shown = re.search(r'<code id="auth-code">([^<]*)</code>', page.read().decode()).group(1)
        return html.unescape(shown) + "\n"


def test_the_globus_code_the_user_pastes_logs_the_demo_in():
    err = io.StringIO()
    user = BrowserUser(err)
    assert run_demo(yes=False, ui=user, err=err) == 0
    lines = normalized(err.getvalue())
    assert [p for p in user.prompts if "paste" in p] == [
        "      and paste the code here, or press Enter to let the demo's browser do it: "
    ]
    assert "      Open that URL in a browser on this machine (the demo Globus logs you in at once and shows a code)," in lines
    assert "      endpoint metis: new" in lines
    assert "      Hello from the metis-env stand-in gateway.   (N s)" in lines


def test_three_wrong_passcodes_fail_and_still_clean_up():
    err = io.StringIO()
    with pytest.raises(AuthenticationError) as caught:
        run_demo(yes=False, ui=ScriptedUser(wrong_codes=3), err=err)
    assert str(caught.value) == (
        "metis-demo (127.0.0.1:{}) refused 3 passcodes for demo; check the user name and wait for a fresh code "
        "before trying again".format(re.search(r"-p (\d+)", err.getvalue()).group(1))
    )
    assert not workdir_of(err.getvalue()).exists()


def test_without_a_terminal_the_demo_says_to_use_yes():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "metis_env", "demo"],
        stdin=subprocess.DEVNULL, capture_output=True, env=env, start_new_session=True, timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (
        2,
        b"",
        "metis-env: error: the demo asks you to type a one-time code on a terminal; without one, run: metis-env demo --yes\n",
    )


class Terminal:
    """The demo under a real pseudo-terminal, as a person runs it."""

    def __init__(self) -> None:
        import pty

        # PYTHONFAULTHANDLER: a demo that hangs is made to print every thread's stack (SIGABRT) before the test fails
        env = dict(os.environ, PYTHONPATH=str(REPO), TERM="dumb", PYTHONFAULTHANDLER="1")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal and its stdin/stdout/stderr
            os.execvpe(sys.executable, [sys.executable, "-m", "metis_env", "demo"], env)
        self.seen = ""

    # Not a clock for the demo: a loaded CI machine took over 20 s to show the first prompt. It only
    # turns a demo that hangs for good into a failure instead of a stuck suite.
    HUNG = 600.0

    def expect(self, pattern: str) -> re.Match:
        """Wait for ``pattern`` on the terminal, or for the demo to end without it (then fail)."""
        while True:
            match = re.search(pattern, self.seen)
            if match:
                self.seen = self.seen[match.end():]
                return match
            if not select.select([self.fd], [], [], self.HUNG)[0]:
                raise AssertionError(f"{pattern!r} not seen and the demo hung for {self.HUNG:g} s; the terminal shows:\n"
                                     f"{self.seen}\nand its threads, when aborted:\n{self.abort()}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{pattern!r} not seen before the end; the terminal shows:\n{self.seen}")
            self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")

    def abort(self) -> str:
        """End a hung demo with SIGABRT: faulthandler prints every thread's stack; all it printed until
        the terminal closed."""
        os.kill(self.pid, signal.SIGABRT)
        rest = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk
        return rest.decode("utf-8", "replace")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        with_status = os.waitstatus_to_exitcode(status)
        os.close(self.fd)
        return with_status


def test_at_a_terminal_a_wrong_code_is_refused_then_the_right_one_works():
    term = Terminal()
    term.expect(r"\[yes/no\] ")
    term.type("yes\n")
    term.expect(r"Password \(the demo token shows (\d{6})\): ")
    term.type("123\n")
    term.expect(r"refused that passcode; type the code the demo token shows \(2 tries left\)")
    code = term.expect(r"Password \(the demo token shows (\d{6})\): ").group(1)
    term.type(code + "\n")
    term.expect(r"endpoint 1: new")
    term.expect(r"1: ok in \d+ ms: DeepSeek-R1 served")
    term.expect(r"or press Enter to let the demo's browser do it: ")
    term.type("\n")
    term.expect(r"endpoint metis: new")
    workdir = term.expect(r"deleted (/\S+)\.\n").group(1)
    assert term.wait() == 0
    assert not Path(workdir).exists()


def test_ctrl_c_at_the_passcode_prompt_cleans_up():
    term = Terminal()
    term.expect(r"\[yes/no\] ")
    term.type("yes\n")
    term.expect(r"Password \(the demo token shows \d{6}\): ")
    os.kill(term.pid, signal.SIGINT)
    workdir = term.expect(r"deleted (/\S+)\.\n").group(1)
    term.expect(r"metis-env: error: demo interrupted; its servers were stopped and its files deleted\n")
    assert term.wait() == 130
    assert not Path(workdir).exists()
