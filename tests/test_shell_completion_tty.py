"""TAB completion typed for real: an interactive bash, zsh and fish on a pseudo-terminal, the hook
sourced, a word begun in every kind of quote, TAB, then Enter. What the shell then runs is what a
person would have run: the model name, byte for byte, as one argument, and nothing else."""

from __future__ import annotations

import os
import re

import pytest

from tests._shells import SHELL_DIR, endpoint_text, need, shell_env, write_metis_wrapper
from tests._tty import Terminal
from tests.conftest import metis

HOSTILE = {
    # the first two letters are what is typed before TAB; each completes to one name only
    "za": "za$(touch PWNED-a)",
    "zb": "zb`touch PWNED-b`",
    "zc": "zc'$(touch PWNED-c)'x",
    "zd": 'zd"$(touch PWNED-d)"x',
    "ze": 'ze\\"$(touch PWNED-e)',
    "zf": "zf!!$(touch PWNED-f)",
    "zg": "zg;touch PWNED-g;x",
    "zh": "zh $(touch PWNED-h) *",
    "zi": "zi:colon\\back",
}
SAFE = {"yy": "yy-safe.1"}
MODELS = {**HOSTILE, **SAFE}
DOLLAR = "$zj$(touch PWNED-j)"
"""What click offers for a word typed as $'zj (it reads that word as $zj)."""

SHELLS = {
    "bash": (["bash", "--norc", "--noprofile", "-i"],
             "PS1='READY> '; PS2='CONTINUE> '; HISTFILE=/dev/null; source '{hook}'; "
             "show() {{ printf '%s\\0' \"$@\" > \"$OUT\"; echo END; }}\r"),
    "zsh": (["zsh", "-f", "-i"],
            "PS1='READY> '; PS2='CONTINUE> '; bindkey -e; autoload -Uz compinit && compinit -u -D; source '{hook}'; "
            "show() {{ printf '%s\\0' \"$@\" > \"$OUT\"; echo END; }}\r"),
    "fish": (["fish", "--no-config", "-i"],
             "function fish_prompt; printf 'READY> '; end; source '{hook}'; "
             "function show; printf '%s\\0' $argv > $OUT; echo END; end\r"),
}
HOOK_FILES = {"bash": "metis-env.bash", "zsh": "metis-env.zsh", "fish": "metis-env.fish"}


def store_with_models(tmp_path, models: list[str]) -> tuple[dict, object]:
    """Endpoint 1 serving models, stored in the file store; a metis-env on PATH -> (env, work dir)."""
    folder = tmp_path / "endpoint-files"
    folder.mkdir()
    (folder / "metis_endpoint_1.txt").write_text(endpoint_text("sk-one", models=",".join(models)))
    metis("import", str(folder / "metis_endpoint_1.txt"), check=True)
    bin_dir = tmp_path / "bin"
    write_metis_wrapper(bin_dir)
    work = tmp_path / "work"
    work.mkdir()
    return shell_env(bin_dir, TERM="dumb", HOME=str(tmp_path / "home"), OUT=str(tmp_path / "args")), work


@pytest.fixture
def hostile_store(tmp_path, file_store):
    return store_with_models(tmp_path, [*MODELS.values(), DOLLAR])


def complete_and_run(shell: str, env: dict, work, line: str, typed: list[str], close: str = "") -> dict[str, str]:
    """For each prefix: type ``line + prefix``, TAB, then run the line as ``show ...`` (which writes
    its arguments to $OUT); -> prefix: the last argument the shell ran the line with."""
    argv, setup = SHELLS[shell]
    need(argv[0])
    ran = {}
    with Terminal(argv, env, work) as terminal:
        terminal.type(setup.format(hook=SHELL_DIR / HOOK_FILES[shell]).encode())
        terminal.type(b"echo SET''UP\r")  # its echo is not what it prints
        terminal.expect(b"SETUP\r\n")
        for prefix in typed:
            terminal.type(f"{line}{prefix}\t".encode() + b"\x01show \r")
            shown, _ = terminal.expect_any(b"END\r\n", b"CONTINUE> ")
            if shown == b"CONTINUE> " and close:  # the shell waits for the rest of an open quote: give it
                terminal.type(close.encode())
                shown, _ = terminal.expect_any(b"END\r\n")
            if shown == b"END\r\n":
                ran[prefix] = open(env["OUT"], "rb").read().decode().split("\0")[-2]
            else:  # a quote left open: what a person would see
                ran[prefix] = "(a quote left open)"
                terminal.type(b"\x03")
                terminal.expect(b"READY> ")
                terminal.type(b"echo SET''UP\r")
                terminal.expect(b"SETUP\r\n")
    return ran


BASH_LINES = ["metis-env get url ", "metis-use 1 --model ", "metis-env export 1 --model "]


@pytest.mark.parametrize("line", BASH_LINES)
@pytest.mark.parametrize("quote", ['"', "'", ""], ids=["double", "single", "bare"])
def test_bash_types_every_name_as_text_whatever_quote_the_word_began_with(hostile_store, line, quote):
    env, work = hostile_store
    ran = complete_and_run("bash", env, work, line + quote, list(MODELS))
    assert (ran, sorted(os.listdir(work))) == (MODELS, [])


def test_bash_offers_only_plain_names_where_readline_and_the_shell_read_quotes_differently(hostile_store):
    # In $'...' readline takes \' as the end of the quote and the shell does not: no quoting is sure
    # to hold there, so a name that needs quoting is not offered (the word is then closed by hand).
    env, work = hostile_store
    ran = complete_and_run("bash", env, work, "metis-env get url $'", ["zj"], close="'\r")
    assert (ran, sorted(os.listdir(work))) == ({"zj": "zj\n"}, [])


@pytest.mark.parametrize("shell", ["zsh", "fish"])
@pytest.mark.parametrize("quote", ['"', "'", ""], ids=["double", "single", "bare"])
def test_zsh_and_fish_type_every_name_as_text(hostile_store, shell, quote):
    env, work = hostile_store
    ran = complete_and_run(shell, env, work, "metis-use 1 --model " + quote, list(MODELS))
    assert (ran, sorted(os.listdir(work))) == (MODELS, [])


BREAKING = {
    # typed before TAB, bare (typed_in writes it for the other quotes) -> the one name it completes
    # to. bash splits words at the characters of COMP_WORDBREAKS (: = @ among them), readline then
    # replaces only the part after the last one, and click reads "\$" as two characters: each name
    # must still come out whole, and run nothing.
    "meta-llama/Llama-3:7": "meta-llama/Llama-3:70b",
    "zk:": "zk:$(touch PWNED-k)",
    "zl=a:": "zl=a:b=c",
    "zm@h": "zm@host:1",
    "zn\\ s": "zn sp:ace",
    "zo:x\\\\": "zo:x\\y",
    "zu\\$": "zu$v:1",
    "\\~zw": "~zw",
    "\\#zx": "#zx:1",
}


@pytest.fixture
def breaking_store(tmp_path, file_store):
    return store_with_models(tmp_path, list(BREAKING.values()))


def typed_in(quote: str, prefix: str) -> str:
    """The prefix (as typed bare) as a person types it after the quote: in '...' with no
    backslash, in "..." with one only before $ ` " and backslash."""
    value = re.sub(r"\\(.)", r"\1", prefix)
    if quote == "'":
        return value
    if quote == '"':
        return re.sub(r'([$`"\\])', r"\\\1", value)
    return prefix


@pytest.mark.parametrize("shell, line", [("bash", "metis-env get url "), ("bash", "metis-use 1 --model "),
                                         ("bash", "metis-env export 1 --model="), ("zsh", "metis-use 1 --model "),
                                         ("fish", "metis-use 1 --model ")])
@pytest.mark.parametrize("quote", ['"', "'", ""], ids=["double", "single", "bare"])
def test_names_with_word_breaking_characters_complete_to_themselves(breaking_store, shell, line, quote):
    env, work = breaking_store
    typed = {typed_in(quote, prefix): prefix for prefix in BREAKING}
    ran = complete_and_run(shell, env, work, line + quote, list(typed))
    assert ({typed[t]: name.removeprefix("--model=") for t, name in ran.items()}, sorted(os.listdir(work))) == (BREAKING, [])


LIST = {
    # how a person asks each shell for the candidates at the end of the line
    "bash": b"\t\t",  # TAB TAB lists them
    "zsh": b"\x04",  # ^D (list-choices)
}


def listed_options(shell: str, env: dict, work, line: str) -> list[str]:
    argv, setup = SHELLS[shell]
    need(argv[0])
    with Terminal(argv, env, work) as terminal:
        terminal.type(setup.format(hook=SHELL_DIR / HOOK_FILES[shell]).encode())
        terminal.type(b"echo SET''UP\r")
        terminal.expect(b"SETUP\r\n")
        if shell == "fish":  # fish's pager draws nothing on a dumb terminal: ask fish's completer itself
            terminal.type(f"complete -C '{line}' | string replace -r '^' 'OFFERED '; echo LIST''ED\r".encode())
            shown = terminal.expect(b"LISTED\r\n").decode()
        else:  # the listing, then the prompt drawn again under it (keys typed sooner may be dropped)
            # The prompt first: the line editor reads keys from then on. Before it the terminal is still
            # in cooked mode, where zsh's ^D is the terminal's end-of-file and never reaches zsh (seen
            # on a loaded CI run: the line echoed, then a new prompt, and no listing).
            terminal.expect(b"READY> ")
            terminal.type(line.encode() + LIST[shell])
            shown = (b"READY> " + terminal.expect(b"--help") + b"--help" + terminal.expect(b"READY> ")).decode()
            terminal.type(b"\x15")
    options = set()
    for row in shown.replace("\r", "\n").split("\n"):
        if shell == "fish":
            names = row.split("\t")[0].removeprefix("OFFERED ") if row.startswith("OFFERED ") else ""
        else:  # bash: names in columns; zsh: names, then " -- " and their help
            names = "" if "READY>" in row else row.split(" -- ")[0]
        options.update(name for name in names.split() if name.startswith("-"))
    return sorted(options)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_metis_use_offers_only_the_options_it_takes(breaking_store, shell):
    # export's --shell, --output and --unset are refused by metis-use: offering them is a trap
    env, work = breaking_store
    offered = {line: listed_options(shell, env, work, line) for line in ("metis-env export 1 -", "metis-use 1 -")}
    assert offered == {
        "metis-env export 1 -": ["--help", "--min-ttl", "--model", "--output", "--shell", "--unset", "-h", "-m", "-o", "-s"],
        "metis-use 1 -": ["--help", "--min-ttl", "--model", "-h", "-m"],
    }


@pytest.mark.parametrize("shell", ["bash", "fish"])  # zsh completes no word with a quote opened inside it
def test_a_quote_opened_inside_the_word_completes_the_whole_name(breaking_store, shell):
    # readline replaces only what follows the open quote: the part before it must not come twice
    env, work = breaking_store
    typed = {"meta-llama/'Llama-3:7": "meta-llama/Llama-3:70b", 'zk":': "zk:$(touch PWNED-k)", "zn' s": "zn sp:ace"}
    ran = complete_and_run(shell, env, work, "metis-use 1 --model ", list(typed))
    assert (ran, sorted(os.listdir(work))) == (typed, [])
