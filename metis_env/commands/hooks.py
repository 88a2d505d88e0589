"""The shell integration files of ``shell/``: their text, their path, and where ``--install`` puts them.

Installed, they are the package ``metis_env.shell``; in a source checkout run without installing,
``shell/`` sits beside this package. No click here (cli.py wraps these).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import MetisEnvError, UsageError
from ..files import replace_file


@dataclass(frozen=True)
class Hook:
    file_name: str  # in shell/
    install_name: str
    next_step: str  # told after --install; {path} is where the file went


HOOKS: dict[str, Hook] = {
    "bash": Hook("metis-env.bash", "metis-env.bash", "add this line to ~/.bashrc: source {path}"),
    "zsh": Hook("metis-env.zsh", "metis-env.zsh", "add this line to ~/.zshrc, after compinit: source {path}"),
    "fish": Hook("metis-env.fish", "metis-env.fish", "fish sources it in every new shell; nothing else to do"),
    "direnv": Hook("direnvrc", "metis-env.sh", "direnv loads it before every .envrc; write 'use metis ENDPOINT' in one"),
}
TARGETS = tuple(HOOKS)


def _shell_dir():
    try:
        from importlib.resources import files

        return files("metis_env.shell")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent.parent / "shell"


def hook_text(target: str) -> str:
    """The file's content, as ``metis-env hook TARGET`` prints it."""
    return (_shell_dir() / HOOKS[target].file_name).read_text(encoding="utf-8")


def hook_path(target: str) -> Path:
    """Where the shipped file is, for ``source`` in an rc file."""
    path = _shell_dir() / HOOKS[target].file_name
    if not isinstance(path, Path):  # e.g. installed inside a zip: nothing a shell could source
        raise UsageError(f"the {target} hook is not a file on disk here; use: metis-env hook {target} --install")
    return path


def install_path(target: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where ``--install`` writes the file: a place the shell (fish, direnv) or docs/shells.md's one line reads."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    config = _xdg(environ, "XDG_CONFIG_HOME", home / ".config")
    name = HOOKS[target].install_name
    if target == "fish":
        return config / "fish" / "conf.d" / name
    if target == "direnv":
        direnv_config = environ.get("DIRENV_CONFIG")
        return (Path(direnv_config) if direnv_config else config / "direnv") / "lib" / name
    return _xdg(environ, "XDG_DATA_HOME", home / ".local" / "share") / "metis-env" / name


def _xdg(environ: Mapping[str, str], name: str, default: Path) -> Path:
    value = environ.get(name, "")
    return Path(value) if os.path.isabs(value) else default


def install(target: str, environ: Mapping[str, str] = os.environ) -> tuple[Path, str]:
    """Write the file where it belongs (atomically, replacing an older copy) -> (path, what happened)."""
    path = install_path(target, environ)
    text = hook_text(target)
    try:
        if path.read_text(encoding="utf-8") == text:
            return path, "unchanged"
        status = "updated"
    except FileNotFoundError:
        status = "new"
    except (OSError, UnicodeDecodeError):
        status = "replaced"
    try:
        _make_dirs(path.parent)
        replace_file(path, text, 0o644)  # read by the user's shell: not a secret
    except OSError as exc:
        raise MetisEnvError(f"cannot write {path}: {exc.strerror}; check the folder's permissions") from exc
    return path, status


def _make_dirs(directory: Path) -> None:
    """mkdir -p with 0755 whatever the umask: under umask 000 a world-writable folder would let another
    user replace the file ~/.bashrc sources. The folder the file goes in, when ours and writable by
    others (made so by an earlier install), is tightened too."""
    missing = []
    folder = directory
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o755, exist_ok=True)
        os.chmod(folder, 0o755)
    info = directory.lstat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o022 and not directory.is_symlink():
        os.chmod(directory, info.st_mode & 0o755)


def install_message(target: str, path: Path, status: str, environ: Mapping[str, str] = os.environ) -> str:
    """What ``--install`` tells on stderr: what it wrote, where, and the next step (none when the rc
    file already sources it)."""
    import shlex

    what = {"new": "wrote", "updated": "updated", "replaced": "replaced", "unchanged": "already up to date:"}[status]
    kind = "use_metis for .envrc files" if target == "direnv" else f"metis-use, metis-unuse and completion for {target}"
    rc = _rc_file(target, environ)
    if rc is not None and _sources(rc, path, environ.get("HOME") or os.path.expanduser("~")):
        shown = str(rc).replace(environ.get("HOME") or "\0", "~", 1)
        return f"{what} {path} ({kind}); {shown} already sources it: nothing else to do"
    return f"{what} {path} ({kind}); " + HOOKS[target].next_step.format(path=shlex.quote(str(path)))


def _rc_file(target: str, environ: Mapping[str, str]) -> Path | None:
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    if target == "bash":
        return home / ".bashrc"
    if target == "zsh":
        return Path(environ["ZDOTDIR"]) / ".zshrc" if environ.get("ZDOTDIR") else home / ".zshrc"
    return None


def _sources(rc: Path, path: Path, home: str) -> bool:
    """Whether a line of rc (not a comment) sources path, as docs/shells.md's line does."""
    try:
        lines = rc.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    forms = {str(path), str(path).replace(home, "~", 1), str(path).replace(home, "$HOME", 1)}
    return any(not line.strip().startswith("#") and any(form in line for form in forms) for line in lines)


# --- completion candidates: from endpoints.yaml alone (no keyring, no network) ---------------------


def endpoint_candidates(incomplete: str, ids_only: bool = False) -> list[tuple[str, str]]:
    """(value, description) for an ENDPOINT argument: the ids, then (unless ids_only) the models one
    endpoint alone serves, which export, run and get take too. Empty when nothing is stored or the
    metadata cannot be read."""
    endpoints = _stored_endpoints()
    if endpoints is None:
        return []
    candidates = [(e.id, ", ".join(e.models)) for e in endpoints.values()]
    if ids_only:
        return [(value, help_) for value, help_ in candidates if value.startswith(incomplete)]
    served: dict[str, list[str]] = {}
    for stored in endpoints.values():
        for model in stored.models:
            served.setdefault(model, []).append(stored.id)
    candidates += [(model, f"model of endpoint {ids[0]}") for model, ids in served.items() if len(ids) == 1]
    return [(value, help_) for value, help_ in candidates if value.startswith(incomplete)]


def model_candidates(incomplete: str, endpoint_spec: str | None) -> list[tuple[str, str]]:
    """(value, description) for --model: the models of the endpoint named so far (or the default one),
    else every stored model."""
    endpoints = _stored_endpoints()
    if endpoints is None:
        return []
    from ..credentials import choose_endpoint
    from ..errors import MetisEnvError
    from ..settings import load_settings

    try:
        chosen, _model = choose_endpoint(endpoints, endpoint_spec, load_settings())
        pool = [chosen]
    except MetisEnvError:
        pool = list(endpoints.values())
    candidates: dict[str, str] = {}
    for stored in pool:
        for model in stored.models:
            candidates.setdefault(model, f"endpoint {stored.id}")
    return [(value, help_) for value, help_ in candidates.items() if value.startswith(incomplete)]


def _stored_endpoints():
    from ..errors import MetisEnvError
    from ..settings import load_settings
    from ..store import Store

    try:
        return Store(load_settings()).endpoints()
    except MetisEnvError:
        return None


def hook(target: str, show_path: bool, installing: bool) -> None:
    """``metis-env hook TARGET``: the file's text on stdout, its path (``show_path``), or installed
    (``installing``) with a line on stderr saying where and what to do next."""
    import sys

    if installing:
        path, status = install(target)
        sys.stderr.write(f"metis-env: {install_message(target, path, status)}\n")
    elif show_path:
        sys.stdout.write(f"{hook_path(target)}\n")
    else:
        sys.stdout.write(hook_text(target))
