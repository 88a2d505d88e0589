"""Renderers: exact strings for every target, then the real shells evaluate hostile values byte for byte."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metis_env.errors import UsageError
from metis_env.render import (
    RENDERERS,
    failure_code,
    normalize_shell,
    render,
    check_portable,
    quote_portable,
    render_unset,
)

# --- exact strings -----------------------------------------------------------------------------

ENV = {"OPENAI_API_KEY": "sk-1", "Q": "it's \\ ‘q’ $x"}
NAMES = ["OPENAI_API_KEY", "Q"]
SP = "\"$(printf '\\040')\""
POSIX_Q = f"export OPENAI_API_KEY='sk-1';\nexport Q='it'\"'\"'s'{SP}\"\\\\\"{SP}'‘q’'{SP}\"\\$\"'x';\n"


@pytest.mark.parametrize(
    "shell, set_code, unset_code",
    [
        ("bash", POSIX_Q, "unset OPENAI_API_KEY;\nunset Q;\n"),
        ("zsh", POSIX_Q, "unset OPENAI_API_KEY;\nunset Q;\n"),
        ("sh", POSIX_Q, "unset OPENAI_API_KEY;\nunset Q;\n"),
        (
            "fish",
            "set -gx OPENAI_API_KEY 'sk-1';\nset -gx Q 'it\\'s \\\\ ‘q’ $x';\n",
            "if set -q OPENAI_API_KEY; set -e OPENAI_API_KEY; end;\nif set -q Q; set -e Q; end;\n",
        ),
        (
            "powershell",
            "$Env:OPENAI_API_KEY = 'sk-1';\n$Env:Q = 'it''s \\ ‘‘q’’ $x';\n",
            "Remove-Item -ErrorAction SilentlyContinue Env:OPENAI_API_KEY;\n"
            "Remove-Item -ErrorAction SilentlyContinue Env:Q;\n",
        ),
        ("dotenv", "OPENAI_API_KEY='sk-1'\nQ='it\\'s \\\\ ‘q’ $x'\n", None),
        (
            "json",
            '{\n  "OPENAI_API_KEY": "sk-1",\n  "Q": "it\'s \\\\ ‘q’ $x"\n}\n',
            '{\n  "OPENAI_API_KEY": null,\n  "Q": null\n}\n',
        ),
    ],
)
def test_exact_output(shell, set_code, unset_code):
    assert render(shell, ENV) == set_code
    if unset_code is None:
        with pytest.raises(UsageError) as caught:
            render_unset(shell, NAMES)
        assert str(caught.value) == "--unset does not apply to --shell dotenv; delete the lines from the file instead"
    else:
        assert render_unset(shell, NAMES) == unset_code


def test_every_renderer_has_an_exact_test():
    assert sorted(RENDERERS) == ["bash", "dotenv", "fish", "json", "powershell", "sh", "zsh"]


def test_empty_mapping_renders_nothing():
    assert [render(shell, {}) for shell in ("bash", "fish", "powershell", "dotenv")] == ["", "", "", ""]


# PowerShell is not installable here: its single-quoted string is checked by exact strings. Inside
# '...' PowerShell takes ' and the typographic quotes U+2018 U+2019 U+201A U+201B as quote characters
# (each doubled to stand for itself); nothing else is special, not $, `, " or a newline.
@pytest.mark.parametrize(
    "value, code",
    [
        ("plain", "$Env:K = 'plain';\n"),
        ("it's", "$Env:K = 'it''s';\n"),
        ("‘left’", "$Env:K = '‘‘left’’';\n"),
        ("‚low‛", "$Env:K = '‚‚low‛‛';\n"),
        ("'‘’‚‛", "$Env:K = '''‘‘’’‚‚‛‛';\n"),
        ("“double” \"q\"", "$Env:K = '“double” \"q\"';\n"),
        ("$env:HOME $(Get-Date) `n", "$Env:K = '$env:HOME $(Get-Date) `n';\n"),
        ("a\nb", "$Env:K = 'a\nb';\n"),
        ("", "$Env:K = '';\n"),
        ("é 🔑", "$Env:K = 'é 🔑';\n"),
    ],
)
def test_powershell_quoting(value, code):
    assert render("powershell", {"K": value}) == code


@pytest.mark.parametrize(
    "shell, code",
    [
        ("bash", "false\n"),
        ("zsh", "false\n"),
        ("sh", "false\n"),
        ("fish", "false\n"),
        ("powershell", "$global:LASTEXITCODE = 1; throw 'metis-env export failed';\n"),
        ("dotenv", ""),
        ("json", ""),
    ],
)
def test_failure_code_exact(shell, code):
    assert failure_code(shell) == code


# The POSIX renderer's quoting: fish reads it too, and it holds no blank or glob character, so that an
# unquoted eval $(...) neither splits nor globs (tests/test_trust_hostile.py runs it in every shell).
@pytest.mark.parametrize(
    "value, word",
    [
        ("plain", "'plain'"),
        ("", "''"),
        ("it's", "'it'\"'\"'s'"),
        ("tail\\", "'tail'\"\\\\\""),
        ("\\'", "\"\\\\\"\"'\""),
        ("a b", "'a'\"$(printf '\\040')\"'b'"),
        ("\t", "\"$(printf '\\011')\""),
        ("*?[(", "\"$(printf '\\052')\"\"$(printf '\\077')\"\"$(printf '\\133')\"\"$(printf '\\050')\""),
        ("$x `id` ) ] ~ ! # ; é", "\"\\$\"'x'\"$(printf '\\040')\"'`id`'\"$(printf '\\040')\"')'\"$(printf '\\040')\"']'"
                                   "\"$(printf '\\040')\"'~'\"$(printf '\\040')\"'!'\"$(printf '\\040')\"'#'"
                                   "\"$(printf '\\040')\"';'\"$(printf '\\040')\"'é'"),
        ("a\nb", "'a\nb'"),
    ],
)
def test_quote_portable(value, word):
    assert quote_portable(value) == word


def test_default_code_refuses_a_newline_that_fish_would_drop():
    check_portable({"K": "tab\there 'and' *"})
    with pytest.raises(UsageError) as caught:
        check_portable({"OK": "x", "K": "a\nb"})
    assert str(caught.value) == (
        "the value of K holds a newline, which only a named shell can take: add --shell bash (or zsh, sh, fish)")


@pytest.mark.parametrize(
    "name, renderer",
    [("bash", "bash"), ("BASH", "bash"), ("dash", "sh"), ("ksh", "sh"), ("pwsh", "powershell"),
     ("Fish", "fish"), ("env", "dotenv"), ("json", "json"),
     ("csh", "unknown shell 'csh'; choose one of: bash, zsh, sh, fish, powershell, dotenv, json")],
)
def test_normalize_shell(name, renderer):
    try:
        got = normalize_shell(name)
    except UsageError as exc:
        got = str(exc)
    assert got == renderer


# --- real shells -------------------------------------------------------------------------------

# Each shell evaluates the code file ($1 / $argv[1]) the way docs/export.md says, then execs a Python
# child that prints the named variables as hex (null when unset).
DUMP = (
    "import json, os, sys; print(json.dumps({n: os.environb[n.encode()].hex() "
    "if n.encode() in os.environb else None for n in sys.argv[1:]}))"
)
POSIX_QUOTED = 'eval "$(cat "$1")" || exit 99; shift; exec "$PY" -c "$DUMP" "$@"'
POSIX_UNQUOTED = 'eval $(cat "$1") || exit 99; shift; exec "$PY" -c "$DUMP" "$@"'
FISH_SOURCE = "source $argv[1]; or exit 99; exec $PY -c $DUMP $argv[2..]"
SHELLS = {  # name: (argv before the script, renderer)
    "bash": (["bash", "--norc", "--noprofile", "-c"], "bash"),
    "bash --posix": (["bash", "--posix", "--norc", "--noprofile", "-c"], "sh"),
    "dash": (["dash", "-c"], "sh"),
    "zsh": (["zsh", "-f", "-c"], "zsh"),
    "fish": (["fish", "--no-config", "-c"], "fish"),
    "fish reading sh code": (["fish", "--no-config", "-c"], "sh"),  # export's default, whatever $SHELL says
}


def need(program: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is not installed, and CI=true: install it (apt-get install {program})")
        pytest.skip(f"{program} is not installed")


def run_in_shell(shell: str, code: str, names, *, unquoted: bool = False, lang: str = "C.UTF-8",
                 inherited: dict | None = None) -> tuple[dict, list[str]]:
    """Evaluate `code` in `shell`; return what the child saw ({name: bytes or None}) and the files
    left in the working folder besides the code file (a command hidden in a value would create one)."""
    argv, _ = SHELLS[shell]
    need(argv[0])
    if argv[0] == "fish":
        script = FISH_SOURCE
    else:
        script = POSIX_UNQUOTED if unquoted else POSIX_QUOTED
    with tempfile.TemporaryDirectory() as root:
        work, home = os.path.join(root, "work"), os.path.join(root, "home")  # fish writes under home
        os.mkdir(work)
        os.mkdir(home)
        code_file = os.path.join(work, "code")
        with open(code_file, "w", encoding="utf-8") as f:
            f.write(code)
        env = {"PATH": os.environ["PATH"], "HOME": home, "LANG": lang, "LC_ALL": lang, "PY": sys.executable,
               "DUMP": DUMP, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home, **(inherited or {})}
        tail = [code_file, *names] if argv[0] == "fish" else [shell, code_file, *names]
        done = subprocess.run([*argv, script, *tail], cwd=work, env=env, capture_output=True, timeout=30)
        assert (done.returncode, done.stderr) == (0, b"")
        seen = {name: None if hexed is None else bytes.fromhex(hexed) for name, hexed in json.loads(done.stdout).items()}
        return seen, sorted(set(os.listdir(work)) - {"code"})


HOSTILE = {
    "SINGLE_QUOTE": "it's",
    "DOUBLE_QUOTE": 'say "hi"',
    "QUOTES": "'\"'\"''\"\"",
    "DOLLAR_PAREN": "$(touch CANARY)",
    "BACKTICKS": "`touch CANARY`",
    "FISH_PAREN": "(touch CANARY)",
    "SEMICOLON": "; touch CANARY;",
    "AND_AND": "&& touch CANARY",
    "PIPE": "| touch CANARY",
    "REDIRECT": "> CANARY",
    "BACKSLASHES": "a\\b\\\\c\\n\\t\\x41\\u00e9",
    "BACKSLASH_QUOTE": "\\'",
    "ENDS_IN_BACKSLASH": "tail\\",
    "NEWLINES": "line1\nline2\n\nline4",
    "TRAILING_NEWLINE": "x\n",
    "BANG": "!! !$ !-1 ^a^b !",
    "NON_ASCII": "é ü ß ñ 日本",
    "EMOJI": "🔑😀👍🏽",
    "RTL": "\u202eRTL\u202c שלום مرحبا",
    "EMPTY": "",
    "PERCENT": "100% %s %n %%",
    "STAR": "*",
    "GLOB": "[a-z]?* {a,b}",
    "TILDE": "~",
    "TILDE_USER": "~root/x",
    "DOLLAR_QUOTE": "'$'",
    "ANSI_C": "$'\\n'",
    "VARIABLES": "$HOME ${HOME} $0 $1 $@ $argv %PATH%",
    "TAB_CR_ESC": "a\tb\rc\x1b[31m\x7f",
    "LEADING_DASH": "-n",
    "EQUALS": "a=b==",
    "SPACES": "  spaced  out  ",
    "HASH": "# not a comment",
    "KEY_LIKE": "sk-CANARY-0123456789abcdef==",
}
HOSTILE_ONE_LINE = {name: value for name, value in HOSTILE.items() if "\n" not in value}
ORDINARY = {
    "OPENAI_BASE_URL": "https://metis.alcf.anl.gov/v1/",
    "OPENAI_API_KEY": "sk-0123456789abcdef",
    "SAMBANOVA_API_KEY": "sk-0123456789abcdef",
    "MODEL_NAME": "Llama-4-Maverick-17B-128E-Instruct",
    "METIS_ENV_ENDPOINT": "1",
    "PLAIN": "abc.DEF-123/x:y",
}


def encoded(env: dict) -> dict:
    return {name: value.encode("utf-8") for name, value in env.items()}


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
@pytest.mark.parametrize("shell", list(SHELLS))
def test_hostile_values_round_trip(shell, lang):
    values = HOSTILE_ONE_LINE if shell == "fish reading sh code" else HOSTILE  # check_portable refuses newlines
    code = render(SHELLS[shell][1], values)
    assert run_in_shell(shell, code, values, lang=lang) == (encoded(values), [])


@pytest.mark.parametrize("were_set", [True, False])  # unsetting what is not set succeeds too (status 0)
@pytest.mark.parametrize("shell", [s for s in SHELLS if s != "fish reading sh code"])  # fish has no unset: --shell fish
def test_unset_removes_the_variables(shell, were_set):
    inherited = {name: "old" for name in ORDINARY} if were_set else {}
    code = render_unset(SHELLS[shell][1], list(ORDINARY))
    assert run_in_shell(shell, code, ORDINARY, inherited=inherited) == ({name: None for name in ORDINARY}, [])


# `eval $(metis-env export 1)` unquoted: the newlines become spaces, so every statement ends with ';'.
@pytest.mark.parametrize("shell", ["bash", "bash --posix", "dash", "zsh"])
def test_unquoted_eval_of_ordinary_values(shell):
    renderer = SHELLS[shell][1]
    assert run_in_shell(shell, render(renderer, ORDINARY), ORDINARY, unquoted=True) == (encoded(ORDINARY), [])
    inherited = {name: "old" for name in ORDINARY}
    code = render_unset(renderer, list(ORDINARY))
    assert run_in_shell(shell, code, ORDINARY, unquoted=True, inherited=inherited) == (
        {name: None for name in ORDINARY}, [])


# Any text without NUL (which no environment can hold) and without lone surrogates (not encodable).
VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.mark.parametrize("shell", ["bash", "dash", "zsh", "fish"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(values=st.lists(VALUE, min_size=20, max_size=60))
def test_any_text_round_trips(shell, values):
    env = {f"VAR_{i}": value for i, value in enumerate(values)}
    assert run_in_shell(shell, render(SHELLS[shell][1], env), env) == (encoded(env), [])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(values=st.lists(VALUE.map(lambda v: v.replace("\n", "")), min_size=20, max_size=60))
def test_any_one_line_text_in_sh_code_round_trips_in_fish(values):
    env = {f"VAR_{i}": value for i, value in enumerate(values)}
    assert run_in_shell("fish reading sh code", render("sh", env), env) == (encoded(env), [])


# --- failure code: eval "$(cmd)" of a failing cmd must fail ---------------------------------------

# The producer prints the code file and exits 4, like a failing `metis-env export`.
POSIX_FAILING = """eval "$(sh -c 'cat "$1"; exit 4' sh "$1")" """
FISH_FAILING = """sh -c 'cat "$1"; exit 4' sh $argv[1] | source"""


@pytest.mark.parametrize("shell", list(SHELLS))
@pytest.mark.parametrize("printed, status", [("", 0), ("failure_code", 1)])
def test_failure_code_makes_eval_fail(shell, printed, status):
    """Printing nothing on failure leaves eval at status 0 (the trap); printing `false` makes it 1."""
    argv, renderer = SHELLS[shell]
    need(argv[0])
    code = failure_code(renderer) if printed == "failure_code" else printed
    with tempfile.TemporaryDirectory() as work:
        code_file = os.path.join(work, "code")
        with open(code_file, "w") as f:
            f.write(code)
        script, tail = (FISH_FAILING, [code_file]) if argv[0] == "fish" else (POSIX_FAILING, [shell, code_file])
        done = subprocess.run([*argv, script, *tail], env={"PATH": os.environ["PATH"], "HOME": work},
                              capture_output=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (status, b"", b"")


# --- dotenv and json, read back by their own parsers ----------------------------------------------

# What python-dotenv cannot read back from render_dotenv, and why: ${NAME} with interpolation on (the
# default) is expanded even inside single quotes, and there is no escape for "$"; with
# interpolate=False the value is read literally. (Before python-dotenv 1.2.4 a value ending in a
# backslash was lost too: the test extra requires 1.2.4.)
DOTENV_HOSTILE = dict(HOSTILE)


@pytest.mark.parametrize("interpolate", [False, True])
def test_dotenv_read_back_by_python_dotenv(interpolate):
    env = DOTENV_HOSTILE if not interpolate else {k: v for k, v in DOTENV_HOSTILE.items() if "${" not in v}
    got = dotenv_values(stream=io.StringIO(render("dotenv", env)), interpolate=interpolate)
    assert dict(got) == env


def test_dotenv_limits_of_python_dotenv():
    trailing = render("dotenv", {"A": "tail\\", "B": "next"})
    interpolated = render("dotenv", {"A": "${HOME}x"})
    assert trailing == "A='tail\\\\'\nB='next'\n"
    assert dict(dotenv_values(stream=io.StringIO(trailing), interpolate=False)) == {"A": "tail\\", "B": "next"}
    assert dict(dotenv_values(stream=io.StringIO(interpolated), interpolate=True)) == {"A": f"{os.environ['HOME']}x"}


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUE, min_size=1, max_size=5))
def test_dotenv_property(values):
    env = {f"VAR_{i}": value for i, value in enumerate(values)}
    assert dict(dotenv_values(stream=io.StringIO(render("dotenv", env)), interpolate=False)) == env


def test_json_read_back():
    assert (json.loads(render("json", HOSTILE)), json.loads(render_unset("json", ["A", "B"]))) == (
        HOSTILE, {"A": None, "B": None})


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUE, max_size=5))
def test_json_property(values):
    env = {f"VAR_{i}": value for i, value in enumerate(values)}
    assert json.loads(render("json", env)) == env
