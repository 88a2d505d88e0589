"""Private files: a 0700 directory, 0600 files written atomically, refused when unsafe: the one "ours
only" reader (``read_owned_bytes``) and the one atomic writer (``replace_file``).

Also the one place that reads YAML: our own files are written in YAML's JSON subset, so that the hot
path reads them with ``json``; a file a person rewrote in full YAML still loads, through pyyaml.
"""

from __future__ import annotations

import os
import stat

from .errors import StoreError

# typing costs ~3 ms of every shell start-up; the annotations are strings (PEP 563), so only
# type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_private_dir(directory: str | os.PathLike) -> str | os.PathLike:
    """Create ``directory`` 0700 whatever the umask; refuse a symlink or a directory owned by another user."""
    try:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise StoreError(f"cannot create the config directory {directory}: {exc.strerror}") from exc
    check_private_dir(directory, info)
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        try:
            os.chmod(directory, DIR_MODE)
        except OSError as exc:
            raise StoreError(f"cannot make {directory} private (chmod 700): {exc.strerror}") from exc
    return directory


def check_private_dir(directory: str | os.PathLike, info: os.stat_result | None = None, *, tighten: bool = True) -> None:
    """Refuse a symlink, a non-directory or another user's directory; with ``tighten``, make one that
    others can write to private (0700), readers included: in a 0777 directory anyone can swap or plant
    files beside ours. ``tighten=False``: doctor, which changes nothing and reports it instead, and a
    directory of another tool's (alcf-tokens'), which we only read."""
    info = info or os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(f"{directory} is a symbolic link; refusing to keep credentials there (remove the link)")
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{directory} is not a directory; move it away or set METIS_ENV_CONFIG_DIR")
    if info.st_uid != os.geteuid():
        raise StoreError(f"{directory} belongs to another user (uid {info.st_uid}); refusing to use it")
    if stat.S_IMODE(info.st_mode) & 0o022 and tighten:
        try:
            os.chmod(directory, DIR_MODE)
        except OSError as exc:
            raise StoreError(f"{directory} is writable by other users and cannot be made private: {exc.strerror}; run: chmod 700 {directory}") from None


def read_owned_bytes(path: str | os.PathLike, *, secret: bool = False, limit: int = -1) -> bytes | None:
    """The one "ours only" reader: the bytes of ``path`` (at most ``limit``), or None if it does not exist.

    Opened without following a symlink and non-blocking (a FIFO or a device planted under the name
    must not hang the command in ``open()``); refused unless it is a regular file owned by this user,
    and with ``secret``, unless no one else may read it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise StoreError(f"{path} is a symbolic link; refusing to read it (remove the link)") from None
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid():
            raise StoreError(f"{path} belongs to another user (uid {info.st_uid}); refusing to read it")
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is not a regular file; move it away")
        if secret and stat.S_IMODE(info.st_mode) & 0o077:
            raise StoreError(
                f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run: chmod 600 {path}"
            )
        return handle.read(limit)


def read_private_text(path: str | os.PathLike, *, secret: bool = False, tighten: bool = True,
                      max_bytes: int | None = None) -> str | None:
    """Read one of our files (or, with ``tighten=False``, another tool's, alcf-tokens'), or None if it
    does not exist.

    ``read_owned_bytes`` refuses a symlink, a FIFO or device, or a file owned by someone else, and with
    ``secret`` a file readable by group or others (a metadata file with loose modes is only tightened on
    the next write). So is a file in a directory that is a symlink or another user's: readers refuse
    what writers refuse (``tighten``: see ``check_private_dir``). ``max_bytes``: refuse a larger file.
    """
    try:
        check_private_dir(os.path.dirname(os.path.abspath(path)), tighten=tighten)
    except FileNotFoundError:
        return None
    data = read_owned_bytes(path, secret=secret, limit=-1 if max_bytes is None else max_bytes + 1)
    if data is None:
        return None
    if max_bytes is not None and len(data) > max_bytes:
        raise StoreError(f"{path} is larger than {max_bytes} bytes; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not UTF-8 text; move it away and run metis-env again") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``path`` 0600 through a temp file in the same directory and ``os.replace``."""
    parent = os.path.dirname(os.path.abspath(path))
    ensure_private_dir(parent)
    replace_file(path, text, FILE_MODE)
    _fsync_dir(parent)


def replace_file(path: str | os.PathLike, text: str, mode: int, suffix: str = ".tmp", newline: str | None = None,
                 durable: bool = True) -> None:
    """Write ``path`` through a temp file beside it, its mode set before any byte is written, then
    fsync and ``os.replace``: a reader sees the old file or the new one, never part of one.
    ``durable=False``: no fsync, for a node-local file that means nothing after a crash (the broker's
    state: a busy disk made a new broker wait 100 ms and more for it)."""
    import tempfile  # only writers pay for it (random, shutil: ~4 ms)

    parent, name = os.path.split(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


# What atomic_write_text leaves behind when it is killed between mkstemp and os.replace (compiled by the
# writers and doctor, which need it: `re` costs every shell start-up several ms).
_TEMP_NAME = r"\.(keys\.json|endpoints\.yaml|pending\.json|config\.yaml)\..+\.tmp\Z"
_CONFIG_TEMP_GRACE_SECONDS = 60  # config set writes without the writers' lock: spare one still being written


def stale_temp_files(directory: str | os.PathLike) -> list[str]:
    """Names of temp files an interrupted write left in the config dir (``.keys.json.*.tmp`` holds keys)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    import re

    return sorted(name for name in names if re.match(_TEMP_NAME, name))


def remove_stale_temp_files(directory: str | os.PathLike) -> list[str]:
    """Delete them; called by writers holding the lock, so no store write of ours is in flight. A
    config.yaml temp file younger than a minute may be a ``config set`` still running: kept."""
    import time

    removed = []
    for name in stale_temp_files(directory):
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if name.startswith(".config.yaml.") and time.time() - info.st_mtime < _CONFIG_TEMP_GRACE_SECONDS:
                continue
            if info.st_uid == os.geteuid() and not stat.S_ISDIR(info.st_mode):
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def dump_json_yaml(data: Any) -> str:
    """YAML's JSON subset: valid YAML, and ``loads_json`` reads it in a fraction of pyyaml's time."""
    import json  # writers only

    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_SCANNER: Any = None


def loads_json(text: str) -> Any:
    """``json.loads(text)`` for our own files, without importing ``json`` (whose decoder imports ``re``,
    and ``re`` ``enum``: several ms of every shell start-up): the C scanner ``json`` itself uses, with
    json's defaults. ValueError as json.loads raises it; ``json`` itself where there is no C scanner."""
    global _SCANNER
    if _SCANNER is None:
        try:
            from _json import make_scanner
        except ImportError:  # not CPython
            import json

            return json.loads(text)
        _SCANNER = make_scanner(_JSONDefaults())
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _SCANNER(text, start)
    except StopIteration:
        raise ValueError(f"Expecting value: char {start}") from None
    except Exception:  # noqa: BLE001 - the scanner words its errors with json.decoder, which may not be loaded
        import json

        return json.loads(text)  # the same text: json.loads raises the proper JSONDecodeError
    if text[end:].strip(_JSON_SPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


_JSON_SPACE = " \t\n\r"


class _JSONDefaults:
    """What json's decoder hands its C scanner, with json.loads' defaults (NaN and Infinity accepted)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


# `key: value` lines, the value a JSON scalar or a plain word that YAML reads as the same string
# (matched by hand: a regular expression would cost the hot path `re`).
_KEY_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_KEY_REST = _KEY_FIRST | frozenset("0123456789")
_WORD_FIRST = _KEY_FIRST | frozenset("/")
_WORD_REST = _KEY_REST | frozenset("./@~-")


def _flat_line(line: str) -> tuple[str, str] | None:
    r"""``key: value`` -> (key, value without the blanks around it), or None: what the regular expression
    ``([A-Za-z_][A-Za-z0-9_]*):[ \t]*(.*?)[ \t]*\Z`` matches."""
    key, colon, value = line.partition(":")
    if not colon or not key or key[0] not in _KEY_FIRST or not all(c in _KEY_REST for c in key):
        return None
    return key, value.strip(" \t")


def _is_plain_word(text: str) -> bool:
    """Whether ``text`` is ``[A-Za-z_/][A-Za-z0-9_./@~-]*(?:[:][A-Za-z0-9_./@~-]+)*``."""
    first, *rest = text.split(":")
    return (bool(first) and first[0] in _WORD_FIRST and all(c in _WORD_REST for c in first[1:])
            and all(part and all(c in _WORD_REST for c in part) for part in rest))


_YAML_SPECIAL = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def parse_flat_yaml(text: str) -> dict[str, Any] | None:
    """Read a flat ``key: value`` file in the subset where YAML and this reader agree; None otherwise."""
    result: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _flat_line(line)
        if not match or match[0] in result:
            return None
        raw = match[1]
        if raw.startswith(("'", "#", "&", "*", "!", "|", ">", "%", "@", "`", "[", "{")):
            return None
        if "#" in raw and not raw.startswith('"'):
            return None
        try:
            value = loads_json(raw)
        except ValueError:
            if not _is_plain_word(raw) or raw.lower() in _YAML_SPECIAL or raw.startswith("~"):
                return None
            value = raw
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            return None
        if isinstance(value, (dict, list)) or (isinstance(value, str) and raw.startswith('"') and "\\" in raw):
            return None
        result[match[0]] = value
    return result


def dump_flat_yaml(data: dict[str, Any]) -> str:
    """The inverse of parse_flat_yaml: a string that reads the same plain (``host: sambanova.alcf.anl.gov``)
    is written plain, as docs/config.md shows it; anything else as a JSON scalar (``default_endpoint: "1"``)."""
    return "".join(f"{key}: {_flat_scalar(value)}\n" for key, value in data.items())


def _flat_scalar(value: Any) -> str:
    if isinstance(value, str) and _is_plain_word(value) and value.lower() not in _YAML_SPECIAL and not value.startswith("~"):
        return value
    import json  # writers only

    return json.dumps(value, ensure_ascii=False)


def load_structured(text: str, path: str | os.PathLike) -> Any:
    """Our JSON-subset or flat files with the standard library; anything else through pyyaml."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return loads_json(text)
        except ValueError:
            pass
    flat = parse_flat_yaml(text)
    if flat is not None:
        return flat
    return load_yaml(text, path)


def load_yaml(text: str, path: str | os.PathLike) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise StoreError(f"{where}: not valid YAML; fix it or delete the file") from None


class YAMLParseError(ValueError):
    """A YAML text that does not parse: ``line`` (1-based, or None) and pyyaml's ``problem``."""

    def __init__(self, line: int | None, problem: str):
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line, self.problem = line, problem


def parse_yaml(text: str) -> Any:
    """Any YAML document (other tools' files, for configure); YAMLParseError names the line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YAMLParseError(mark.line + 1 if mark is not None else None, getattr(exc, "problem", None) or "cannot be parsed") from None


def dump_yaml(data: Any) -> str:
    """Block-style YAML in the order given (configure's entries in other tools' files)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
