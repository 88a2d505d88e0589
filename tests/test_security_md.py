"""SECURITY.md holds itself to its word: every claim names a test, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECURITY_MD = REPO / "SECURITY.md"
REFERENCE = re.compile(r"`(tests/test_[A-Za-z0-9_]+\.py)::(test_[A-Za-z0-9_]+)`")


def claims(text: str) -> list[str]:
    """Each bullet of the document, its continuation lines joined."""
    items: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            items.append(line[2:])
        elif items and line.startswith("  ") and line.strip():
            items[-1] += " " + line.strip()
        elif not line.strip() or line.startswith("#"):
            if items and items[-1]:
                items.append("")
    return [item for item in items if item]


def defined_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_security_md_names_exists():
    references = REFERENCE.findall(SECURITY_MD.read_text(encoding="utf-8"))
    assert len(references) >= 40
    missing = [f"{file}::{name}" for file, name in references
               if not (REPO / file).exists() or name not in defined_functions(REPO / file)]
    assert missing == []


def test_every_claim_in_security_md_names_a_test():
    text = SECURITY_MD.read_text(encoding="utf-8")
    listed = claims(text)
    assert len(listed) >= 30
    assert [claim[:80] for claim in listed if not REFERENCE.search(claim)] == []


def test_the_checker_catches_a_renamed_test_and_a_claim_without_one():
    doc = "- held by `tests/test_security_md.py::test_no_such_test`.\n- a claim with no test\n"
    assert [c for c in claims(doc) if not REFERENCE.search(c)] == ["a claim with no test"]
    assert REFERENCE.findall(doc) == [("tests/test_security_md.py", "test_no_such_test")]
    assert "test_no_such_test" not in defined_functions(Path(__file__))
