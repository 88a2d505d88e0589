"""Expiry you can see: `get key --json`, and the hooks' prompt segment (`metis-prompt`), computed in
bash, zsh and fish from METIS_ENV_ENDPOINT and METIS_ENV_TOKEN_EXPIRES with no program started (each
shell runs it with an empty PATH), drawn in a real interactive prompt as docs/shells.md sets it up, and
that page's starship module run as starship runs it."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import pytest

from tests._gateway import exported_json, logged_in  # noqa: F401  (fixture)
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests._shells import SHELL_DIR, need, run, shell_env
from tests._tty import Terminal
from tests.conftest import metis
from tests.docs import page

HOOKS = {"bash": SHELL_DIR / "metis-env.bash", "zsh": SHELL_DIR / "metis-env.zsh", "fish": SHELL_DIR / "metis-env.fish"}
SHELLS_PAGE = page("shells")  # the prompt segment's set-up, as a user copies it


def result(proc) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


# --- get key --json ---------------------------------------------------------------------------------


def test_get_key_json_of_an_endpoint_file_has_no_expiry(endpoint_files, file_store):
    assert metis("import", str(endpoint_files[0])).returncode == 0
    assert result(metis("get", "key", "1", "--json")) == (0, '{"key": "sk-test-one-0123456789abcdef", "expires_at": null}\n', "")


def test_get_key_json_of_a_gateway_endpoint_carries_the_tokens_expiry(logged_in):  # noqa: F811
    env, _globus = logged_in
    exported = exported_json(metis("export", "metis", "--shell", "json", env=env))
    assert json.loads(metis("get", "key", "metis", "--json", env=env).stdout) == {
        "key": exported["OPENAI_API_KEY"], "expires_at": exported["METIS_ENV_TOKEN_EXPIRES"]}


def test_get_json_is_for_the_key_only(endpoint_files, file_store):
    assert metis("import", str(endpoint_files[0])).returncode == 0
    assert result(metis("get", "url", "1", "--json")) == (
        2, "", "metis-env: error: --json applies to get key only; get url prints one plain value\n")


# --- the prompt segment -----------------------------------------------------------------------------


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cases(now: float) -> list[tuple[dict[str, str], str]]:
    """(variables, the segment): half an hour past each whole hour, so a second's drift changes nothing."""
    hours = lambda h: iso(now + h * 3600 + 1800)  # noqa: E731
    return [
        ({}, ""),
        ({"METIS_ENV_ENDPOINT": "1"}, "1"),
        ({"METIS_ENV_ENDPOINT": "metis", "METIS_ENV_TOKEN_EXPIRES": hours(47)}, "metis 47h"),
        ({"METIS_ENV_ENDPOINT": "metis", "METIS_ENV_TOKEN_EXPIRES": hours(0)}, "metis 0h!"),
        ({"METIS_ENV_ENDPOINT": "metis", "METIS_ENV_TOKEN_EXPIRES": hours(-3)}, "metis 0h!"),  # expired
        ({"METIS_ENV_ENDPOINT": "sophia", "METIS_ENV_TOKEN_EXPIRES": hours(1), "METIS_ENV_TOKEN_REFRESH_MARGIN": "7200"}, "sophia 1h!"),
        ({"METIS_ENV_ENDPOINT": "sophia", "METIS_ENV_TOKEN_EXPIRES": hours(1), "METIS_ENV_TOKEN_REFRESH_MARGIN": "3600.0"}, "sophia 1h"),
        ({"METIS_ENV_ENDPOINT": "metis", "METIS_ENV_TOKEN_EXPIRES": "not a date"}, "metis"),
        # across month ends, leap days and 2100 (no leap day): the calendar arithmetic in each shell
        ({"METIS_ENV_ENDPOINT": "m", "METIS_ENV_TOKEN_EXPIRES": hours(24 * 59 + 5)}, f"m {24 * 59 + 5}h"),
        ({"METIS_ENV_ENDPOINT": "m", "METIS_ENV_TOKEN_EXPIRES": hours(24 * 366 * 3 + 7)}, f"m {24 * 366 * 3 + 7}h"),
        ({"METIS_ENV_ENDPOINT": "m", "METIS_ENV_TOKEN_EXPIRES": hours(24 * 365 * 80 + 11)}, f"m {24 * 365 * 80 + 11}h"),
    ]


SEGMENT = {
    # the segment and the status the prompt after it sees; PATH names no folder: no program can start
    "bash": ["bash", "--norc", "--noprofile", "-c",
             "source '{hook}'; PATH=/nonexistent; (exit 7); metis-prompt; echo \"[$metis_prompt] $?\""],
    "zsh": ["zsh", "-f", "-c", "source '{hook}'; PATH=/nonexistent; (exit 7); metis-prompt; echo \"[$metis_prompt] $?\""],
    "fish": ["fish", "--no-config", "-c",
             "source '{hook}'; set PATH /nonexistent; false; metis-prompt '[%s]'; echo ' '$status"],
}


@pytest.mark.parametrize("shell", list(SEGMENT))
def test_the_segment_is_computed_in_the_shell_with_no_program(shell, tmp_path):
    need(shell)
    argv = [*SEGMENT[shell][:-1], SEGMENT[shell][-1].format(hook=HOOKS[shell])]
    table = cases(time.time())
    shown = [result(run(argv, shell_env(tmp_path, **variables))) for variables, _segment in table]
    assert shown == [(0, shown_line(shell, segment), "") for _variables, segment in table]


def shown_line(shell: str, segment: str) -> str:
    if shell == "fish":  # FORMAT is printed only for a segment; false left status 1
        return (f"[{segment}]" if segment else "") + " 1\n"
    return f"[{segment}] 7\n"


PROMPTS = {
    # the page's lines, in an interactive shell, then a command to draw a new prompt
    "bash": (["bash", "--norc", "--noprofile", "-i"], "PS1='READY> '; source '{hook}'; {readme}; "),
    "zsh": (["zsh", "-f", "-i"], "PS1='READY> '; source '{hook}'; {readme}; "),
    "fish": (["fish", "--no-config", "-i"], "function fish_prompt; printf 'READY> '; end; source '{hook}'; {readme}; "),
}


def readme_block(language: str, after: str) -> str:
    """The lines of docs/shells.md's first ```language block after the heading `after`, comments dropped."""
    text = SHELLS_PAGE[SHELLS_PAGE.index(after):]
    block = re.search(rf"```{language}\n(.*?)```", text, flags=re.S).group(1)
    return "; ".join(line for line in block.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("shell", list(PROMPTS))
def test_the_readmes_lines_draw_the_segment_in_a_real_prompt(shell, tmp_path):
    argv, setup = PROMPTS[shell]
    need(argv[0])
    readme = readme_block(shell, "## A prompt segment")
    expires = iso(time.time() + 46 * 3600 + 1800)
    set_vars = {"bash": f"export METIS_ENV_ENDPOINT=metis METIS_ENV_TOKEN_EXPIRES={expires}; PATH=/nonexistent",
                "zsh": f"export METIS_ENV_ENDPOINT=metis METIS_ENV_TOKEN_EXPIRES={expires}; PATH=/nonexistent",
                "fish": f"set -gx METIS_ENV_ENDPOINT metis; set -gx METIS_ENV_TOKEN_EXPIRES {expires}; set PATH /nonexistent"}[shell]
    with Terminal(argv, shell_env(tmp_path, TERM="dumb", HOME=str(tmp_path)), tmp_path) as terminal:
        terminal.type((setup.format(hook=HOOKS[shell], readme=readme) + "echo SET''UP\r").encode())
        terminal.expect(b"SETUP\r\n")
        terminal.type(f"{set_vars}; echo VAR''S\r".encode())
        terminal.expect(b"VARS\r\n")
        terminal.type(b"echo DO''NE\r")
        before = terminal.expect(b"DONE\r\n")
        terminal.expect(b"READY> ")
    assert (b"(metis 46h) READY> " in before, b"not found" in before) == (True, False), before


def test_the_readmes_starship_module_as_starship_runs_it(tmp_path):
    """starship is no package here: its custom module is `when`, then `command`, each run by `shell`
    with the prompt's environment; both are taken from docs/shells.md as written."""
    import tomllib

    module = tomllib.loads(re.search(r"```toml\n(.*?)```", SHELLS_PAGE, flags=re.S).group(1))["custom"]["metis"]
    env = shell_env(tmp_path, HOME=str(tmp_path), XDG_DATA_HOME="")
    assert metis("hook", "bash", "--install", env=env).returncode == 0
    expires = iso(time.time() + 20 * 3600 + 1800)
    outside = run([*module["shell"], "-c", module["when"]], env)
    inside = {**env, "METIS_ENV_ENDPOINT": "metis", "METIS_ENV_TOKEN_EXPIRES": expires}
    assert (run([*module["shell"], "-c", module["when"]], inside).returncode, outside.returncode) == (0, 1)
    assert result(run([*module["shell"], "-c", module["command"]], inside)) == (0, "metis 20h", "")
    assert module["format"] == "[($output)]($style) "
