"""files.py's hand-made readers against what they replace on the hot path: ``loads_json`` against
``json.loads``, and the flat ``key: value`` reader against the regular expressions it was written from
(both cost every shell start-up ``re``, ``enum`` and ``json``: several ms)."""

from __future__ import annotations

import json
import math
import re

from hypothesis import given, settings, strategies as st

from metis_env.files import load_structured, loads_json, parse_flat_yaml, read_owned_bytes

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def outcome(parse, text):
    try:
        return ("value", json.dumps(parse(text), sort_keys=True))
    except ValueError:
        return ("ValueError", None)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.sampled_from(["", " ", "\n", "\t\r\n "]), st.sampled_from(["", " ", "\n", " x", "]", "{}"]))
def test_loads_json_reads_what_json_loads_reads(value, before, after):
    text = before + json.dumps(value, ensure_ascii=bool(len(before) % 2)) + after
    assert outcome(loads_json, text) == outcome(json.loads, text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789.eE+-tfnruaslNIy \t\n\\', max_size=30))
def test_loads_json_refuses_what_json_loads_refuses(text):
    assert outcome(loads_json, text) == outcome(json.loads, text)


def test_loads_json_refuses_a_damaged_file_where_json_was_never_imported():
    """The C scanner raises its errors through json.decoder, which the hot path does not import."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("from metis_env.files import loads_json\n"
            "for text in ('{not json', '[1,', '{\"a\": tru}', '\"\\\\x\"'):\n"
            "    try:\n        loads_json(text)\n    except ValueError:\n        print('ValueError')\n")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ValueError\n" * 4, "")


def test_loads_json_reads_json_constants_as_json_does():
    assert [math.isnan(loads_json("NaN")), loads_json("Infinity"), loads_json("[-Infinity]")] == [True, math.inf, [-math.inf]]


# The reader as it was written with regular expressions: the reference the hand-made matcher must equal.
_FLAT_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):[ \t]*(.*?)[ \t]*\Z")
_PLAIN_WORD = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@~-]*(?:[:][A-Za-z0-9_./@~-]+)*\Z")
_YAML_SPECIAL = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def reference_flat_yaml(text):
    result = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _FLAT_LINE.match(line)
        if not match or match.group(1) in result:
            return None
        raw = match.group(2)
        if raw.startswith(("'", "#", "&", "*", "!", "|", ">", "%", "@", "`", "[", "{")):
            return None
        if "#" in raw and not raw.startswith('"'):
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            if not _PLAIN_WORD.match(raw) or raw.lower() in _YAML_SPECIAL or raw.startswith("~"):
                return None
            value = raw
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            return None
        if isinstance(value, (dict, list)) or (isinstance(value, str) and raw.startswith('"') and "\\" in raw):
            return None
        result[match.group(1)] = value
    return result


LINE_PARTS = st.text(alphabet="abAB_09:/.@~- \t\"'#x1é", max_size=12)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(LINE_PARTS, st.sampled_from([":", ": ", ":\t", " : ", ""]), LINE_PARTS), max_size=4))
def test_the_flat_reader_reads_what_its_regular_expressions_read(lines):
    text = "\n".join(f"{key}{colon}{value}" for key, colon, value in lines)
    assert parse_flat_yaml(text) == reference_flat_yaml(text)


def test_the_flat_reader_on_a_config_file_people_write():
    text = 'user: alice\nhost: sambanova.alcf.anl.gov\nport: 2222\ndefault_endpoint: "1"\nstale_after_days: 14.5\n'
    assert (parse_flat_yaml(text), load_structured(text, "config.yaml")) == (
        {"user": "alice", "host": "sambanova.alcf.anl.gov", "port": 2222, "default_endpoint": "1", "stale_after_days": 14.5},
    ) * 2


def test_the_one_reader_refuses_a_fifo_at_once(tmp_path):
    import os

    import pytest

    from metis_env.errors import StoreError

    fifo = tmp_path / "tokens.json"
    os.mkfifo(fifo)
    with pytest.raises(StoreError) as caught:  # a blocking open would wait here for a writer, for ever
        read_owned_bytes(fifo)
    assert str(caught.value) == f"{fifo} is not a regular file; move it away"
