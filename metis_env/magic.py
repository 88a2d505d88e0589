"""The IPython/Jupyter ``%metis`` line magic: ``%load_ext metis_env``, then

    %metis 1                          # endpoint 1's variables into this kernel's os.environ
    %metis sophia --model NAME        # an endpoint and one of its models
    %metis --unset                    # remove them again

It says which endpoint, model and variable names it set, never a value, so the saved notebook holds no
key. A failure is the CLI's one line (``metis-env: error: ...``) as the cell's error, with no
traceback: the notebook's "Run all" stops there, and nothing that holds a key is printed.
"""

from __future__ import annotations

import os
import shlex
import sys

from . import actions, api
from .errors import MetisEnvError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"

def register(ipython: Any) -> None:
    ipython.register_magic_function(metis_magic, magic_kind="line", magic_name="metis")


def metis_magic(line: str) -> None:
    """%metis [ENDPOINT] [--model NAME] | %metis --unset: load the variables metis-env export sets."""
    try:
        endpoint, model, unset = parse_line(line)
        if unset:
            removed = unset_variables()
            print(f"metis-env: unset {', '.join(removed)}" if removed else "metis-env: nothing to unset")
            return
        before = set(os.environ)
        variables = api.load(endpoint, model)
    except MetisEnvError as exc:
        raise _one_line(exc) from None
    order = {name: index for index, name in enumerate(actions.EXPORTED_NAMES)}
    removed = sorted(before - set(os.environ), key=lambda name: (order.get(name, len(order)), name))
    print(
        f"metis-env: endpoint {variables['METIS_ENV_ENDPOINT']}, model {variables['MODEL_NAME']}: "
        f"set {', '.join(variables)}" + (f"; unset {', '.join(removed)}" if removed else "")
    )


def parse_line(line: str) -> tuple[str | None, str | None, bool]:
    """``'2 --model X'`` -> ``('2', 'X', False)``; ``'--unset'`` -> ``(None, None, True)``."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%metis: {exc}; {USAGE}") from None
    endpoint = model = None
    unset = False
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name in ("--model", "-m") and model is None:
            if not eq:
                if not words:
                    raise UsageError(f"%metis: {name} needs a model name; {USAGE}")
                value = words.pop(0)
            model = value
        elif word == "--unset":
            unset = True
        elif word.startswith("-") or endpoint is not None:
            raise UsageError(f"%metis: unexpected {word!r}; {USAGE}")
        else:
            endpoint = word
    return endpoint, model, unset


def unset_variables() -> list[str]:
    """Remove what ``export --unset`` removes (aliases included), and whatever ``%metis`` or
    ``metis_env.load()`` set in this kernel; returns the names removed."""
    return api.unload()


def _one_line(exc: MetisEnvError) -> MetisEnvError:
    """IPython shows what ``_render_traceback_`` returns instead of a traceback."""
    line = f"metis-env: error: {exc}"
    exc._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]
    sys.stderr.flush()
    return exc
