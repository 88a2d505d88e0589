"""aider (Aider-AI/aider): ``model: openai/<model>`` in ``~/.aider.conf.yml``.

aider reads ``.aider.conf.yml`` from the home directory, then the git root, then the current
directory (a later one wins; ``--config FILE`` replaces the search). It cannot run a command for its
key; it reads ``$OPENAI_API_KEY`` and the base URL from ``$OPENAI_API_BASE``/``$OPENAI_BASE_URL``,
which ``metis-env run`` (and ``export``) set together: ``metis-env run 1 -- aider``. The base URL is
not written, so that under ``run --proxy`` (or the broker) the proxy's local key goes to the proxy,
never to the endpoint. Our key sits between marker comments at the end; a ``model:`` or
``openai-api-base:`` line of the user's elsewhere is commented out (not deleted), as YAML allows a
key once and a base URL of the user's would part the key from its endpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ..errors import ToolConfigError
from ..files import dump_yaml
from . import formats
from .core import Entry, describe, home

NAME = "aider"
THROUGH_BROKER = True  # nothing in the file changes: run --proxy gives the broker's URL and key together
MANAGED = ("model", "openai-api-base")
_MANAGED_LINE = re.compile(r"^(model|openai-api-base)[ \t]*:")
DISABLED = "  # disabled by metis-env configure (see the metis-env block below)"


def config_path(environ: Mapping[str, str]) -> str:
    return os.path.join(home(environ), ".aider.conf.yml")


def settings_for(entry: Entry) -> dict:
    return {"model": f"openai/{entry.model}"}


def _load_mapping(text: str | None, path: str) -> dict:
    data = formats.yaml_load(text, NAME, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ToolConfigError(f"{NAME}: {describe(path)}: the top level is not a YAML mapping; nothing was changed")
    return data


def apply(text: str | None, entry: Entry, path: str) -> str:
    old = _load_mapping(text, path)
    begin, end = formats.begin_marker(entry.provider).rstrip("\n"), formats.end_marker(entry.provider).rstrip("\n")
    lines, inside = [], False
    for line in (text or "").splitlines(keepends=True):
        bare = line.rstrip("\n")
        inside = inside or bare == begin
        if not inside and _MANAGED_LINE.match(line):
            line = "# " + bare + DISABLED + "\n"
        inside = inside and bare != end
        lines.append(line)
    ours = settings_for(entry)
    # other endpoints' blocks set the same keys: only one block may stand
    body = "".join(lines)
    for other in re.findall(r"^# >>> metis-env (\S+) ", body, flags=re.M):
        if other != entry.provider:
            body = _drop_block(body, other)
    new = formats.replace_block(body, entry.provider, dump_yaml(ours))
    expected = {k: v for k, v in old.items() if k not in MANAGED}
    expected.update(ours)
    try:
        parsed = _load_mapping(new, path)
    except ToolConfigError:
        parsed = None
    if parsed != expected:
        raise ToolConfigError(
            f"{NAME}: {describe(path)} sets {' or '.join(MANAGED)} in a form metis-env does not edit (a value over "
            f"several lines); put each on one line or remove it; nothing was changed"
        )
    return new


def _drop_block(text: str, tag: str) -> str:
    begin, end = formats.begin_marker(tag), formats.end_marker(tag)
    start = text.find(begin)
    stop = text.find(end, start)
    return text if start < 0 or stop < 0 else text[:start] + text[stop + len(end):]


def section(text: str | None, entry: Entry, path: str):
    data = _load_mapping(text, path)
    found = {k: data[k] for k in MANAGED if k in data}
    return found or None


def usage(entry: Entry) -> str:
    return f"metis-env run{' --proxy' if entry.via_broker else ''} {entry.endpoint} -- aider"
