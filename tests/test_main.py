"""The hot path in main.py: the same answers as click, and none of the heavy imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from metis_env.main import parse_fast
from tests.conftest import REPO, metis

CLICK_PATH = "import sys; from metis_env.cli import run_cli; sys.exit(run_cli(sys.argv[1:]))"

# Runs `metis-env ARGS` and writes to $PROBE_OUT the heavy modules metis-env imported by the time it ended.
IMPORT_PROBE = """
import atexit, os, sys
HEAVY = ("click", "yaml", "keyring", "paramiko", "globus_sdk", "requests", "cryptography", "secretstorage", "jeepney", "dataclasses", "pathlib", "datetime", "threading", "contextlib")
# Run with -S: .pth files (a sandbox's certifi hook, setuptools' editable finder) import pathlib and
# more before any code of ours; site-packages is put on the path without running them.
import site
sys.path.extend(site.getsitepackages())
ALREADY = set(sys.modules)
def report():
    with open(os.environ["PROBE_OUT"], "w") as out:
        out.write(" ".join(sorted(m for m in HEAVY if m in sys.modules and m not in ALREADY)))
atexit.register(report)
from metis_env.main import entry
sys.argv[0] = "metis-env"
entry()
"""


def run_click(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CLICK_PATH, *args], capture_output=True, env=env, timeout=60)


@pytest.fixture
def two_endpoints(file_store, endpoint_files):
    assert metis("import", *map(str, endpoint_files)).returncode == 0


FORMS = [
    ("export", "1"),
    ("export", "2"),
    ("export", "metis_endpoint_2"),
    ("export", "DeepSeek-R1"),
    ("export", "2", "--model", "Llama-3.3-70B-Instruct"),
    ("export", "2", "-m", "Llama-3.3-70B-Instruct"),
    ("export", "2", "--model=Llama-3.3-70B-Instruct"),
    ("export", "1", "--shell", "bash"),
    ("export", "1", "--shell", "zsh"),
    ("export", "1", "--shell", "sh"),
    ("export", "1", "--shell", "fish"),
    ("export", "1", "--shell", "powershell"),
    ("export", "1", "--shell", "dotenv"),
    ("export", "1", "--shell", "json"),
    ("export", "1", "-s", "fish"),
    ("export", "1", "--shell=json"),
    ("export", "1", "--shell", "tcsh"),
    ("export", "--unset"),
    ("export", "1", "--unset", "--shell", "fish"),
    ("export",),  # several endpoints, no default
    ("export", "7"),  # unknown endpoint
    ("export", "DeepSeek-R2"),  # unknown, close to a model
    ("export", "2", "--model", "Llama-3.3-70B-Instruc"),  # unknown model, close match
    ("export", "1", "--model", "nothing-like-it"),
    ("get", "key", "1"),
    ("get", "url", "2"),
    ("get", "models", "2"),
    ("get", "url"),  # several endpoints, no default
    ("get", "key", "1", "--json"),
    ("get", "--json", "key", "2"),
    ("get", "url", "2", "--json"),  # --json is for key only
    ("run", "1", "--", sys.executable, "-c", "import os; print(os.environ['MODEL_NAME'], os.environ['OPENAI_BASE_URL'])"),
    ("run", "2", "-m", "Llama-3.3-70B-Instruct", "--", "sh", "-c", 'echo "$MODEL_NAME"; exit 3'),
    ("run", "-m", "Llama-3.3-70B-Instruct", "2", "--", "sh", "-c", 'echo "$MODEL_NAME"; exit 3'),
    ("run", "1", "--", "metis-env-no-such-command"),
    ("run", "--proxy", "2", "-m", "Llama-3.3-70B-Instruct", "--", "sh", "-c", 'echo "$MODEL_NAME $METIS_ENV_ENDPOINT"; exit 4'),
    ("run", "--proxy", "9", "--", "true"),
    ("run", "9", "--", "true"),
]


@pytest.mark.parametrize("argv", FORMS, ids=lambda argv: " ".join(argv))
def test_fast_path_and_click_give_the_same_answer(two_endpoints, argv):
    assert parse_fast(list(argv)) is not None, "the fast path should serve this form"
    fast, slow = metis(*argv), run_click(*argv)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)


REMOVALS = [
    # what export removes after setting endpoint 1 (the gateway's names and an alias only they feed)
    (("export", "1"), "test '\\\\' = \"\\\\\" || unset ALCF_AI_TOKEN METIS_ENV_TOKEN_EXPIRES OLD_EXPIRES;\n"),
    (("export", "1", "--shell", "bash"), "unset ALCF_AI_TOKEN;\nunset METIS_ENV_TOKEN_EXPIRES;\nunset OLD_EXPIRES;\n"),
    (("export", "1", "--shell", "fish"), "if set -q OLD_EXPIRES; set -e OLD_EXPIRES; end;\n"),
    (("export", "1", "--shell", "powershell"), "Remove-Item -ErrorAction SilentlyContinue Env:OLD_EXPIRES;\n"),
    (("export", "1", "--shell", "json"), "}\n"),
]


@pytest.mark.parametrize("argv, ending", REMOVALS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_fast_path_and_click_agree_on_what_an_export_removes(two_endpoints, argv, ending, monkeypatch):
    monkeypatch.setenv("METIS_ENV_ALIASES", "GROQ_API_KEY=OPENAI_API_KEY,OLD_EXPIRES=METIS_ENV_TOKEN_EXPIRES")
    assert parse_fast(list(argv)) is not None
    fast, slow = metis(*argv), run_click(*argv)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert (fast.returncode, fast.stdout.decode().endswith(ending)) == (0, True)


def test_the_table_covers_failures_too(two_endpoints):
    """The table above is not only happy paths: the comparisons include errors with suggestions."""
    result = metis("export", "2", "--model", "Llama-3.3-70B-Instruc")
    assert result.returncode == 3
    assert result.stdout == b"false\n"
    assert b"did you mean 'Llama-3.3-70B-Instruct'?" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("export", "--help"),
        ("export", "1", "2"),
        ("export", "--model"),
        ("export", "1", "--model", "a", "--model", "b"),
        ("export", "--", "1"),
        ("export", "1", "--min-ttl", "soon"),  # click words a bad duration
        ("get", "key", "--min-ttl", "0"),
        ("get",),
        ("get", "colour", "1"),
        ("run", "1"),
        ("run", "--", ),
        ("list",),
        ("--debug", "export", "1"),
        (),
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_forms_the_fast_path_hands_to_click(argv):
    assert parse_fast(list(argv)) is None


def imports_after(*args: str, env: dict | None = None) -> tuple[int, str]:
    """(exit code, the heavy modules imported) of `metis-env ARGS` run in a subprocess."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "imported")
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PROBE_OUT": out, **(env or {})}
        process = subprocess.run([sys.executable, "-S", "-c", IMPORT_PROBE, *args], env=full_env, capture_output=True, timeout=60)
        with open(out) as imported:
            return process.returncode, imported.read()


def test_file_store_export_imports_nothing_heavy(two_endpoints):
    assert imports_after("export", "1") == (0, "")
    assert imports_after("get", "key", "2") == (0, "")
    # a successful run replaces the process (no atexit): a command that cannot start shows the same imports
    assert imports_after("run", "1", "--", "metis-env-no-such-command") == (127, "")


def test_failing_export_imports_nothing_heavy(two_endpoints):
    assert imports_after("export", "9") == (3, "")


def test_click_path_does_import_click(two_endpoints):
    """The probe itself works: a command the fast path does not serve loads click."""
    code, imported = imports_after("list")
    assert (code, "click" in imported.split()) == (0, True)


# --- who may import what --------------------------------------------------------------------------

ALLOWED = {
    "paramiko": ("metis_env/sources/ssh/", "metis_env/testing/"),
    "globus_sdk": ("metis_env/sources/gateway/globus.py",),
    "click": ("metis_env/cli.py",),
    "keyring": ("metis_env/keystore.py", "metis_env/doctor.py"),
    "yaml": ("metis_env/files.py",),
    "jeepney": ("metis_env/secret_service.py",),
    "secretstorage": (),
    "cryptography": ("metis_env/testing/",),
}


def imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_each_outside_library_is_imported_in_one_place():
    offenders = []
    for path in sorted((REPO / "metis_env").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for library in imported_roots(path) & set(ALLOWED):
            if not relative.startswith(ALLOWED[library]) or not ALLOWED[library]:
                offenders.append(f"{relative} imports {library}")
    assert offenders == []


def relative_imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [alias.name for alias in node.names])
    return names


def test_cli_does_not_import_main():
    """main.py hands off to cli.py; what both need (error lines, global options) is in reporting.py."""
    assert ("main" in relative_imports(REPO / "metis_env" / "cli.py"), "reporting" in relative_imports(REPO / "metis_env" / "main.py")) == (False, True)


@pytest.mark.parametrize(
    "argv, stdout, code",
    [
        (("--store", "file", "export", "1", "--bogus"), "false\n", 2),
        (("export", "1", "--shell", "fish", "--bogus"), "false\n", 2),
        (("export", "1", "--shell=powershell", "--bogus"), "$global:LASTEXITCODE = 1; throw 'metis-env export failed';\n", 2),
    ],
)
def test_export_prints_its_shells_failure_code_when_click_rejects_the_line(two_endpoints, argv, stdout, code):
    proc = subprocess.run([sys.executable, "-m", "metis_env", *argv], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (proc.returncode, proc.stdout.decode()) == (code, stdout)
    assert proc.stderr.decode() == "metis-env: error: no such option '--bogus'; see metis-env export --help\n"


def test_debug_after_a_group_option_still_shows_the_traceback(two_endpoints):
    proc = subprocess.run([sys.executable, "-m", "metis_env", "--store", "file", "--debug", "export", "9"],
                          capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 3
    assert proc.stderr.decode().startswith("Traceback (most recent call last):\n")
    assert proc.stderr.decode().endswith("metis-env: error: no endpoint or model '9' is stored; stored endpoints: 1, 2\n")


# --- gateway endpoints: the same two paths, and nothing heavy while the token is fresh --------------

from tests._gateway import logged_in  # noqa: E402,F401  (fixture)
from tests._globus import globus, globus_env  # noqa: E402,F401  (fixtures)

GATEWAY_FORMS = [
    ("export", "metis"),
    ("export", "sophia", "--shell", "fish"),
    ("export", "metis", "--model", "gpt-oss-120b", "--shell", "json"),
    ("export", "gpt-oss-120b"),  # a model only metis serves
    ("export", "metis", "--model", "gpt-oss-12b"),  # close match
    ("get", "key", "metis"),
    ("get", "key", "metis", "--json"),
    ("get", "models", "sophia"),
    ("run", "metis", "--", sys.executable, "-c", "import os; print(os.environ['METIS_ENV_TOKEN_EXPIRES'][-1])"),
    ("export", "metis", "--min-ttl", "12h", "--shell", "json"),  # 48 h left: no refresh on either path
    ("get", "key", "metis", "--min-ttl=90m"),
    ("run", "--min-ttl", "1d", "metis", "--", sys.executable, "-c", "import os; print(os.environ['MODEL_NAME'])"),
]


@pytest.mark.parametrize("argv", GATEWAY_FORMS, ids=lambda argv: " ".join(argv))
def test_fast_path_and_click_agree_on_gateway_endpoints(logged_in, argv, monkeypatch):
    env, _globus = logged_in
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert parse_fast(list(argv)) is not None
    fast, slow = metis(*argv), run_click(*argv)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)


def test_a_fresh_gateway_token_imports_nothing_heavy(logged_in):
    env, _globus = logged_in
    assert imports_after("export", "metis", env=env) == (0, "")
    assert imports_after("get", "key", "sophia", env=env) == (0, "")


def test_a_refresh_is_where_globus_sdk_is_loaded(logged_in):
    """The probe can see globus_sdk: inside the margin the refresh imports it (and only then)."""
    import tempfile

    env, _globus = logged_in
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "imported")
        full_env = {**env, "PYTHONPATH": str(REPO), "PROBE_OUT": out, "METIS_ENV_TOKEN_REFRESH_MARGIN": "999999"}
        # without -S: globus-sdk may live where only site's .pth files put it (a venv)
        process = subprocess.run([sys.executable, "-c", IMPORT_PROBE, "export", "metis"], env=full_env, capture_output=True, timeout=60)
        with open(out) as imported:
            assert (process.returncode, "globus_sdk" in imported.read().split()) == (0, True)
