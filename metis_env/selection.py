"""Which endpoint and which model a command means: ENDPOINT as typed (a number, a file stem or a model
name), ``--model``, the ``default_endpoint`` and ``default_model`` settings, and the warnings that go
with the choice (stale data, what the status cache last saw). Standard library only, no key read, no
network: ``credentials.select_with_key`` adds the key.

Example::

    selection = select(store, "1", None, settings)       # Selection(endpoint, model, warnings, None)
"""

from __future__ import annotations

from .structs import record_type

from . import status_cache
from .errors import NotFoundError, UsageError
from .settings import env_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from .records import StoredEndpoint
    from .settings import Settings
    from .store import Store


EMPTY_STORE = ("no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login "
               "(the ALCF gateway), or metis-env import FILE")
"""What a command says when the store holds no endpoint (``list`` says it too)."""


# A record type (structs.py), not a dataclass: see StoredEndpoint in records.py.
class Selection(record_type("Selection", "endpoint model warnings expires_at", defaults=((), None))):
    """The endpoint and model export, get and run use (``endpoint: StoredEndpoint, model: str,
    warnings: tuple[str, ...]``, ``expires_at``: when the key expires, ISO 8601 UTC, for gateway
    endpoints' Globus tokens; None for endpoint files' keys)."""

    __slots__ = ()


def choose_endpoint(endpoints: Mapping[str, StoredEndpoint], spec: str | None, settings: Settings,
                    command: str = "export", any_case: Callable[[StoredEndpoint], bool] = lambda endpoint: False,
                    ) -> tuple[StoredEndpoint, str | None]:
    """ENDPOINT as typed (number, file stem or a model name) -> the endpoint, and the model it named;
    ``command`` is how the suggestion to name one is worded (``run 1 -- ...``, ``get key 1``);
    ``any_case``: whether an endpoint matches its model names in any case (credentials.uses_login:
    the gateway's do, as the gateway itself does)."""
    if not endpoints:
        raise NotFoundError(EMPTY_STORE)
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
        spelled = {e.id: _any_case(spec, e.models) for e in endpoints.values() if any_case(e)}
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
    """How to name the endpoint in the words of what the user ran (``command``: a CLI command, or
    ``python`` for the Python API)."""
    if command in ("run", "run --proxy"):
        return f"metis-env {command} {endpoint_id} -- COMMAND"
    if command == "configure":
        return f"metis-env configure TOOL {endpoint_id}"
    if command == "python":
        return f"metis_env.load({endpoint_id!r})"
    return f"metis-env {command} {endpoint_id}"


def choose_model(endpoint: StoredEndpoint, model: str | None, settings: Settings, any_case: bool = False) -> str:
    """``--model`` if the endpoint serves it, else ``default_model`` if it does, else its first model."""
    return pick_model(endpoint, model, settings, any_case=any_case)[0]


def pick_model(endpoint: StoredEndpoint, model: str | None, settings: Settings,
               seen: Mapping[str, str] | None = None, any_case: bool = False) -> tuple[str, str | None]:
    """The model a command uses on ``endpoint``, and a warning to print (or None).

    ``model`` (``--model``) or else ``default_model`` if the endpoint serves it, else the first model.
    A gateway endpoint (``any_case``) takes its names in any case (the gateway matches them so) and
    spells them as it does; a name it did not list goes through with a warning, since its alias table
    may still serve an old name. With no model asked for, a gateway endpoint takes the first model
    that was live at the status cache's last look (``seen``: model -> word), rather than an offline one.
    """
    gateway = any_case
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


def select(store: Store, spec: str | None, model: str | None, settings: Settings, command: str = "export",
           sync_command: Callable[[StoredEndpoint], str] = lambda endpoint: "metis-env sync",
           any_case: Callable[[StoredEndpoint], bool] = lambda endpoint: False) -> Selection:
    """The endpoint and model ``spec`` and ``model`` mean, with the warnings that go with them;
    ``sync_command`` words how a stale endpoint is refreshed and ``any_case`` says whose model names
    match in any case (credentials knows which source it is)."""
    endpoints = store.endpoints()
    if spec is None and model is not None and settings.default_endpoint is None and len(endpoints) > 1:
        spec = model  # `export --model X`: the one endpoint that serves X, as `export X` would pick
    endpoint, named_model = choose_endpoint(endpoints, spec, settings, command, any_case)
    if named_model is not None and model is not None and model != named_model:
        raise UsageError(f"{spec!r} names model {named_model!r}, but --model asks for {model!r}; give one of them")
    seen = status_cache.recent(settings.config_dir, endpoint.id)  # cached, never the network
    chosen, note = pick_model(endpoint, model or named_model, settings, status_cache.model_words(seen), any_case(endpoint))
    warnings = [note] if note else []
    if endpoint.is_older_than(settings.stale_after_days):
        age = endpoint.age_days() or 0.0
        warnings.append(
            f"endpoint {endpoint.id} was last synced {age:.0f} days ago (stale_after_days is "
            f"{settings.stale_after_days:g}); run {sync_command(endpoint)} to refresh it"
        )
    warnings.extend(status_cache.warnings_from(seen, endpoint.id, chosen))
    return Selection(endpoint, chosen, tuple(warnings))
