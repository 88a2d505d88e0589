"""A shim for code written against the old module (other branches in flight): ``actions.py`` was split
into ``commands/export.py`` (export, get, run), ``commands/endpoints.py`` (import, list),
``selection.py``, ``credentials.py``, ``variables.py`` and ``text.py``. Nothing in metis_env imports it;
it goes once those branches are merged."""

from .commands.endpoints import describe_changes, format_list, import_files, list_rows, read_endpoint_source  # noqa: F401
from .commands.export import GET_FIELDS, export_code, get_value  # noqa: F401
from .commands.export import exec_with_key as run_command  # noqa: F401
from .commands.export import export as export_command  # noqa: F401
from .commands.export import get as get_command  # noqa: F401
from .commands.export import run as run_subcommand  # noqa: F401
from .credentials import current_key, environment_for, select, select_with_key  # noqa: F401
from .records import natural_key  # noqa: F401
from .selection import Selection  # noqa: F401
from .text import format_age, warn  # noqa: F401
from .variables import EXPORTED_NAMES, parse_aliases  # noqa: F401
from .commands.export import get_key  # noqa: F401
from .credentials import choose_endpoint, pick_model  # noqa: F401,F811  (a gateway endpoint's names in any case)
from .variables import every_exported_name as _every_exported_name

import os  # noqa: F401,E402  (tests patch actions.os.execvpe)


def choose_model(endpoint, model, settings) -> str:  # type: ignore[no-untyped-def]
    """``credentials.pick_model``'s model (a gateway endpoint's names in any case)."""
    return pick_model(endpoint, model, settings)[0]


def every_exported_name(settings) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """``variables.every_exported_name`` of ``settings.aliases`` (the old signature)."""
    return _every_exported_name(settings.aliases)
