"""JSON and JSONC (comments, trailing commas) with the position of every value, for targeted edits.

``parse`` returns a tree of ``Node`` objects that know where each value starts and ends in the text;
``set_member`` replaces (or inserts) one member of an object and leaves every other byte as it was:
the user's comments, order, indentation and their own entries survive an edit untouched.
"""

from __future__ import annotations

import json
import re
from typing import Any

_WS = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')


class JSONCError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class Node:
    """A value: ``kind`` is object/array/string/number/literal; ``start``/``end`` its span;
    ``members`` (objects): list of ``(key, key_start, value_node, comma_end)``; ``items`` (arrays)."""

    __slots__ = ("kind", "start", "end", "value", "members", "items")

    def __init__(self, kind: str, start: int):
        self.kind, self.start, self.end = kind, start, start
        self.value: Any = None
        self.members: list = []
        self.items: list = []

    def member(self, key: str) -> Node | None:
        for name, _start, node, _comma in self.members:
            if name == key:
                return node
        return None

    def to_python(self) -> Any:
        if self.kind == "object":
            return {name: node.to_python() for name, _s, node, _c in self.members}
        if self.kind == "array":
            return [item.to_python() for item in self.items]
        return self.value


class _Parser:
    def __init__(self, text: str, comments: bool):
        self.text, self.comments, self.pos = text, comments, 0

    def line(self, pos: int | None = None) -> int:
        return self.text.count("\n", 0, self.pos if pos is None else pos) + 1

    def fail(self, message: str, pos: int | None = None):
        raise JSONCError(self.line(pos), message)

    def skip(self) -> None:
        text = self.text
        while True:
            self.pos = _WS.match(text, self.pos).end()
            if not self.comments or not text.startswith("/", self.pos):
                return
            if text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    self.fail("a /* comment is never closed")
                self.pos = end + 2
            else:
                return

    def value(self, depth: int = 0) -> Node:
        if depth > 200:
            self.fail("nested too deeply")
        self.skip()
        text, pos = self.text, self.pos
        if pos >= len(text):
            self.fail("the text ends where a value was expected")
        ch = text[pos]
        if ch == "{":
            return self.container(Node("object", pos), "}", depth)
        if ch == "[":
            return self.container(Node("array", pos), "]", depth)
        node = Node("string" if ch == '"' else "number", pos)
        if ch == '"':
            match = _STRING.match(text, pos)
            if not match:
                self.fail("a string is not closed or holds an invalid escape or control character")
            node.value = json.loads(match.group())
        else:
            for word, literal in (("true", True), ("false", False), ("null", None)):
                if text.startswith(word, pos):
                    node.kind, node.value = "literal", literal
                    self.pos = node.end = pos + len(word)
                    return node
            match = _NUMBER.match(text, pos)
            if not match:
                self.fail(f"unexpected {text[pos]!r}")
            node.value = json.loads(match.group())
        self.pos = node.end = match.end()
        return node

    def container(self, node: Node, close: str, depth: int) -> Node:
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith(close, self.pos):
                break
            if node.kind == "object":
                key_start = self.pos
                if not self.text.startswith('"', self.pos):
                    self.fail("expected a quoted member name or '}'")
                key = self.value(depth + 1).value
                self.skip()
                if not self.text.startswith(":", self.pos):
                    self.fail("expected ':' after a member name")
                self.pos += 1
                child = self.value(depth + 1)
                entry = [key, key_start, child, None]
                node.members.append(entry)
            else:
                child = self.value(depth + 1)
                node.items.append(child)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                if node.kind == "object":
                    entry[3] = self.pos
                self.skip()
                if self.text.startswith(close, self.pos):
                    if not self.comments:
                        self.fail(f"a trailing comma before {close!r}")
                    break
                continue
            if not self.text.startswith(close, self.pos):
                self.fail(f"expected ',' or {close!r}")
            break
        self.pos += 1
        node.end = self.pos
        return node


def parse(text: str, comments: bool = True) -> Node:
    """The tree of ``text``; raises JSONCError naming the line of the first error."""
    parser = _Parser(text, comments)
    if text.startswith("\ufeff"):
        parser.pos = 1
    root = parser.value()
    parser.skip()
    if parser.pos != len(text):
        parser.fail("unexpected text after the end of the document")
    return root


def indent_unit(text: str) -> str:
    """The file's indentation step (the first indented line's), else two spaces."""
    match = re.search(r"\n([ \t]+)\S", text)
    return match.group(1) if match else "  "


def line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    return re.match(r"[ \t]*", text[start:]).group()


def render(value: Any, indent: str, base: str, escape=None) -> str:
    """``value`` as JSON indented by ``indent`` per level, its continuation lines starting at ``base``;
    ``escape`` (if given) rewrites each string token (keys and values, quotes included)."""
    dumped = json.dumps(value, indent=indent, ensure_ascii=False)
    if escape is not None:
        dumped = _STRING.sub(lambda match: escape(match.group()), dumped)
    return dumped.replace("\n", "\n" + base)


def set_member(text: str, obj: Node, key: str, value: Any, escape=None) -> str:
    """``text`` with member ``key`` of object ``obj`` set to ``value``; all other text unchanged."""
    unit = indent_unit(text)
    render_key = lambda name: render(name, unit, "", escape)  # noqa: E731
    existing = next((m for m in obj.members if m[0] == key), None)
    if existing is not None:
        node = existing[2]
        base = line_indent(text, existing[1])
        return text[: node.start] + render(value, unit, base, escape) + text[node.end :]
    if obj.members:
        last_key_start, last, comma_end = obj.members[-1][1], obj.members[-1][2], obj.members[-1][3]
        base = line_indent(text, last_key_start)
        member = f'{render_key(key)}: {render(value, unit, base, escape)}'
        if comma_end is not None:  # JSONC's trailing comma: keep it, and give ours one too
            return text[:comma_end] + "\n" + base + member + "," + text[comma_end:]
        return text[: last.end] + ",\n" + base + member + text[last.end :]
    outer = line_indent(text, obj.start)
    base = outer + unit
    member = f'{render_key(key)}: {render(value, unit, base, escape)}'
    return text[: obj.start] + "{\n" + base + member + "\n" + outer + "}" + text[obj.end :]

