"""Switching endpoints leaves exactly the names the new endpoint sets: an endpoint file (1) sets
SAMBANOVA_API_KEY, SAMBANOVA_API_BASE and SAMBA_NOVA_BASE_URL, a gateway endpoint (metis) sets
ALCF_AI_TOKEN and METIS_ENV_TOKEN_EXPIRES instead; going from one to the other must not leave the
first one's key or URL behind (a SambaNova client would take endpoint 1's key to endpoint 1, or the
other way, a stale expiry). Through export in bash, dash, zsh and fish (each syntax, and the default
one), metis-use, direnv, run, metis_env.load() and %metis, with a real login at the stand-in."""

from __future__ import annotations

import json
import os
import sys

import pytest

from metis_env import actions
from tests._gateway import logged_in  # noqa: F401  (fixture)
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests._shells import SHELL_DIR, endpoint_text, need, run, write_metis_wrapper
from tests.conftest import metis
from tests.test_direnv import Direnv, applied, ours

ALIASES = "GROQ_API_KEY=SAMBANOVA_API_KEY,MY_TOKEN_EXPIRES=METIS_ENV_TOKEN_EXPIRES"
"""One alias only an endpoint file sets, one only a gateway endpoint sets: they switch too."""
NAMES = (*actions.EXPORTED_NAMES, "GROQ_API_KEY", "MY_TOKEN_EXPIRES")


@pytest.fixture
def both(logged_in, tmp_path, monkeypatch):  # noqa: F811
    """A gateway login (metis, sophia) and endpoint file 1 in one file store; metis-env on PATH."""
    env, _globus = logged_in
    files = tmp_path / "endpoint-files"
    files.mkdir()
    (files / "metis_endpoint_1.txt").write_text(endpoint_text("sk-one-0123456789abcdef", models="DeepSeek-R1"))
    assert metis("import", str(files / "metis_endpoint_1.txt"), env=env).returncode == 0
    bin_dir = write_metis_wrapper(tmp_path / "bin").parent
    env = {k: v for k, v in env.items() if k not in NAMES}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", METIS_ENV_ALIASES=ALIASES)
    for name, value in env.items():  # for load(), %metis and direnv, in this process
        monkeypatch.setenv(name, value)
    for name in NAMES:  # set first, so that monkeypatch removes what load() and %metis set here
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return env


def sets(env: dict, endpoint: str) -> dict[str, str]:
    """Exactly what export sets for the endpoint (its JSON form), aliases included."""
    result = metis("export", endpoint, "--shell", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dump(shell: str, path) -> str:
    """A command writing the names of NAMES the shell has exported, with their values, to path."""
    code = f"import json, os, sys; json.dump({{k: v for k, v in os.environ.items() if k in {list(NAMES)!r}}}, open(sys.argv[1], 'w'))"
    return f"'{sys.executable}' -c \"{code}\" '{path}'"


ARGV = {
    "bash": ["bash", "--norc", "--noprofile", "-c"],
    "dash": ["dash", "-c"],
    "zsh": ["zsh", "-f", "-c"],
    "fish": ["fish", "--no-config", "-c"],
}
EVAL = {
    # how each shell evaluates `metis-env export ENDPOINT ...`: without --shell, and with its own
    "default": {"bash": 'eval "$(metis-env export {e})"', "dash": 'eval "$(metis-env export {e})"',
                "zsh": 'eval "$(metis-env export {e})"', "fish": 'eval "$(metis-env export {e})"'},
    "unquoted": {"bash": "eval $(metis-env export {e})", "dash": "eval $(metis-env export {e})",
                 "zsh": "eval $(metis-env export {e})", "fish": "eval (metis-env export {e})"},
    "own": {"bash": 'eval "$(metis-env export {e} --shell bash)"', "dash": 'eval "$(metis-env export {e} --shell sh)"',
            "zsh": 'eval "$(metis-env export {e} --shell zsh)"', "fish": "metis-env export {e} --shell fish | source"},
}


@pytest.mark.parametrize("form", list(EVAL))
@pytest.mark.parametrize("shell", list(ARGV))
def test_each_shell_keeps_exactly_the_names_of_the_endpoint_it_switched_to(both, shell, form, tmp_path):
    need(shell)
    steps = ["1", "metis", "1"]
    or_exit = "; or exit 9;" if shell == "fish" else " || exit 9;"  # the code's own status is 0
    script = " ".join(f"{EVAL[form][shell].format(e=e)}{or_exit} {dump(shell, tmp_path / f'{i}.json')};" for i, e in enumerate(steps))
    result = run([*ARGV[shell], script + " echo done"], both)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"done\n", b"")
    seen = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(len(steps))]
    assert seen == [sets(both, e) for e in steps]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_metis_use_switches_too(both, shell, tmp_path):
    need(shell)
    hook = SHELL_DIR / {"bash": "metis-env.bash", "zsh": "metis-env.zsh", "fish": "metis-env.fish"}[shell]
    script = f"source '{hook}'; metis-use 1; metis-use metis; {dump(shell, tmp_path / 'a.json')}; metis-use 1; {dump(shell, tmp_path / 'b.json')}"
    result = run([*ARGV[shell], script], both)
    assert (result.returncode, result.stderr) == (0, b"")
    assert [json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json")] == [sets(both, "metis"), sets(both, "1")]


@pytest.mark.parametrize("outer, inner", [("1", "metis"), ("metis", "1")])
def test_direnv_leaves_only_the_inner_endpoints_names_and_restores_the_outer_ones(both, outer, inner, tmp_path, file_store):
    (tmp_path / "direnv").mkdir()
    direnv = Direnv(tmp_path / "direnv")
    shell = {**direnv.env, **sets(both, outer)}  # a shell where metis-use OUTER ran
    folder = direnv.project(f"use metis {inner}\n")
    code, changes, _log = direnv.export(folder, shell)
    inside = applied(shell, changes)
    assert (code, {k: v for k, v in inside.items() if k in NAMES}) == (0, sets(both, inner))
    gone = {name: None for name in sets(both, outer) if name not in sets(both, inner)}
    assert ours(changes) == {**{k: v for k, v in sets(both, inner).items() if shell.get(k) != v}, **gone}
    code, back, _log = direnv.export(tmp_path, inside)  # leaving the folder
    assert (code, {k: v for k, v in applied(inside, back).items() if k in NAMES}) == (0, sets(both, outer))


def test_run_gives_the_command_only_its_endpoints_names(both):
    shell = {**both, **sets(both, "1")}  # an export of endpoint 1 earlier in this shell
    show = f"import json, os; print(json.dumps({{k: v for k, v in os.environ.items() if k in {list(NAMES)!r}}}))"
    result = metis("run", "metis", "--", sys.executable, "-c", show, env=shell)
    assert (result.returncode, json.loads(result.stdout)) == (0, sets(both, "metis"))


def ours_in_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in NAMES}


def test_load_switches_and_unload_removes_what_it_set(both, monkeypatch):
    import metis_env

    metis_env.load(1)
    assert ours_in_environ() == sets(both, "1")
    metis_env.load("metis")
    assert ours_in_environ() == sets(both, "metis")
    metis_env.load(1)
    assert ours_in_environ() == sets(both, "1")
    monkeypatch.setenv("METIS_ENV_ALIASES", "OTHER_KEY=OPENAI_API_KEY")  # the aliases change after the load
    assert (metis_env.unload(), ours_in_environ()) == ([*sets(both, "1")], {})


def test_load_without_override_leaves_every_variable_alone(both):
    import metis_env

    metis_env.load(1)
    metis_env.load("metis", override=False)
    assert ours_in_environ() == {**sets(both, "1"), "ALCF_AI_TOKEN": sets(both, "metis")["ALCF_AI_TOKEN"],
                                 "METIS_ENV_TOKEN_EXPIRES": sets(both, "metis")["METIS_ENV_TOKEN_EXPIRES"],
                                 "MY_TOKEN_EXPIRES": sets(both, "metis")["MY_TOKEN_EXPIRES"]}


def test_percent_metis_switches_says_what_it_removed_and_unset_removes_the_aliases_load_set(both, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    import metis_env

    ipython = InteractiveShell.instance()
    try:
        ipython.run_line_magic("load_ext", "metis_env")
        ipython.run_line_magic("metis", "1")
        ipython.run_line_magic("metis", "metis")
        assert ours_in_environ() == sets(both, "metis")
        metis_env.load(1)  # the Python API in the same kernel, aliases and all
        ipython.run_line_magic("metis", "--unset")
        assert ours_in_environ() == {}
    finally:
        InteractiveShell.clear_instance()
    model = sets(both, "metis")["MODEL_NAME"]
    assert capsys.readouterr().out.splitlines() == [
        f"metis-env: endpoint 1, model DeepSeek-R1: set {', '.join(sets(both, '1'))}",
        f"metis-env: endpoint metis, model {model}: set {', '.join(sets(both, 'metis'))}; "
        "unset SAMBANOVA_API_KEY, SAMBANOVA_API_BASE, SAMBA_NOVA_BASE_URL, GROQ_API_KEY",
        f"metis-env: unset {', '.join(sets(both, '1'))}",
    ]
