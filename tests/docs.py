"""The documentation as the tests read it: README.md for newcomers, one page per subject under docs/."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"


def page(name: str) -> str:
    """The text of docs/NAME.md (``page("batch-jobs")``)."""
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


def pages() -> list[Path]:
    """README.md, SECURITY.md and every page under docs/: the files whose links must resolve."""
    return [README, REPO / "SECURITY.md", *sorted(DOCS.glob("*.md"))]


def headings(path: Path) -> list[str]:
    """The Markdown headings of a file, `## ` marks included, outside code fences."""
    fenced, found = False, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.append(line)
    return found


def anchors(path: Path) -> set[str]:
    """The #anchors GitHub makes of a file's headings: lower case, each character that is not a letter,
    digit, space, - or _ dropped, spaces made -, a repeated one suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    for heading in headings(path):
        slug = re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def local_links(path: Path) -> list[str]:
    """Each [text](target) of a file that is not a URL, outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
