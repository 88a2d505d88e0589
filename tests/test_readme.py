"""The README is part of the interface: its exit-code table and its test command are checked."""

from __future__ import annotations

import re

from metis_env.errors import EXIT_CODES
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_exit_code_table_lists_every_error_class():
    rows = re.findall(r"^\| (\d+) \| `?(\w*)`? \|", README, flags=re.M)
    documented = {int(code): name for code, name in rows if name}
    expected = {code: cls.__name__ for code, cls in EXIT_CODES.items() if code != 1}
    assert {c: n for c, n in documented.items() if c != 1} == expected


def test_ci_runs_the_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")][-1].strip()
    assert command == "python3 -m pytest -q"
    assert f"\n{command}\n" in README


def test_the_first_command_installs_what_the_demo_runs_and_development_says_how_to_get_pytest():
    """The demo ends with the seed example's answer only when openai is installed: the set-up command
    installs the `openai` extra; the Development section installs the test extra before pytest."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    setup = re.search(r"```console\n(python3 -m venv .*)\n```", README).group(1)
    development = README[README.index("## Development"):]
    assert (extras["openai"], "pip install '.[openai]' && metis-env demo" in setup,
            development.index("pip install -e '.[test]'") < development.index("python3 -m pytest -q")) == (["openai>=1"], True, True)
