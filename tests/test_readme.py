"""The README and docs/ are part of the interface: the exit-code table, the test command, the words
status and sync print, and every local link are checked against the code."""

from __future__ import annotations

import re

from metis_env.errors import EXIT_CODES
from tests.conftest import REPO
from tests.docs import DOCS, anchors, headings, local_links, page, pages

README = (REPO / "README.md").read_text()


def test_the_exit_code_table_lists_every_error_class():
    rows = re.findall(r"^\| (\d+) \| `?(\w*)`? \|", page("exit-codes"), flags=re.M)
    documented = {int(code): name for code, name in rows if name}
    expected = {code: cls.__name__ for code, cls in EXIT_CODES.items() if code != 1}
    assert {c: n for c, n in documented.items() if c != 1} == expected


def test_ci_runs_the_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")][-1].strip()
    assert command == "python3 -m pytest -q"
    setup = README[README.index("## Set-up"):README.index("## Use")]
    said = ("\nbash .ci/run\n" in setup, f"`{command}`" in setup, "What it installs, and roughly what it costs" in setup,
            f"\n{command}\n" in page("development"))
    assert said == (True, True, True, True)


def test_the_first_command_installs_what_the_demo_runs_and_development_says_how_to_get_pytest():
    """The demo ends with the seed example's answer only when openai is installed: the set-up command
    installs the `openai` extra; the Development section installs the test extra before pytest."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    setup = re.search(r"```console\n(python3 -m venv .*)\n```", README).group(1)
    development = page("development")
    assert (extras["openai"], "pip install '.[openai]' && metis-env demo" in setup,
            development.index("pip install -e '.[test]'") < development.index("python3 -m pytest -q")) == (["openai>=1"], True, True)


def test_every_word_status_can_print_for_an_endpoint_it_could_not_ask_is_documented():
    from metis_env import check

    words = {v for k, v in vars(check).items() if k.isupper() and isinstance(v, str) and v.islower() and " " not in v
             and "/" not in v and "-" not in v and v not in (check.OK, check.NOT_LIVE, check.MAINTENANCE) and len(v) > 2}
    assert sorted(w for w in words if f"`unknown ({w})`" not in page("check-and-status")) == []


def test_every_change_word_sync_and_import_print_is_documented_with_its_dry_run_form():
    from metis_env.commands.endpoints import describe_changes
    from metis_env.records import Change

    words = ["new", "unchanged", "key rotated", "models changed", "updated", "removed"]
    said = [line.split(": ", 1)[1] for dry in (False, True) for line in describe_changes([Change("1", w) for w in words], dry)]
    assert [w for w in said if f"`{w}`" not in page("sync")] == []


def test_every_local_link_and_anchor_in_the_readme_security_md_and_docs_resolves():
    """A link into docs/ (or from a page to another, or to a #heading) that points nowhere is a dead end
    for the newcomer the README now sends there."""
    broken = []
    for path in pages():
        for target in local_links(path):
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.is_file() or (anchor and anchor not in anchors(resolved)):
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert broken == []


def test_the_readme_links_every_docs_page_and_each_page_has_one_title():
    linked = set(re.findall(r"\]\(docs/([\w-]+)\.md\)", README))
    titles = {p.stem: [h for h in headings(p) if h.startswith("# ")] for p in DOCS.glob("*.md")}
    assert (sorted(linked), [name for name, t in titles.items() if len(t) != 1]) == (sorted(titles), [])
