"""The hooks in shell/, sourced by the real bash, zsh and fish with the real metis-env on PATH."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests._shells import (
    EXPORTED,
    HOSTILE_KEY,
    SHELL_DIR,
    endpoint_text,
    need,
    run,
    shell_env,
    write_metis_wrapper,
    write_recording_fake,
)
from tests.conftest import exported, metis

HOOKS = {"bash": SHELL_DIR / "metis-env.bash", "zsh": SHELL_DIR / "metis-env.zsh", "fish": SHELL_DIR / "metis-env.fish"}
SHELLS = list(HOOKS)
NOT_FOUND_9 = "metis-env: error: no endpoint or model '9' is stored; stored endpoints: 1, 2\n"


def shell_argv(shell: str, script: str) -> list[str]:
    """Run script in the real shell, with no rc file of the machine's."""
    return {
        "bash": [need("bash"), "--norc", "--noprofile", "-c", script],
        "zsh": [need("zsh"), "-f", "-c", script],
        "fish": [need("fish"), "--no-config", "-c", script],
    }[shell]


def or_exit(shell: str, code: int) -> str:
    return f"; or exit {code}" if shell == "fish" else f" || exit {code}"


def dump_env(path: Path) -> str:
    """A command that writes the shell's exported environment to path as JSON, byte for byte."""
    return f"'{sys.executable}' -c 'import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], \"w\"))' '{path}'"


@pytest.fixture
def stored(tmp_path, file_store):
    """Endpoint 1 with a key no shell may interpret, endpoint 2 plain; the real metis-env on PATH."""
    folder = tmp_path / "endpoint-files"
    folder.mkdir()
    (folder / "metis_endpoint_1.txt").write_text(endpoint_text(HOSTILE_KEY, models="DeepSeek-R1,Other-Model"))
    (folder / "metis_endpoint_2.txt").write_text(
        endpoint_text("sk-two", models="Llama-4-Maverick-17B-128E-Instruct,Llama-3.3-70B-Instruct", url="https://metis.alcf.anl.gov/v2/")
    )
    metis("import", str(folder / "metis_endpoint_1.txt"), str(folder / "metis_endpoint_2.txt"), check=True)
    bin_dir = tmp_path / "bin"
    write_metis_wrapper(bin_dir)
    return shell_env(bin_dir)


def load(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("shell", SHELLS)
def test_metis_use_sets_exactly_what_export_promises_and_metis_unuse_removes_it(shell, stored, tmp_path):
    strict = "" if shell == "fish" else "set -u; "  # the hooks must also work for people who use nounset
    script = (
        f"{strict}source '{HOOKS[shell]}'; {dump_env(tmp_path / 'before.json')}; "
        f"metis-use 1 --model Other-Model{or_exit(shell, 90)}; {dump_env(tmp_path / 'used.json')}; "
        f"metis-unuse{or_exit(shell, 91)}; {dump_env(tmp_path / 'unused.json')}; exit 0"  # exit: no exec, SHLVL stays
    )
    result = run(shell_argv(shell, script), stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    before, used, unused = load(tmp_path / "before.json"), load(tmp_path / "used.json"), load(tmp_path / "unused.json")
    added = {k: v for k, v in used.items() if before.get(k) != v}
    assert added == exported("https://metis.alcf.anl.gov/v1/", HOSTILE_KEY, "Other-Model", "1")
    assert set(before) - set(used) == set()
    assert unused == before
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failing_export_leaves_the_variables_alone_and_fails_visibly(shell, stored, tmp_path):
    status = "$status" if shell == "fish" else "$?"
    script = (
        f"source '{HOOKS[shell]}'; metis-use 2{or_exit(shell, 90)}; {dump_env(tmp_path / 'good.json')}; "
        f"metis-use 9; echo failed={status}; {dump_env(tmp_path / 'after.json')}; exit 0"
    )
    result = run(shell_argv(shell, script), stored)
    assert (result.returncode, result.stdout, result.stderr.decode()) == (0, b"failed=3\n", NOT_FOUND_9)
    assert load(tmp_path / "after.json") == load(tmp_path / "good.json")
    assert load(tmp_path / "good.json")["OPENAI_API_KEY"] == "sk-two"


@pytest.mark.parametrize("shell", SHELLS)
def test_metis_use_without_metis_env_installed_fails(shell, tmp_path):
    env = shell_env(tmp_path / "empty-bin", PATH="/usr/bin:/bin")
    status = "$status" if shell == "fish" else "$?"
    result = run(shell_argv(shell, f"source '{HOOKS[shell]}'; metis-use 1; echo status={status}"), env)
    assert (result.returncode, result.stdout) == (0, b"status=127\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_sourcing_keeps_the_status_prints_nothing_and_never_runs_metis_env(shell, tmp_path):
    record = tmp_path / "ran"
    env = shell_env(tmp_path / "bin")
    write_recording_fake(tmp_path / "bin", record)
    status = "$status" if shell == "fish" else "$?"
    hook = HOOKS[shell]
    script = f"sh -c 'exit 7'; source '{hook}'; echo once={status}; sh -c 'exit 5'; source '{hook}'; echo twice={status}"
    result = run(shell_argv(shell, script), env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"once=7\ntwice=5\n", b"")
    assert not record.exists()


SNAPSHOT = {
    # what sourcing defines: functions, completions and (none expected) variables of ours
    "bash": "declare -f; complete -p; compgen -v | grep -i metis || true",
    "zsh": "functions; typeset -m '*metis_env*'",
    "fish": "functions --all; complete --command metis-env; complete --command metis-use; set --names | string match '*metis_env*'; true",
}


@pytest.mark.parametrize("shell", SHELLS)
def test_sourcing_twice_changes_nothing(shell, tmp_path):
    env = shell_env(tmp_path / "bin")
    write_recording_fake(tmp_path / "bin", tmp_path / "ran")
    hook = HOOKS[shell]
    once = run(shell_argv(shell, f"source '{hook}'; {SNAPSHOT[shell]}"), env)
    twice = run(shell_argv(shell, f"source '{hook}'; source '{hook}'; {SNAPSHOT[shell]}"), env)
    assert once.returncode == twice.returncode == 0
    assert once.stdout == twice.stdout
    assert b"metis-use" in once.stdout and b"__metis_env_status" not in once.stdout


TAB = "tab() { COMP_LINE=$2 COMP_POINT=${#2}; $1; printf '%s\\n' \"${COMPREPLY[@]}\"; }"
"""bash: `tab FUNCTION LINE` does what TAB at the end of LINE does (bash sets COMP_LINE and COMP_POINT)
and prints the candidates."""


def test_bash_completion_asks_metis_env_at_tab_time(stored):
    script = (
        f"source '{HOOKS['bash']}'; complete -p metis-env metis-use; "
        f"{TAB}; tab _metis_env_complete 'metis-env export 2 --model '; tab _metis_use_complete 'metis-use '; "
        "tab _metis_use_complete 'metis-use 1 -m '"
    )
    result = run(shell_argv("bash", script), stored)
    assert (result.returncode, result.stdout.decode(), result.stderr) == (
        0,
        "complete -o nosort -F _metis_env_complete metis-env\n"
        "complete -o nosort -F _metis_use_complete metis-use\n"
        "Llama-4-Maverick-17B-128E-Instruct\nLlama-3.3-70B-Instruct\n"
        "1\n2\nDeepSeek-R1\nOther-Model\nLlama-4-Maverick-17B-128E-Instruct\nLlama-3.3-70B-Instruct\n"
        "DeepSeek-R1\nOther-Model\n",
        b"",
    )


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_shell_option_completes_the_syntaxes(shell, stored):
    script = {
        "bash": f"source '{HOOKS['bash']}'; {TAB}; tab _metis_env_complete 'metis-env export 1 --shell '",
        "fish": f"source '{HOOKS['fish']}'; complete -C 'metis-env export 1 --shell '",
    }[shell]
    result = run(shell_argv(shell, script), stored)
    offered = result.stdout.decode().split()
    assert (result.returncode, offered if shell == "bash" else sorted(offered), result.stderr) == (  # fish sorts
        0, ["bash", "zsh", "sh", "fish", "powershell", "dotenv", "json"] if shell == "bash" else
        ["bash", "dotenv", "fish", "json", "powershell", "sh", "zsh"], b"")


def test_zsh_completion_registers_after_compinit_and_stays_quiet_without_it(stored, tmp_path):
    with_compinit = (
        f"autoload -Uz compinit && compinit -u -d '{tmp_path / 'zcompdump'}'; source '{HOOKS['zsh']}'; "
        "print -r -- $_comps[metis-env] $_comps[metis-use]"
    )
    result = run(shell_argv("zsh", with_compinit), stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"_metis_env_completion _metis_use_completion\n", b"")
    without = run(shell_argv("zsh", f"source '{HOOKS['zsh']}'; echo $?"), stored)
    assert (without.returncode, without.stdout, without.stderr) == (0, b"0\n", b"")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("metis-env export 2 --model ", ["Llama-3.3-70B-Instruct\tendpoint 2", "Llama-4-Maverick-17B-128E-Instruct\tendpoint 2"]),
        ("metis-use 1 --model ", ["DeepSeek-R1\tendpoint 1", "Other-Model\tendpoint 1"]),
        ("metis-use ", ["1\tDeepSeek-R1, Other-Model", "2\tLlama-4-Maverick-17B-128E-Instruct, Llama-3.3-70B-Instruct",
                        "DeepSeek-R1\tmodel of endpoint 1", "Llama-3.3-70B-Instruct\tmodel of endpoint 2",
                        "Llama-4-Maverick-17B-128E-Instruct\tmodel of endpoint 2", "Other-Model\tmodel of endpoint 1"]),
        ("metis-env forget ", ["1\tDeepSeek-R1, Other-Model", "2\tLlama-4-Maverick-17B-128E-Instruct, Llama-3.3-70B-Instruct"]),
    ],
)
def test_fish_completion_asks_metis_env_at_tab_time(stored, line, expected):
    result = run(shell_argv("fish", f"source '{HOOKS['fish']}'; complete --do-complete '{line}'"), stored)
    assert (result.returncode, sorted(result.stdout.decode().splitlines()), result.stderr) == (0, sorted(expected), b"")


# --- metis-env hook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target, file_name", [("bash", "metis-env.bash"), ("zsh", "metis-env.zsh"), ("fish", "metis-env.fish"), ("direnv", "direnvrc")])
def test_hook_prints_the_shipped_file_and_its_path(target, file_name):
    text = metis("hook", target)
    path = metis("hook", target, "--path")
    assert (text.returncode, text.stdout, text.stderr) == (0, (SHELL_DIR / file_name).read_bytes(), b"")
    assert (path.returncode, path.stdout.decode(), path.stderr) == (0, f"{SHELL_DIR / file_name}\n", b"")


@pytest.mark.parametrize(
    "target, where, next_step",
    [
        ("bash", "home/.local/share/metis-env/metis-env.bash", "add this line to ~/.bashrc: source {path}"),
        ("zsh", "home/.local/share/metis-env/metis-env.zsh", "add this line to ~/.zshrc, after compinit: source {path}"),
        ("fish", "home/.config/fish/conf.d/metis-env.fish", "fish sources it in every new shell; nothing else to do"),
        ("direnv", "home/.config/direnv/lib/metis-env.sh", "direnv loads it before every .envrc; write 'use metis ENDPOINT' in one"),
    ],
)
def test_hook_install_writes_the_file_and_says_where(target, where, next_step, tmp_path):
    path = tmp_path / where
    kind = "use_metis for .envrc files" if target == "direnv" else f"metis-use, metis-unuse and completion for {target}"
    first = metis("hook", target, "--install")
    assert (first.returncode, first.stdout, first.stderr.decode()) == (
        0, b"", f"metis-env: wrote {path} ({kind}); {next_step.format(path=path)}\n"
    )
    assert path.read_bytes() == metis("hook", target).stdout
    again = metis("hook", target, "--install")
    assert again.stderr.decode() == f"metis-env: already up to date: {path} ({kind}); {next_step.format(path=path)}\n"
    path.write_text("# an older version\n")
    assert metis("hook", target, "--install").stderr.decode().startswith(f"metis-env: updated {path} ")


def test_hook_install_follows_xdg(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "conf")}
    for target, where in (("bash", "data/metis-env/metis-env.bash"), ("fish", "conf/fish/conf.d/metis-env.fish"), ("direnv", "conf/direnv/lib/metis-env.sh")):
        assert metis("hook", target, "--install", env=env).returncode == 0
        assert (tmp_path / where).is_file()
    assert metis("hook", "direnv", "--install", env={"DIRENV_CONFIG": str(tmp_path / "dc")}).returncode == 0
    assert (tmp_path / "dc/lib/metis-env.sh").is_file()


def test_hook_refuses_an_unknown_target_and_both_flags():
    unknown = metis("hook", "tcsh")
    both = metis("hook", "bash", "--path", "--install")
    assert (unknown.returncode, unknown.stdout) == (2, b"")
    assert (both.returncode, both.stdout, both.stderr.decode()) == (
        2, b"", "metis-env: error: give --path or --install, not both; see metis-env hook --help\n")


# --- docs/shells.md's blocks, as written there ----------------------------------------------------------


def test_readme_bash_block(stored):
    # metis-env hook bash --install; then in ~/.bashrc: source ~/.local/share/metis-env/metis-env.bash
    assert metis("hook", "bash", "--install", env=stored).returncode == 0
    script = "source ~/.local/share/metis-env/metis-env.bash; metis-use 2; echo \"$MODEL_NAME $OPENAI_BASE_URL\""
    result = run(shell_argv("bash", script), stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Llama-4-Maverick-17B-128E-Instruct https://metis.alcf.anl.gov/v2/\n", b"")


def test_readme_bash_eval_block(stored):
    result = run(shell_argv("bash", 'eval "$(metis-env hook bash)"; metis-use 2 --model Llama-3.3-70B-Instruct; echo "$MODEL_NAME"'), stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Llama-3.3-70B-Instruct\n", b"")


def test_readme_zsh_block(stored, tmp_path):
    assert metis("hook", "zsh", "--install", env=stored).returncode == 0
    script = "autoload -Uz compinit && compinit; source ~/.local/share/metis-env/metis-env.zsh; metis-use 2; echo $MODEL_NAME"
    result = run(shell_argv("zsh", script), stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Llama-4-Maverick-17B-128E-Instruct\n", b"")


def test_readme_fish_block(stored):
    # metis-env hook fish --install, then a new fish (with its config, which reads conf.d) has metis-use.
    assert metis("hook", "fish", "--install", env=stored).returncode == 0
    result = run([need("fish"), "-c", "metis-use 2; echo $MODEL_NAME; metis-unuse; set -q MODEL_NAME; or echo unset"], stored)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Llama-4-Maverick-17B-128E-Instruct\nunset\n", b"")


# --- static checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["metis-env.bash", "direnvrc"])
def test_shellcheck_passes(name):
    result = run([need("shellcheck"), "--shell=bash", "--severity=style", str(SHELL_DIR / name)], shell_env(Path("/nonexistent")))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.mark.parametrize("argv", [["zsh", "-n"], ["fish", "--no-execute"]])
def test_zsh_and_fish_parse_their_files(argv):
    path = HOOKS[argv[0]]
    result = run([need(argv[0]), *argv[1:], str(path)], shell_env(Path("/nonexistent")))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_the_build_ships_shell_as_metis_env_shell_and_hook_reads_it_there(tmp_path):
    """pip and pipx users get the hooks: pyproject maps shell/ to the package metis_env.shell. setuptools'
    build_py lays the package out as a wheel would (offline, in a second), from a copy of the checkout."""
    import shutil
    import subprocess

    from tests.conftest import REPO

    source, built = tmp_path / "source", tmp_path / "site-packages"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):  # setup.py: the metis-env launcher (bin/)
        shutil.copy(REPO / name, source / name)
    for name in ("metis_env", "shell", "bin"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(built)],
        cwd=source, check=True, capture_output=True, timeout=120,
    )
    names = ("__init__.py", "direnvrc", "metis-env.bash", "metis-env.fish", "metis-env.zsh")
    assert sorted(p.name for p in (built / "metis_env" / "shell").iterdir()) == list(names)
    env = {**os.environ, "PYTHONPATH": str(built)}
    located = subprocess.run([sys.executable, "-m", "metis_env", "hook", "bash", "--path"], env=env, capture_output=True, cwd=tmp_path)
    assert (located.returncode, located.stdout.decode(), located.stderr) == (0, f"{built / 'metis_env/shell/metis-env.bash'}\n", b"")


@pytest.mark.parametrize("shell, rc", [("bash", ".bashrc"), ("zsh", ".zshrc")])
def test_install_again_with_the_line_in_the_rc_file_says_nothing_is_left_to_do(shell, rc, tmp_path):
    home = tmp_path / "rc-home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": "", "ZDOTDIR": ""}
    first = metis("hook", shell, "--install", env=env)
    path = home / ".local" / "share" / "metis-env" / f"metis-env.{shell}"
    (home / rc).write_text(f"# my rc\nsource ~/.local/share/metis-env/metis-env.{shell}\n")
    again = metis("hook", shell, "--install", env=env)
    assert (first.returncode, again.returncode, again.stderr.decode()) == (0, 0, (
        f"metis-env: already up to date: {path} (metis-use, metis-unuse and completion for {shell}); "
        f"~/{rc} already sources it: nothing else to do\n"))


@pytest.mark.parametrize("shell", SHELLS)
def test_metis_use_refuses_exports_options_it_cannot_honour(shell, stored, tmp_path):
    status = "$status" if shell == "fish" else "$?"
    said = []
    for option in ("--shell=fish", "--output", "-o", "--unset", "-sbash"):
        result = run(shell_argv(shell, f"source '{HOOKS[shell]}'; metis-use 1 {option}; echo status={status}; "
                                       f"{dump_env(tmp_path / 'after.json')}; exit 0"), stored)
        said.append((result.stdout, result.stderr.decode(), "OPENAI_API_KEY" in load(tmp_path / "after.json")))
    assert said == [(b"status=2\n", f"metis-use: {option} is an option of metis-env export; metis-use sets this shell's "
                                    "variables (metis-unuse removes them)\n", False)
                    for option in ("--shell=fish", "--output", "-o", "--unset", "-sbash")]


def test_bash_completion_of_metis_use_offers_no_option_it_refuses(stored):
    script = (
        f"source '{HOOKS['bash']}'; "
        f"{TAB}; tab _metis_env_complete 'metis-env export 1 --'; echo ---; tab _metis_use_complete 'metis-use 1 --'"
    )
    result = run(shell_argv("bash", script), stored)
    export_offers, use_offers = result.stdout.decode().split("---\n")
    assert (sorted(set(export_offers.split()) - set(use_offers.split())), "--model" in use_offers.split()) == (
        ["--output", "--shell", "--unset"], True)
