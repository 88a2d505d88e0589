"""What the commands do, as plain functions over the store and settings; the CLI and the fast path
(``main.py``) both call these, so that they cannot drift apart. No click, no keyring import here."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from collections import namedtuple

from . import render, status_cache
from .reserved_variables import why_reserved
from .errors import BusyError, CommandNotFoundError, EndpointFileError, MetisEnvError, NotFoundError, UsageError
from .settings import Settings, env_name, load_settings
from .store import Change, Store, StoredEndpoint, natural_key, open_store

# endpoint.py (hashlib, ipaddress, urllib) is imported where a file is parsed or a key masked, so that
# export, get and run never load it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .endpoint import Endpoint

EXPORTED_NAMES = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "MODEL_NAME",
    "SAMBANOVA_API_KEY",
    "SAMBANOVA_API_BASE",
    "SAMBA_NOVA_BASE_URL",
    "ALCF_AI_TOKEN",
    "OPENAI_AGENTS_DISABLE_TRACING",
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "METIS_ENV_ENDPOINT",
    "METIS_ENV_TOKEN_EXPIRES",
)
"""Every variable export can set, in the order it prints them (``--unset`` removes them all, and the
names of the ``aliases`` setting)."""


# A namedtuple, not a dataclass: see StoredEndpoint in store.py.
class Selection(namedtuple("Selection", "endpoint model warnings expires_at", defaults=((), None))):
    """The endpoint and model export, get and run use (``endpoint: StoredEndpoint, model: str,
    warnings: tuple[str, ...]``, ``expires_at``: when the key expires, ISO 8601 UTC, for gateway
    endpoints' Globus tokens; None for endpoint files' keys)."""

    __slots__ = ()


def choose_endpoint(endpoints: Mapping[str, StoredEndpoint], spec: str | None, settings: Settings,
                    command: str = "export") -> tuple[StoredEndpoint, str | None]:
    """ENDPOINT as typed (number, file stem or a model name) -> the endpoint, and the model it named;
    ``command`` is how the suggestion to name one is worded (``run 1 -- ...``, ``get key 1``)."""
    if not endpoints:
        raise NotFoundError("no endpoints are stored yet; run metis-env sync (or metis-env import FILE)")
    listed = ", ".join(endpoints)
    if spec is None:
        spec = settings.default_endpoint
        if spec is None:
            if len(endpoints) == 1:
                return next(iter(endpoints.values())), None
            raise UsageError(
                f"several endpoints are stored ({listed}) and none is the default; name one "
                f"({_example(command, next(iter(endpoints)))}) or set a default: metis-env config set default_endpoint ID"
            )
        if spec not in endpoints:
            raise NotFoundError(
                f"the default endpoint {spec!r} (default_endpoint in config.yaml or "
                f"{env_name('default_endpoint')}) is not stored; stored: {listed}"
            )
    if spec in endpoints:
        return endpoints[spec], None
    for stored in endpoints.values():
        stem = stored.file_name[:-4] if stored.file_name.endswith(".txt") else stored.file_name
        if spec in (stem, stored.file_name):
            return stored, None
    serving = [e for e in endpoints.values() if spec in e.models]
    if not serving:  # the gateway matches its names in any case: so do its endpoints here
        spelled = {e.id: _any_case(spec, e.models) for e in endpoints.values() if e.source == "gateway"}
        serving = [endpoints[i] for i, name in spelled.items() if name is not None]
        if len(serving) == 1:
            return serving[0], spelled[serving[0].id]
    if len(serving) == 1:
        return serving[0], spec
    if len(serving) > 1:
        raise UsageError(
            f"model {spec!r} is served by endpoints {', '.join(e.id for e in serving)}; name the endpoint and use --model"
        )
    raise NotFoundError(f"no endpoint or model {spec!r} is stored{_suggest(spec, _names(endpoints))}; stored endpoints: {listed}")


def _example(command: str, endpoint_id: str) -> str:
    if command == "run":
        return f"metis-env run {endpoint_id} -- COMMAND"
    return f"metis-env {command} {endpoint_id}"


def choose_model(endpoint: StoredEndpoint, model: str | None, settings: Settings) -> str:
    return pick_model(endpoint, model, settings)[0]


def pick_model(endpoint: StoredEndpoint, model: str | None, settings: Settings,
               seen: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The model a command uses on ``endpoint``, and a warning to print (or None).

    ``model`` (``--model``) or else ``default_model`` if the endpoint serves it, else the first model.
    A gateway endpoint takes its names in any case (the gateway matches them so) and spells them as
    it does; a name it did not list goes through with a warning, since its alias table may still
    serve an old name. With no model asked for, a gateway endpoint takes the first model that was
    live at the status cache's last look (``seen``: model -> word), rather than an offline one.
    """
    gateway = endpoint.source == "gateway"
    if model is not None:
        if model in endpoint.models:
            return model, None
        if gateway:
            spelled = _any_case(model, endpoint.models)
            if spelled is not None:
                return spelled, None
            return model, (
                f"model {model!r} is not among the models the gateway listed for endpoint {endpoint.id} "
                f"({', '.join(endpoint.models)}); passing it on as it is (the gateway may serve it under an old name): "
                f"metis-env sync --gateway asks for the list again"
            )
        raise NotFoundError(
            f"endpoint {endpoint.id} does not serve model {model!r}{_suggest(model, endpoint.models)}; "
            f"it serves: {', '.join(endpoint.models)}"
        )
    default = settings.default_model
    if default in endpoint.models:
        return default, None
    if gateway and default is not None:
        spelled = _any_case(default, endpoint.models)
        if spelled is not None:
            return spelled, None
    if gateway and seen:
        live = [name for name in endpoint.models if seen.get(name) == "live"]
        if live:
            return live[0], None
    return endpoint.models[0], None


def _any_case(name: str, models: Sequence[str]) -> str | None:
    lowered = name.lower()
    return next((m for m in models if m.lower() == lowered), None)


def _names(endpoints: Mapping[str, StoredEndpoint]) -> list[str]:
    names = list(endpoints)
    for stored in endpoints.values():
        names.extend(stored.models)
    return names


def _suggest(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def select(store: Store, spec: str | None, model: str | None, settings: Settings, command: str = "export") -> Selection:
    endpoints = store.endpoints()
    if spec is None and model is not None and settings.default_endpoint is None and len(endpoints) > 1:
        spec = model  # `export --model X`: the one endpoint that serves X, as `export X` would pick
    endpoint, named_model = choose_endpoint(endpoints, spec, settings, command)
    if named_model is not None and model is not None and model != named_model:
        raise UsageError(f"{spec!r} names model {named_model!r}, but --model asks for {model!r}; give one of them")
    seen = status_cache.recent(settings.config_dir, endpoint.id)  # cached, never the network
    chosen, note = pick_model(endpoint, model or named_model, settings, status_cache.model_words(seen))
    warnings = [note] if note else []
    if endpoint.is_older_than(settings.stale_after_days):
        age = endpoint.age_days() or 0.0
        warnings.append(
            f"endpoint {endpoint.id} was last synced {age:.0f} days ago (stale_after_days is "
            f"{settings.stale_after_days:g}); run metis-env sync{' --gateway' if endpoint.source == 'gateway' else ''} to refresh it"
        )
    warnings.extend(status_cache.warnings_from(seen, endpoint.id, chosen))
    return Selection(endpoint, chosen, tuple(warnings))


def select_with_key(store: Store, spec: str | None, model: str | None, settings: Settings,
                    command: str = "export") -> tuple[Selection, str]:
    """The selection and its key, both from one generation of the store.

    A sync may replace the metadata and delete the old keys between our two reads; Store.api_key then
    returns the new key, which must not go out with the old base URL and model: select again.
    """
    for _attempt in range(5):
        selection = select(store, spec, model, settings, command)
        if selection.endpoint.source == "gateway":  # a Globus token, refreshed when inside the margin
            from .sources.gateway.tokens import fresh_key

            selection, key = fresh_key(store, selection, settings)
        else:
            key = store.api_key(selection.endpoint)
        if store.endpoints().get(selection.endpoint.id) == selection.endpoint:
            return selection, key
    raise BusyError("the stored endpoints kept changing while being read (a sync is running); try again")


def environment_for(selection: Selection, api_key: str, settings: Settings | None = None) -> dict[str, str]:
    """The variables export, run and the Python API set: the openai client's names, the centre's own,
    and the ``aliases`` setting's.

    Wherever the key goes out under a name some client reads, the base URL goes out under the names
    that client reads too: the SambaNova SDK, langchain-sambanova and litellm's ``sambanova/`` read
    ``SAMBANOVA_API_KEY`` but default to SambaNova's public cloud, so without ``SAMBANOVA_API_BASE``
    and ``SAMBA_NOVA_BASE_URL`` the Metis key would be sent there. openai-agents uploads traces to
    OpenAI's own host with ``OPENAI_API_KEY`` unless tracing is disabled, and litellm downloads its
    price list from GitHub at import (no key, but a host other than the endpoint's, and a hang on a
    compute node with no route out) unless told to use the copy it ships.
    """
    endpoint = selection.endpoint
    env = {
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_BASE": endpoint.base_url,  # LangChain, aider, litellm and older scripts
        "OPENAI_API_KEY": api_key,
        "MODEL_NAME": selection.model,
    }
    if endpoint.source != "gateway":  # a Globus token under SambaNova's name would mislead
        env["SAMBANOVA_API_KEY"] = api_key
        env["SAMBANOVA_API_BASE"] = endpoint.base_url
        env["SAMBA_NOVA_BASE_URL"] = endpoint.base_url
    else:  # the name ALCF's own docs configure opencode and codex with
        env["ALCF_AI_TOKEN"] = api_key
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["METIS_ENV_ENDPOINT"] = endpoint.id
    if selection.expires_at is not None:  # as aws-vault's AWS_CREDENTIAL_EXPIRATION
        env["METIS_ENV_TOKEN_EXPIRES"] = selection.expires_at
    if settings is not None and settings.aliases:
        for alias, name in parse_aliases(settings.aliases, "aliases"):
            if name in env:
                env[alias] = env[name]
    return env


def parse_aliases(text: str, source: str) -> list[tuple[str, str]]:
    """``aliases`` (``NEW=EXISTING`` pairs, comma-separated) -> [(NEW, EXISTING), ...]; UsageError
    naming ``source`` for a pair that is not a variable name and one export sets."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        alias, eq, name = (part.strip() for part in item.partition("="))
        if not eq or not _is_variable_name(alias) or name not in EXPORTED_NAMES or alias in EXPORTED_NAMES:
            raise UsageError(
                f"{source}: {item.strip()!r} is not NEW_NAME=EXPORTED_NAME (a new variable name, then one of: "
                f"{', '.join(EXPORTED_NAMES)}); e.g. GROQ_API_KEY=OPENAI_API_KEY"
            )
        reason = why_reserved(alias)
        if reason is not None:
            raise UsageError(f"{source}: {alias} cannot be an alias: {reason}; use a name of your own, e.g. GROQ_API_KEY=OPENAI_API_KEY")
        pairs.append((alias, name))
    return pairs


def every_exported_name(settings: Settings) -> tuple[str, ...]:
    """Every name export may set: EXPORTED_NAMES, then the ``aliases`` setting's new names. What
    ``--unset`` removes, and what an export of one endpoint removes where it sets nothing."""
    return EXPORTED_NAMES + tuple(alias for alias, _name in parse_aliases(settings.aliases or "", "aliases"))


def _is_variable_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and all(c.isascii() and (c.isalnum() or c == "_") for c in name)


def export_command(spec: str | None, model: str | None, shell: str | None, unset: bool, settings: Settings | None = None,
                   output: str | None = None) -> int:
    """``metis-env export``: code on stdout and nothing else; on failure only the shell's ``false``.
    With ``output``, the code goes to that file instead, mode 0600, written atomically."""
    # Without --shell the code is the one form every POSIX shell and fish read alike, whatever $SHELL
    # says: the shell that evaluates it is often not the login shell (a bash script run from fish).
    shell_name = render.DEFAULT_SHELL if shell is None else None
    try:
        shell_name = shell_name or render.normalize_shell(shell)
        settings = settings or load_settings()
        code, warnings = export_code(open_store(settings), settings, spec, model, shell_name, unset, portable=shell is None)
    except BaseException:  # any failure, a bug included, must make the user's eval fail too
        sys.stdout.write(render.failure_code(shell_name or render.DEFAULT_SHELL))
        raise
    for warning in warnings:
        warn(warning)
    if output is not None:
        write_private_file(output, code)
        sys.stderr.write(f"metis-env: wrote {output} (mode 600); keep it out of version control\n")
        return 0
    sys.stdout.write(code)
    return 0


def write_private_file(path: str, text: str) -> None:
    """``path`` mode 0600 whatever the umask, through a temp file beside it and ``os.replace``: a
    reader sees the old file or the new one, never a half-written or briefly world-readable one."""
    import tempfile

    parent = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        raise


def get_command(what: str, spec: str | None, settings: Settings | None = None, as_json: bool = False) -> int:
    """``metis-env get``; with ``as_json`` (key only): ``{"key": ..., "expires_at": ...}`` on one line,
    ``expires_at`` the token's expiry (ISO 8601 UTC) or null for an endpoint file's key."""
    settings = settings or load_settings()
    if not as_json:
        sys.stdout.write(get_value(open_store(settings), settings, what, spec) + "\n")
        return 0
    if what != "key":
        raise UsageError(f"--json applies to get key only; get {what} prints one plain value")
    import json

    key, expires_at = get_key(open_store(settings), settings, spec)
    sys.stdout.write(json.dumps({"key": key, "expires_at": expires_at}, ensure_ascii=False) + "\n")
    return 0


def run_subcommand(spec: str | None, model: str | None, argv: Sequence[str], settings: Settings | None = None, proxy: bool = False) -> int:
    settings = settings or load_settings()
    if proxy:
        from .proxy import run_with_proxy  # http.server and threading: only --proxy pays for them

        return run_with_proxy(open_store(settings), settings, spec, model, argv)
    return run_command(open_store(settings), settings, spec, model, argv)


def export_code(store: Store, settings: Settings, spec: str | None, model: str | None, shell: str, unset: bool,
                portable: bool = False) -> tuple[str, tuple[str, ...]]:
    """The code export prints, and the warnings it prints on stderr; ``portable``: no --shell was
    named, so refuse what fish could not read the same way (render.check_portable)."""
    if unset:  # the same names whatever the endpoint, so ENDPOINT and --model are accepted and ignored
        return render.render_unset(shell, every_exported_name(settings)), ()
    selection, key = select_with_key(store, spec, model, settings)
    env = environment_for(selection, key, settings)
    if portable:
        render.check_portable(env)
    others = [name for name in every_exported_name(settings) if name not in env]  # left by an earlier export
    return render.render_switch(shell, env, others, portable), selection.warnings


GET_FIELDS = ("key", "url", "models")


def get_value(store: Store, settings: Settings, what: str, spec: str | None) -> str:
    if what not in GET_FIELDS:
        raise UsageError(f"metis-env get takes one of: {', '.join(GET_FIELDS)}")
    endpoint, _model = choose_endpoint(store.endpoints(), spec, settings, f"get {what}")
    if what == "url":
        return endpoint.base_url
    if what == "models":
        return ",".join(endpoint.models)
    return get_key(store, settings, spec)[0]


def get_key(store: Store, settings: Settings, spec: str | None) -> tuple[str, str | None]:
    """The endpoint's current key and when it expires (None for an endpoint file's key)."""
    endpoint, _model = choose_endpoint(store.endpoints(), spec, settings, "get key")
    if endpoint.source == "gateway":
        from .sources.gateway.tokens import fresh_key

        selection, key = fresh_key(store, Selection(endpoint, ""), settings)
        for warning in selection.warnings:
            warn(warning)
        return key, selection.expires_at
    return store.api_key(endpoint), None


def run_command(store: Store, settings: Settings, spec: str | None, model: str | None, argv: Sequence[str]) -> int:
    """Run argv with the variables in its environment, replacing this process where the OS allows."""
    if not argv:
        raise UsageError("nothing to run; usage: metis-env run [ENDPOINT] [--model NAME] -- COMMAND [ARGS...]")
    selection, key = select_with_key(store, spec, model, settings, "run")
    for warning in selection.warnings:
        warn(warning)
    ours = environment_for(selection, key, settings)
    # An earlier export of another endpoint must not reach the command (its key under SAMBANOVA_API_KEY).
    others = set(every_exported_name(settings)) - set(ours)
    env = {name: value for name, value in os.environ.items() if name not in others}
    env.update(ours)
    sys.stdout.flush()
    sys.stderr.flush()
    from .coredump import restore_core_limit

    restore_core_limit()  # the user's program keeps the core limit it would have had without us
    if os.name == "posix":
        try:
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            raise CommandNotFoundError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    import subprocess

    try:
        return subprocess.call(list(argv), env=env)
    except OSError as exc:
        raise CommandNotFoundError(f"cannot run {argv[0]!r}: {exc.strerror}") from None


def read_endpoint_source(source: str, endpoint_id: str | None, stdin=None) -> Endpoint:
    """One FILE argument of import (``-`` is stdin) -> a parsed Endpoint; the file is never read past the limit."""
    from .endpoint import MAX_FILE_BYTES, endpoint_name_id, parse_endpoint_file

    if source == "-":
        if not endpoint_id:
            raise UsageError("give the endpoint id for stdin: metis-env import --id 1 -")
        stream = stdin if stdin is not None else sys.stdin.buffer
        return parse_endpoint_file(stream.read(MAX_FILE_BYTES + 1), "<stdin>", endpoint_id)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise EndpointFileError(f"{source}: is a directory, not an endpoint file") from None
    except OSError as exc:
        raise EndpointFileError(f"{source}: cannot read it: {exc.strerror}") from None
    if not endpoint_id and endpoint_name_id(source) is None:
        # `import random.txt` silently became endpoint "random": a file not named like an endpoint
        # file must come with the id the user means.
        from shlex import quote

        raise EndpointFileError(
            f"{source}: cannot tell the endpoint id from this file name (metis_endpoint_N.txt becomes endpoint N); "
            f"pass it: metis-env import --id ID {quote(source)}"
        )
    return parse_endpoint_file(data, source, endpoint_id)


def import_files(store: Store, sources: Sequence[str], endpoint_id: str | None, stdin=None) -> list[Change]:
    """Parse every file first; then store them all in one all-or-nothing update."""
    if endpoint_id and len(sources) > 1:
        raise UsageError("--id names one endpoint; import one file at a time with it")
    if sources.count("-") > 1:
        raise UsageError("stdin ('-') can be given once")
    endpoints = [read_endpoint_source(s, endpoint_id, stdin) for s in sources]
    return store.merge(endpoints, source="import")


def describe_changes(changes: Sequence[Change], dry_run: bool = False) -> list[str]:
    def status(text: str) -> str:  # "key rotated" -> "key would be rotated", "new" -> "would be new"
        if not dry_run:
            return text
        what, _, how = text.rpartition(" ")
        return f"{what} would be {how}" if what else f"would be {text}"

    return [f"endpoint {c.id}: {status(c.status)}" + (f" ({c.detail})" if c.detail else "") for c in changes]


def list_rows(store: Store, settings: Settings) -> list[dict]:
    """What list shows, one dict per endpoint (the --json schema, version 1)."""
    from .endpoint import mask_key

    rows = []
    for stored in store.endpoints().values():
        try:
            masked = mask_key(store.api_key(stored))
        except MetisEnvError as exc:  # a locked keyring must not hide the rest of the listing
            warn(f"cannot read the key of endpoint {stored.id}: {exc}")
            masked = None
        age = stored.age_days()
        rows.append(
            {
                "id": stored.id,
                "base_url": stored.base_url,
                "models": list(stored.models),
                "model": choose_model(stored, None, settings),
                "default": stored.id == settings.default_endpoint,
                "file_name": stored.file_name,
                "source": stored.source,
                "synced_at": stored.synced_at,
                "age_days": None if age is None else round(age, 2),
                "stale": age is not None and age > settings.stale_after_days,
                "fingerprint": stored.fingerprint,
                "store": stored.store,
                "key": masked,
            }
        )
        for name in ("routes", "capabilities"):  # a gateway endpoint's, where discovery found them
            if name in stored.extra:
                rows[-1][name] = stored.extra[name]
    return rows


def format_age(days: float | None) -> str:
    if days is None:
        return "?"
    seconds = days * 86400
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if days < 2:
        return f"{seconds / 3600:.0f} h ago"
    return f"{days:.0f} days ago"


def format_list(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    lines = []
    for row in sorted(rows, key=lambda r: natural_key(r["id"])):
        mark = "*" if row["default"] else " "
        stale = " (stale: run metis-env sync)" if row["stale"] else ""
        lines.append(f"{mark}{row['id']}  {row['base_url']}")
        lines.append(f"    models: {', '.join(row['models'])}")
        lines.append(
            f"    key: {row['key'] or '(unreadable)'}  {row['fingerprint']}  store: {row['store']}  "
            f"synced: {format_age(row['age_days'])}{stale}"
        )
    return "\n".join(lines) + "\n"


def warn(message: str) -> None:
    sys.stderr.write(f"metis-env: warning: {message}\n")
