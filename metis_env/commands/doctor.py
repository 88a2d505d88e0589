"""``metis-env doctor``: why metis-env does or does not work on this machine, one line per finding.

Every check is a plain function returning ``Finding`` objects: a name, a status (``ok``, ``warn`` or
``problem``), a one-line message and, unless all is well, a one-line fix. Nothing here changes
anything: the keyring is only read (an entry that does not exist), the config dir is only ``lstat``-ed.
A problem is something that breaks a command today (``doctor`` then exits 17); a warning is something
that will, or that weakens the protection of the keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import shlex
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .. import paths
from ..errors import DoctorProblemsError, MetisEnvError
from ..findings import OK, PROBLEM, STATUSES, WARN, Finding  # noqa: F401  (doctor.Finding: the type its checks return)
from ..files import check_private_dir
from ..settings import HELD_BACK, SETTING_NAMES, Settings, coerce_setting, env_name, read_config_file
from ..keystore import KeyringSecrets, load_keyring_backend
from ..store import Store
from ..text import format_age
from .doctor_ssh import check_openssh, check_ssh, uses_ssh  # noqa: F401  (doctor.check_openssh: one of its checks)

JSON_VERSION = 1
KEYRING_PROBE_TIMEOUT = None  # the store's own bound (METIS_ENV_KEYRING_TIMEOUT, 10 s): a keyring export waits for is not broken

FAIL_BACKEND = "keyring.backends.fail.Keyring"
CHAINER_BACKEND = "keyring.backends.chainer.ChainerBackend"
FILE_STORE_FIX = "or use the file store: metis-env --store file sync (or export METIS_ENV_STORE=file)"
HOOK_MARK = "metis-env hook"


# --- the keyring and the store ---------------------------------------------------------------------


def keyring_config_file(environ: Mapping[str, str] = os.environ) -> Path:
    """keyring's own config file, which can name a backend (``[backend] default-keyring``).

    The same lookup as ``keyring.util.platform_.config_root``, without importing keyring here.
    """
    if platform.system() == "Windows":
        root = Path(environ.get("LOCALAPPDATA", environ.get("ProgramData", "."))) / "Python Keyring"
    else:
        base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
        root = Path(base) / "python_keyring"
    return root / "keyringrc.cfg"


def keyring_choice_reason(environ: Mapping[str, str] = os.environ) -> str:
    """Why keyring picked its backend: the environment, its config file, or its own detection."""
    if environ.get("PYTHON_KEYRING_BACKEND"):
        return "named by PYTHON_KEYRING_BACKEND"
    config = keyring_config_file(environ)
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if "default-keyring" in text:
        return f"named in {config}"
    return "auto-detected"


def _load_backend():
    """keyring's backend, or None and what went wrong (class names, first line)."""
    try:
        return load_keyring_backend(), None
    except Exception as exc:
        return None, (tuple(cls.__name__ for cls in type(exc).__mro__), (str(exc).splitlines() or [""])[0][:160])


def _probe(backend) -> tuple[tuple[str, ...], str] | None:
    """Read an entry that does not exist; the exception's class names and first line, or None."""
    try:
        backend.get_password("metis-env", "metis-env-doctor-probe")
    except Exception as exc:
        detail = (str(exc).splitlines() or [""])[0][:160]
        return tuple(cls.__name__ for cls in type(exc).__mro__), detail
    return None


def check_keyring(settings: Settings, environ: Mapping[str, str] = os.environ, timeout: float | None = KEYRING_PROBE_TIMEOUT) -> list[Finding]:
    """The backend keyring chose and why; with the keyring store, whether it answers a read."""
    in_use = settings.store == "keyring"
    reason = keyring_choice_reason(environ)
    secrets = KeyringSecrets(timeout=timeout)
    timeout = secrets.timeout
    try:
        backend, failure = secrets.call(_load_backend)
    except MetisEnvError:
        backend, failure = None, (("Timeout",), f"no answer within {timeout:g} s")
    if backend is None:
        shown = f"{failure[0][0]}: {failure[1]}" if failure[1] else failure[0][0]
        return [Finding("keyring", PROBLEM if in_use else OK, f"keyring could not load a backend, {reason} ({shown})", _keyring_fix(environ))]
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if not in_use:
        return [Finding("keyring", OK, f"not used (the store is file); keyring would use {name}, {reason}")]
    if name == FAIL_BACKEND or (name == CHAINER_BACKEND and not list(getattr(backend, "backends", []))):
        return [
            Finding(
                "keyring",
                PROBLEM,
                f"no OS keyring is available: keyring chose {name}, {reason}",
                _keyring_fix(environ),
            )
        ]
    started = time.monotonic()
    try:
        failure = secrets.call(_probe, backend)
    except MetisEnvError:
        return [
            Finding(
                "keyring",
                PROBLEM,
                f"{name} ({reason}) did not answer within {timeout:g} s: locked, or waiting for an unlock dialog",
                f"unlock it (log in to the desktop session) {FILE_STORE_FIX}",
            )
        ]
    elapsed_ms = round((time.monotonic() - started) * 1000)
    if failure is None:
        return [Finding("keyring", OK, f"{name}, {reason}; answered in {elapsed_ms} ms")]
    classes, detail = failure
    shown = f"{classes[0]}: {detail}" if detail else classes[0]
    if "KeyringLocked" in classes:
        return [
            Finding(
                "keyring",
                PROBLEM,
                f"{name} ({reason}) is locked and refused to unlock ({shown})",
                f"unlock it: log in to the desktop session, or run gnome-keyring-daemon --unlock with your login password; {FILE_STORE_FIX}",
            )
        ]
    if "NoKeyringError" in classes:
        return [Finding("keyring", PROBLEM, f"no OS keyring is available: {name} ({reason}) raised {shown}", _keyring_fix(environ))]
    return [
        Finding(
            "keyring",
            PROBLEM,
            f"{name} ({reason}) failed to read ({shown})",
            f"unlock or restart the keyring daemon (a D-Bus session is needed on Linux); {FILE_STORE_FIX}",
        )
    ]


def _keyring_fix(environ: Mapping[str, str]) -> str:
    if environ.get("PYTHON_KEYRING_BACKEND"):
        return (
            f"unset PYTHON_KEYRING_BACKEND (it names {environ['PYTHON_KEYRING_BACKEND']}) to let keyring detect one, "
            f"{FILE_STORE_FIX}"
        )
    return (
        "install and unlock gnome-keyring or kwallet (Linux needs a D-Bus session), or set PYTHON_KEYRING_BACKEND "
        f"to a working backend, {FILE_STORE_FIX}"
    )


def check_store(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[Finding]:
    """Which store the keys go to, and where that choice comes from."""
    if environ.get("METIS_ENV_STORE"):
        source = "METIS_ENV_STORE"
    else:
        try:
            configured = read_config_file(paths.config_file(settings.config_dir), tighten=False).get("store")
        except MetisEnvError:
            configured = None
        source = "config.yaml" if configured == settings.store else ("--store" if settings.store != "keyring" else "the default")
    if settings.store == "file":
        where = paths.keys_file(settings.config_dir)
        return [Finding("store", OK, f"file ({source}): keys in {where}, mode 0600")]
    return [Finding("store", OK, f"keyring ({source}): keys in the OS keyring, service 'metis-env'")]


# --- files -----------------------------------------------------------------------------------------

CONFIG_FILES = (
    ("config.yaml", paths.config_file, False),
    ("endpoints.yaml", paths.metadata_file, False),
    ("keys.json", paths.keys_file, True),
    ("sync.lock", paths.lock_file, False),
    ("pending.json", paths.journal_file, False),
)


def check_config_files(settings: Settings) -> list[Finding]:
    """The config dir 0700 and each file in it 0600, ours, not a symlink."""
    directory = settings.config_dir
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return [Finding("config dir", OK, f"{directory} does not exist yet (the first sync or import creates it 0700)")]
    except OSError as exc:
        return [Finding("config dir", PROBLEM, f"cannot look at {directory}: {exc.strerror}", "check the permissions of its parents")]
    try:
        check_private_dir(directory, info, tighten=False)
    except MetisEnvError as exc:
        return [Finding("config dir", PROBLEM, str(exc), "move it away, or set METIS_ENV_CONFIG_DIR to a directory of your own")]
    findings = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        findings.append(Finding("config dir", WARN, f"{directory} has mode {mode:o}, looser than 700", f"chmod 700 {directory}"))
    else:
        findings.append(Finding("config dir", OK, f"{directory} (mode {mode:o})"))
    for name, path_of, secret in CONFIG_FILES:
        finding = _check_private_file(name, path_of(directory), secret)
        if finding is not None:
            findings.append(finding)
    findings += check_temp_files(directory)
    return findings


def check_lock(settings: Settings) -> list[Finding]:
    """Which lock the store's writers take in the config dir (flock, or the lease file where flock fails)."""
    from ..errors import BusyError
    from ..locks import probe

    if not os.path.isdir(settings.config_dir):
        return []
    try:
        return [Finding("lock", OK, probe(paths.lock_file(settings.config_dir), settings.lock))]
    except BusyError:
        return [Finding("lock", OK, f"held right now by a running sync, import or refresh (lock: {settings.lock})")]
    except MetisEnvError as exc:
        return [Finding("lock", PROBLEM, str(exc), "metis-env config set lock file")]


def check_temp_files(directory: str | os.PathLike) -> list[Finding]:
    """Temp files an interrupted write left behind (a killed sync's .keys.json.*.tmp holds every key)."""
    from ..files import stale_temp_files

    names = stale_temp_files(directory)
    if not names:
        return []
    keys = " (with keys in them)" if any(n.startswith(".keys.json.") for n in names) else ""
    paths = " ".join(shlex.quote(os.path.join(directory, n)) for n in names)
    return [Finding("temp files", WARN, f"{len(names)} left in {directory} by an interrupted update{keys}: {', '.join(names)}",
                    f"the next metis-env sync, import or forget removes them, or: rm {paths}")]


def _check_private_file(name: str, path: Path, secret: bool) -> Finding | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Finding(name, PROBLEM, f"cannot look at {path}: {exc.strerror}", "check its permissions")
    if stat.S_ISLNK(info.st_mode):
        return Finding(name, PROBLEM, f"{path} is a symbolic link; metis-env refuses to read it", f"remove the link: rm {path}")
    if not stat.S_ISREG(info.st_mode):
        return Finding(name, PROBLEM, f"{path} is not a regular file", f"move it away: mv {path} {path}.old")
    if info.st_uid != os.geteuid():
        return Finding(name, PROBLEM, f"{path} belongs to another user (uid {info.st_uid})", f"move it away: mv {path} {path}.old")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        if secret:
            message = f"{path} has mode {mode:o}, readable by other users: metis-env refuses to read keys from it"
            return Finding(name, PROBLEM, message, f"chmod 600 {path}, then consider the keys seen (metis-env sync after they rotate)")
        return Finding(name, WARN, f"{path} has mode {mode:o}, looser than 600", f"chmod 600 {path}")
    return Finding(name, OK, f"{path} (mode {mode:o})")


# --- the stored endpoints --------------------------------------------------------------------------


def check_endpoints(settings: Settings, store: Store, broken_stores: frozenset[str] = frozenset()) -> list[Finding]:
    """Age of each endpoint's data, whether its key changed at the last sync, and whether its key can be read
    (not tried in a store already reported broken: one problem, one line)."""
    try:
        endpoints = store.endpoints()
    except MetisEnvError as exc:
        return [Finding("endpoints", PROBLEM, str(exc), "metis-env sync rewrites it")]
    if not endpoints:
        return [Finding("endpoints", OK, "none stored yet: metis-env sync fetches them (metis-env demo shows how)")]
    findings = []
    for stored in endpoints.values():
        name = f"endpoint {stored.id}"
        age = stored.age_days()
        event = "import" if stored.source.startswith("import") else "sync"  # what wrote it last
        verb = "imported" if event == "import" else "synced"
        when = f"{verb} {format_age(age)}" + (f" ({stored.source})" if stored.source and event == "sync" else "")
        if not stored.previous_fingerprint:
            changed = f"new at the last {event}" if stored.source else "key history unknown"
        elif stored.previous_fingerprint != stored.fingerprint:
            changed = f"key changed at the last {event} ({stored.previous_fingerprint} -> {stored.fingerprint})"
        else:
            changed = f"key unchanged at the last {event}"
        if stored.store in broken_stores:  # not read again, but never "ok": export would fail
            findings.append(unreadable_key_finding(name, when, stored.store, None, WARN))  # one cause, one problem
            continue
        try:
            store.api_key(stored)
        except MetisEnvError as exc:
            findings.append(unreadable_key_finding(name, when, stored.store, exc))
            continue
        if age is None:
            findings.append(Finding(name, WARN, f"no valid sync time recorded; {changed}", "metis-env sync"))
        elif age > settings.stale_after_days:
            findings.append(
                Finding(
                    name,
                    WARN,
                    f"{when}, older than stale_after_days ({settings.stale_after_days:g}); {changed}",
                    "metis-env sync",
                )
            )
        else:
            findings.append(Finding(name, OK, f"{when}; {changed}"))
    return findings


def unreadable_key_finding(name: str, when: str, kind: str, error: MetisEnvError | None, status: str = PROBLEM) -> Finding:
    """An endpoint whose key cannot be read: the error, or (``error`` None) the store found broken above."""
    where = "the OS keyring" if kind == "keyring" else "keys.json"
    said = str(error) if error is not None else f"its key is in {where}, which cannot be read (see {kind if kind == 'keyring' else 'keys.json'} above)"
    fix = ("unlock the keyring (then metis-env store move --to file), or fetch the key again into the file store: "
           "metis-env --store file sync (import or login)") if kind == "keyring" else "metis-env sync"
    return Finding(name, status, f"{when}; {said}", fix)


# --- shell hooks -----------------------------------------------------------------------------------


def hook_files(environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    """The rc file where each shell's hook line would be."""
    home = Path(environ.get("HOME") or Path.home())
    config = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    zdot = Path(environ["ZDOTDIR"]) if environ.get("ZDOTDIR") else home
    return {
        "bash": home / ".bashrc",
        "zsh": zdot / ".zshrc",
        "fish": config / "fish" / "config.fish",
    }


def _hook_line(shell: str, line: str) -> bool:
    """``eval "$(metis-env hook bash)"`` or ``source .../metis-env.bash`` (what ``hook --install`` says to add)."""
    line = line.strip()
    return not line.startswith("#") and (HOOK_MARK in line or f"metis-env.{shell}" in line)


def check_hooks(environ: Mapping[str, str] = os.environ, which: Callable[[str], str | None] = shutil.which) -> list[Finding]:
    """Whether a shell hook (a line in an rc file, or fish's conf.d file) or the direnv library is installed."""
    from .hooks import install_path

    installed = []
    for shell, path in hook_files(environ).items():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        if any(_hook_line(shell, line) for line in text.splitlines()):
            installed.append(f"{shell} ({path})")
        elif shell == "fish" and install_path("fish", environ).exists():
            installed.append(f"fish ({install_path('fish', environ)})")
    library = install_path("direnv", environ)
    findings = []
    if installed:
        findings.append(Finding("shell hook", OK, "installed for " + ", ".join(installed)))
    else:
        findings.append(Finding("shell hook", OK, "not installed (optional: metis-env hook --help)"))
    if library.exists():
        findings.append(Finding("direnv library", OK, f"installed at {library}"))
    else:
        findings.append(Finding("direnv library", OK, "not installed (optional: metis-env hook direnv --install)"))
    if (installed or library.exists()) and which("metis-env") is None:
        findings.append(
            Finding(
                "shell hook",
                PROBLEM,
                "a hook calls metis-env, but metis-env is not on PATH",
                "put metis-env's directory on PATH (pipx ensurepath) before the hook line",
            )
        )
    return findings


# --- OpenSSH ---------------------------------------------------------------------------------------


def load_settings_or_defaults(load: Callable[[], Settings], environ: Mapping[str, str] = os.environ) -> tuple[Settings, list[Finding]]:
    """The settings, or (when config.yaml or a METIS_ENV_* value is bad) the defaults and a finding saying why:
    doctor must work on exactly the machines where the rest does not."""
    try:
        settings = load()
        return settings, [Finding("settings", PROBLEM, f"{message}; {HELD_BACK[name]} refuses it (the other commands do not use it)",
                                  "fix the value named (metis-env config list shows where it comes from)")
                          for name, message in settings.invalid]
    except MetisEnvError as exc:
        values = {}
        with contextlib.suppress(MetisEnvError, OSError):  # config.yaml's valid values still count: one
            from ..settings import read_config_file  # bad timeout must not hide `store: file`

            for name, value in read_config_file(paths.config_file(paths.config_dir(environ)), tighten=False).items():
                with contextlib.suppress(MetisEnvError):
                    if name in SETTING_NAMES:
                        values[name] = coerce_setting(name, value, "config.yaml")
        for name in SETTING_NAMES:  # then the environment's values that are valid
            with contextlib.suppress(MetisEnvError):
                if environ.get(env_name(name)):
                    values[name] = coerce_setting(name, environ[env_name(name)], env_name(name))
        settings = Settings(config_dir=paths.config_dir(environ), **values)
        return settings, [Finding("settings", PROBLEM, f"{exc}; doctor goes on with the valid settings and defaults for the rest", "fix the value named, or delete config.yaml")]


def run_checks(
    settings: Settings,
    environ: Mapping[str, str] = os.environ,
    store: Store | None = None,
    settings_findings: Sequence[Finding] = (),
) -> list[Finding]:
    """Every check, in the order the report shows them."""
    store = store or Store(settings, tighten=False)
    findings: list[Finding] = list(settings_findings)
    findings += check_store(settings, environ)
    keyring_findings = check_keyring(settings, environ)
    findings += keyring_findings
    files = check_config_files(settings)
    dir_refused = any(f.name == "config dir" and f.status == PROBLEM for f in files)
    if dir_refused or any(f.name == "config.yaml" and f.status == PROBLEM for f in files):
        findings = [f for f in findings if f.name != "settings"]  # the same cause, said once
    if dir_refused and not environ.get(env_name("store")):
        # config.yaml cannot be read, so which store it names is unknown: a keyring verdict on the
        # default store would be a second, spurious problem for the one cause.
        findings = [f for f in findings if f.name not in ("store", "keyring")]
    findings += files
    findings += check_lock(settings)
    findings += check_ssh(settings, ssh_used=uses_ssh(store))
    broken = {"keyring"} if any(f.status == PROBLEM for f in keyring_findings) else set()
    if any(f.name == "keys.json" and f.status == PROBLEM for f in findings):
        broken.add("file")
    if not dir_refused:  # the endpoints live in the refused dir: its finding says it all
        findings += check_endpoints(settings, store, frozenset(broken))
        from ..sources.gateway.diagnose import check_gateway

        findings += check_gateway(settings, store)
    findings += check_hooks(environ)
    findings += check_openssh(settings)
    findings += check_tool_configs(settings, store)
    return findings


def check_tool_configs(settings: Settings, store: Store) -> list[Finding]:
    """The tool configs `configure` wrote: still as written, and still matching the endpoint (drift)."""
    from ..configure import records

    try:
        return [Finding(*row) for row in records.drift(store, config_dir=settings.config_dir)]
    except MetisEnvError as exc:
        return [Finding("configure", WARN, f"cannot check the tool configs metis-env wrote: {exc}", "metis-env doctor --debug")]


def format_report(findings: Sequence[Finding]) -> str:
    counts = {status: sum(1 for f in findings if f.status == status) for status in STATUSES}
    lines = [f.line() for f in findings]
    lines.append(f"{counts[PROBLEM]} problem(s), {counts[WARN]} warning(s)")
    return "\n".join(lines) + "\n"


def format_json(findings: Sequence[Finding]) -> str:
    """Schema version 1: ``{"version", "ok", "findings": [{"name","status","message","fix"}], "counts"}``."""
    counts = {status: sum(1 for f in findings if f.status == status) for status in STATUSES}
    payload = {
        "version": JSON_VERSION,
        "ok": counts[PROBLEM] == 0,
        "counts": counts,
        "findings": [f.to_dict() for f in findings],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def doctor(load: Callable[[], Settings], as_json: bool) -> None:
    """``metis-env doctor``: every finding on stdout (``as_json``: doctor's JSON), then DoctorProblemsError
    when one is a problem. ``load`` gives the settings (doctor goes on with defaults where they fail)."""
    import sys

    settings, settings_findings = load_settings_or_defaults(load)
    findings = run_checks(settings, settings_findings=settings_findings)
    sys.stdout.write(format_json(findings) if as_json else format_report(findings))
    raise_for_findings(findings)


def raise_for_findings(findings: Sequence[Finding]) -> None:
    problems = [f for f in findings if f.status == PROBLEM]
    if problems:
        names = ", ".join(dict.fromkeys(f.name for f in problems))
        raise DoctorProblemsError(f"doctor found {len(problems)} problem(s) ({names}); each is listed above with its fix")
