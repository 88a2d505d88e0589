"""The targeted edits configure makes: one member or table changed, every other byte kept."""

from __future__ import annotations

import pytest

from metis_env.configure import formats, jsonc
from metis_env.errors import ToolConfigError


@pytest.mark.parametrize(
    "text, comments, line, message",
    [
        ('{"a": 1,}', False, 1, "a trailing comma before '}'"),
        ('{\n"a": 1\n"b": 2}', True, 3, "expected ',' or '}'"),
        ('{\n  /* open\n', True, 2, "a /* comment is never closed"),
        ('{"a": "tab\there"}', True, 1, "a string is not closed or holds an invalid escape or control character"),
        ('{"a": 1} x', True, 1, "unexpected text after the end of the document"),
        ("{'a': 1}", True, 1, "expected a quoted member name or '}'"),
        ("", True, 1, "the text ends where a value was expected"),
    ],
)
def test_jsonc_errors_name_the_line(text, comments, line, message):
    with pytest.raises(jsonc.JSONCError) as info:
        jsonc.parse(text, comments=comments)
    assert (info.value.line, info.value.message) == (line, message)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{}", '{\n  "k": 1\n}'),
        ('{"a": 1}', '{"a": 1,\n"k": 1}'),
        ('{\n    "a": 1, // one\n}\n', '{\n    "a": 1,\n    "k": 1, // one\n}\n'),
        ('{\n  "k": {"old": true},\n  "z": 2\n}\n', '{\n  "k": 1,\n  "z": 2\n}\n'),
    ],
)
def test_set_member_touches_only_its_member(text, expected):
    assert jsonc.set_member(text, jsonc.parse(text), "k", 1) == expected
    assert jsonc.parse(expected).to_python()["k"] == 1


def test_json_set_makes_the_missing_parents():
    text = '{\n  "theme": "dark"\n}\n'
    assert formats.json_set(text, ["provider", "p"], {"x": 1}, "t", "/f", comments=True, new_doc={}) == (
        '{\n  "theme": "dark",\n  "provider": {\n    "p": {\n      "x": 1\n    }\n  }\n}\n'
    )


def test_json_set_refuses_a_parent_that_is_not_an_object():
    with pytest.raises(ToolConfigError) as info:
        formats.json_set('{"provider": []}', ["provider", "p"], 1, "opencode", "/f.json", comments=True, new_doc={})
    assert str(info.value) == "opencode: /f.json: provider is not a JSON object; nothing was changed"


def test_toml_tables_replaced_where_they_were_and_appended_when_new():
    tables = [(("model_providers", "m"), {"name": "M", "n": 2, "args": ["a", "b"], "on": True})]
    old = '[model_providers.m]\nname = "old"\n\n[other]\nx = 1\n'
    new = formats.toml_replace_tables(old, [("model_providers", "m")], tables, "codex", "/c.toml")
    assert new == '[model_providers.m]\nname = "M"\nn = 2\nargs = ["a", "b"]\non = true\n\n[other]\nx = 1\n'
    assert formats.toml_replace_tables(new, [("model_providers", "m")], tables, "codex", "/c.toml") == new
    assert formats.toml_replace_tables("x = 1", [("model_providers", "m")], tables, "codex", "/c.toml") == (
        'x = 1\n\n[model_providers.m]\nname = "M"\nn = 2\nargs = ["a", "b"]\non = true\n'
    )


def test_toml_keys_that_need_quotes():
    assert (formats.toml_key("metis-1"), formats.toml_key("a.b"), formats.toml_value('say "hi"\n')) == (
        "metis-1", '"a.b"', '"say \\"hi\\"\\n"'
    )
