"""The hot path in main.py: the same answers as click, and none of the heavy imports."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
import subprocess
import sys

import pytest

from metis_env.main import parse_fast
from tests.conftest import REPO, metis

CLICK_PATH = "import sys; from metis_env.cli import run_cli; sys.exit(run_cli(sys.argv[1:]))"

# Runs `metis-env ARGS` and writes to $PROBE_OUT the heavy modules metis-env imported by the time it ended.
IMPORT_PROBE = """
import atexit, os, sys
HEAVY = tuple(os.environ.get("PROBE_HEAVY", "").split()) or ("click", "yaml", "keyring", "paramiko", "globus_sdk", "requests", "cryptography", "secretstorage", "jeepney", "dataclasses", "pathlib", "datetime", "threading", "contextlib")
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
    ("get", "model", "2"),
    ("get", "url"),  # several endpoints, no default
    ("get", "key", "1", "--json"),
    ("get", "--json", "key", "2"),
    ("get", "url", "2", "--json"),  # --json is for key only
    ("get", "key", "1", "--proxy"),  # the broker's local key: the first starts it, the second joins it
    ("get", "--proxy", "url", "2"),
    ("get", "models", "2", "--proxy"),
    ("get", "key", "1", "--proxy-port", "1"),  # the broker is not there: no key
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


# What a clean start-up costs most after Python itself (issue 15 item 8): `re` (with enum and functools),
# json's decoder (which imports re) and collections. The common forms import none of them; an error, a
# suggestion or --shell json may.
STARTUP = {"PROBE_HEAVY": "re json collections enum functools typing"}


@pytest.mark.parametrize("argv", [("export", "1"), ("export", "2", "--shell", "fish"), ("get", "key", "2"), ("get", "url", "1")])
def test_the_common_forms_import_neither_re_nor_json_nor_collections(two_endpoints, argv):
    assert imports_after(*argv, env=STARTUP) == (0, "")


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
    "click": ("metis_env/cli.py", "metis_env/cli_options.py", "metis_env/cli_groups.py"),
    "keyring": ("metis_env/keystore.py", "metis_env/commands/doctor.py"),
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


# --- the direction: each layer imports only from its own layer or below ----------------------------

LAYERS = (  # top to bottom; a module is in the first layer that names it (a name ending in "." is a package)
    ("faces", ("__main__", "main", "cli", "cli_options", "cli_groups", "api", "magic", "llm_plugin", "actions", "")),
    ("commands", ("commands.", "proxy")),
    ("sources", ("sources.gateway.globus@primitives", "sources.", "broker.", "configure.", "testing.")),
    ("credentials", ("credentials", "selection")),
    ("store", ("store",)),
    ("settings", ("settings", "keystore", "status_cache")),
    ("primitives", ("endpoint", "render", "files", "http", "check", "records", "prompt", "reporting", "variables",
                    "supervise", "locks")),
    ("leaves", ("errors", "paths", "text", "findings", "alcf", "structs", "secret_service", "coredump",
                "reserved_variables", "noproxy")),
)
RANK = {name: rank for rank, (name, _members) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    """``metis_env.sources.ssh.login`` -> "sources"; a module no layer names fails the test."""
    name = module.removeprefix("metis_env").removeprefix(".")
    for layer, members in LAYERS:
        for member in members:
            member, _, moved = member.partition("@")
            if name == member or name == member.rstrip(".") or (member.endswith(".") and name.startswith(member)):
                return moved or layer
    raise AssertionError(f"{module} is in no layer of LAYERS: add it where it belongs")


def product_modules(testing: bool = False) -> dict[str, object]:
    modules = {}
    for path in sorted((REPO / "metis_env").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[1:2] == ("testing",) and not testing:
            continue
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_edges(module: str, path) -> list[tuple[str, int, list[str]]]:
    """(the metis_env module imported, line, the names taken from it) for every import in ``path``,
    at module level or inside a function, type-only ones included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            edges += [(alias.name, node.lineno, []) for alias in node.names if alias.name.split(".")[0] == "metis_env"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "metis_env":
                continue
            names = []
            for alias in node.names:  # `from . import x` or `from .pkg import x`: x may be a module of its own
                module_path = REPO / Path(*f"{target}.{alias.name}".split("."))
                if module_path.with_suffix(".py").exists() or module_path.is_dir():
                    edges.append((f"{target}.{alias.name}", node.lineno, []))
                else:
                    names.append(alias.name)
            if not names:
                continue
            edges.append((target, node.lineno, names))
    return edges


def test_every_package_is_shipped():
    """pyproject.toml lists the packages one by one: a new one missing there is missing from every wheel."""
    listed = set(re.findall(r'^  "(metis_env[a-z_.]*)",$', (REPO / "pyproject.toml").read_text(), re.M))
    packages = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "metis_env").rglob("__init__.py")}
    assert packages - listed == set()


def test_every_import_of_ours_names_a_module_that_exists():
    """A relative import left behind by a move fails only when that line runs: find it here."""
    modules = product_modules(testing=True)
    missing = [f"{module}:{line} imports {target}" for module, path in modules.items()
               for target, line, _names in import_edges(module, path) if target not in modules]
    assert missing == []


def test_each_module_imports_only_from_its_own_layer_or_below():
    """faces -> commands -> sources/configure/broker -> credentials/selection -> store -> settings/keystore ->
    primitives -> leaves (docs/development.md). So sources/ never imports commands/, and the hot path's
    modules cannot reach click through an import of their own."""
    upward = []
    for module, path in product_modules(testing=True).items():
        for target, line, _names in import_edges(module, path):
            if RANK[layer_of(target)] < RANK[layer_of(module)]:
                upward.append(f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert upward == []


def test_no_module_imports_another_modules_private_name():
    """A leading underscore means "this file only": a second user makes it public (with a docstring)."""
    private = []
    for module, path in product_modules(testing=True).items():
        for target, line, names in import_edges(module, path):
            private += [f"{module}:{line} imports {name} from {target}" for name in names
                        if name.startswith("_") and not name.startswith("__") and target != module]
    assert private == []


def test_no_import_circle_outside_testing():
    modules = product_modules()
    graph = {m: {t for t, _line, _names in import_edges(m, p) if t in modules and t != m} for m, p in modules.items()}
    circles = []
    for start in graph:  # a circle is a path back to where it started; the graph is small
        seen, stack = set(), [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(" -> ".join(trail + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert circles == []


def test_no_product_module_is_over_500_lines():
    long = {module: n for module, path in product_modules().items() if (n := len(path.read_text().splitlines())) > 500}
    assert long == {}


def test_only_credentials_branches_on_where_a_key_comes_from():
    """``source == "gateway"`` (or any comparison of a record's source with a name) is asked in one module."""
    def compares_source(node) -> bool:
        sides = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
        return any((isinstance(side, ast.Attribute) and side.attr == "source")
                   or (isinstance(side, ast.Subscript) and isinstance(side.slice, ast.Constant) and side.slice.value == "source")
                   or (isinstance(side, ast.Call) and isinstance(side.func, ast.Attribute) and side.func.attr == "get"
                       and side.args[:1] and isinstance(side.args[0], ast.Constant) and side.args[0].value == "source")
                   for side in sides) and any(isinstance(side, ast.Constant) and isinstance(side.value, str)
                                              or (isinstance(side, ast.Name) and side.id.isupper()) for side in sides)

    branching = sorted({module for module, path in product_modules().items()
                        for node in ast.walk(ast.parse(path.read_text())) if compares_source(node)})
    assert branching == ["metis_env.credentials"]


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
    assert imports_after("export", "metis", env={**env, **STARTUP}) == (0, "")


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
