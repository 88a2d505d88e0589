"""Targeted edits of JSON/JSONC, TOML and YAML: change metis-env's own entries, keep every other byte.

Each edit is checked by parsing the result: the new document must equal the old one with only our
entries replaced. When a file is written in a form a targeted edit cannot handle (an inline TOML
table, a YAML flow list), that check fails and the edit is refused or, where the format has no
comments worth keeping, said out loud.

TOML: Python reads it with ``tomllib`` (3.11+) or its twin ``tomli`` (a small dependency on 3.9 and
3.10); nothing writes it. A TOML writer (tomli-w) would re-emit the whole file and drop the user's
comments and layout, while our part is a few whole tables that are cut out and appended as text.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import ToolConfigError
from ..files import YAMLParseError, parse_yaml
from . import jsonc
from .core import describe

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]


def _refuse(tool: str, path: str, line: int | None, what: str, detail: str) -> ToolConfigError:
    where = f"{describe(path)}:{line}" if line else describe(path)
    return ToolConfigError(f"{tool}: {where}: not valid {what} ({detail}); fix it or move it away; nothing was changed")


# --- JSON / JSONC -----------------------------------------------------------------------------------


def json_tree(text: str, tool: str, path: str, comments: bool) -> jsonc.Node:
    try:
        root = jsonc.parse(text, comments=comments)
    except jsonc.JSONCError as exc:
        raise _refuse(tool, path, exc.line, "JSONC" if comments else "JSON", exc.message) from None
    if root.kind != "object":
        raise ToolConfigError(f"{tool}: {describe(path)}: the top level is not a JSON object; nothing was changed")
    return root


def json_get(text: str | None, keys: list[str], tool: str, path: str, comments: bool) -> Any:
    if text is None or not text.strip():
        return None
    node = json_tree(text, tool, path, comments)
    for key in keys:
        node = node.member(key) if node.kind == "object" else None
        if node is None:
            return None
    return node.to_python()


def json_set(text: str | None, keys: list[str], value: Any, tool: str, path: str, comments: bool, new_doc: dict, escape=None) -> str:
    """``text`` with ``keys`` (a path of object members) set to ``value``; ``new_doc`` for a new file;
    ``escape`` rewrites each JSON string token metis-env writes (see jsonc.render)."""
    if text is None or not text.strip():
        doc = copy.deepcopy(new_doc)
        target = doc
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
        return jsonc.render(doc, "  ", "", escape) + "\n"
    root = json_tree(text, tool, path, comments)
    node, depth = root, 0
    for key in keys[:-1]:
        child = node.member(key)
        if child is None:
            break
        if child.kind != "object":
            raise ToolConfigError(f"{tool}: {describe(path)}: {'.'.join(keys[: depth + 1])} is not a JSON object; nothing was changed")
        node, depth = child, depth + 1
    rest = value
    for key in reversed(keys[depth + 1 :]):
        rest = {key: rest}
    new = jsonc.set_member(text, node, keys[depth], rest, escape)
    expected = root.to_python()
    target = expected
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    if json_tree(new, tool, path, comments).to_python() != expected:  # pragma: no cover - a bug guard
        raise ToolConfigError(f"{tool}: {describe(path)}: metis-env could not edit it safely; nothing was changed")
    return new


# --- TOML -------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^[ \t]*\[(\[?)([^\]\[]+)\]\]?[ \t]*(?:#.*)?$")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_load(text: str | None, tool: str, path: str) -> dict:
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise _refuse(tool, path, int(match.group(1)) if match else None, "TOML", detail) from None


def toml_string(value: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped (TOML allows none raw)."""
    return '"' + _TOML_ESCAPE.sub(lambda m: _TOML_SHORT.get(m.group(), f"\\u{ord(m.group()):04X}"), value) + '"'


_TOML_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')
_TOML_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def toml_key(name: str) -> str:
    return name if _BARE.match(name) else toml_string(name)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_tables(tables: list[tuple[tuple[str, ...], dict]]) -> str:
    """``[a.b]`` tables of scalars and lists, in the order given."""
    out = []
    for keys, body in tables:
        out.append("[" + ".".join(toml_key(k) for k in keys) + "]\n")
        out.extend(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in body.items())
        out.append("\n")
    return "".join(out)


def _header_keys(inner: str) -> tuple[str, ...]:
    parts = re.findall(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*(?:\.|$)', inner)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def toml_replace_tables(text: str | None, owned: list[tuple[str, ...]], tables: list[tuple[tuple[str, ...], dict]], tool: str, path: str) -> str:
    """``text`` with every table under one of the ``owned`` key prefixes replaced by ``tables``."""
    old = toml_load(text, tool, path)
    lines = (text or "").splitlines(keepends=True)
    kept, skipped, insert_at, skipping = [], [], None, False
    for line in lines + [None]:
        match = _HEADER.match(line) if line is not None else None
        if match or line is None:
            owns = line is not None and any(_header_keys(match.group(2))[: len(p)] == p for p in owned)
            if skipping and not owns:
                # comments just above the next table (or at the end) are the user's, not ours
                tail = len(skipped)
                while tail > 0 and (skipped[tail - 1].lstrip().startswith("#") or not skipped[tail - 1].strip()):
                    tail -= 1
                while tail < len(skipped) and not skipped[tail].strip():
                    tail += 1
                kept.extend(skipped[tail:])
                skipped = []
            skipping = owns
            if skipping and insert_at is None:
                insert_at = len(kept)
        if line is None:
            break
        (skipped if skipping else kept).append(line)
    block = toml_tables(tables).rstrip("\n") + "\n"
    if insert_at is None:
        if kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
        if kept and kept[-1].strip():
            kept.append("\n")
        insert_at = len(kept)
    elif insert_at < len(kept):
        block += "\n"
    new = "".join(kept[:insert_at]) + block + "".join(kept[insert_at:])
    expected = copy.deepcopy(old)
    for prefix in owned:
        parent = expected
        for key in prefix[:-1]:
            parent = parent.get(key, {}) if isinstance(parent, dict) else {}
        if isinstance(parent, dict):
            parent.pop(prefix[-1], None)
    for keys, body in tables:
        target = expected
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target.setdefault(keys[-1], {}).update(body)
    try:
        result = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        result = None
    if result != expected:
        names = ", ".join(".".join(p) for p in owned)
        raise ToolConfigError(
            f"{tool}: {describe(path)} defines {names} in a form metis-env does not edit (an inline table or "
            f"dotted keys); move those entries into [table] sections or remove them; nothing was changed"
        )
    return new


def toml_get(text: str | None, keys: tuple[str, ...], tool: str, path: str) -> Any:
    value: Any = toml_load(text, tool, path)
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


# --- YAML -------------------------------------------------------------------------------------------


def yaml_load(text: str | None, tool: str, path: str) -> Any:
    if text is None:
        return None
    try:
        return parse_yaml(text)
    except YAMLParseError as exc:
        raise _refuse(tool, path, exc.line, "YAML", exc.problem) from None


def begin_marker(tag: str) -> str:
    return f"# >>> metis-env {tag} (written by metis-env configure; edits here are replaced) >>>\n"


def end_marker(tag: str) -> str:
    return f"# <<< metis-env {tag} <<<\n"


def replace_block(text: str | None, tag: str, block: str) -> str:
    """``text`` with the lines between our markers for ``tag`` replaced by ``block`` (appended when absent)."""
    begin, end = begin_marker(tag), end_marker(tag)
    text = text or ""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin.rstrip("\n")]
    if starts:
        first = starts[0]
        last = next((i for i in range(first, len(lines)) if lines[i].rstrip("\n") == end.rstrip("\n")), None)
        if last is not None:
            return "".join(lines[:first]) + begin + block + end + "".join(lines[last + 1 :])
    if text and not text.endswith("\n"):
        text += "\n"
    return text + begin + block + end
