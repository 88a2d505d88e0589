"""The Python API: the variables ``export`` sets, for notebooks, scripts and batch jobs.

    import metis_env

    env = metis_env.environ(1)            # {"OPENAI_BASE_URL": ..., "OPENAI_API_KEY": ..., "MODEL_NAME": ...}
    metis_env.load(1)                     # the same variables, set in os.environ
    client = metis_env.openai_client(1)   # an openai.OpenAI whose key stays current for days

Every function reads the store exactly as ``metis-env export`` does (``credentials.select_with_key`` and
``credentials.environment_for``), so the two cannot disagree; every failure is a ``MetisEnvError`` with the
CLI's one-line message. Standard library only until ``openai_client`` imports openai.
"""

from __future__ import annotations

import os
import time

from . import credentials, paths
from .variables import EXPORTED_NAMES, every_exported_name
from .errors import UsageError
from .selection import Selection
from .text import warn
from .settings import load_settings
from .store import open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

    import openai

    Endpoint = Union[int, str, None]

__all__ = ["Environment", "environ", "load", "unload", "openai_client", "async_openai_client"]

OPENAI_EXTRA_HINT = "pip install openai"


class Environment(dict):
    """The variables, as a plain ``dict[str, str]`` whose ``repr`` masks the key: a notebook cell that
    ends in ``metis_env.environ(1)`` shows ``'sk-…c123'``, and the saved notebook never holds the key."""

    def __repr__(self) -> str:
        from .endpoint import mask_key

        key = self.get("OPENAI_API_KEY")
        shown = {
            name: mask_key(value) if value == key or name.endswith(("_KEY", "_TOKEN")) else value
            for name, value in self.items()
        }
        return f"Environment({shown!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's display
        printer.text(repr(self))


def _spec(endpoint: Endpoint) -> str | None:
    """``1``, ``"1"``, ``"metis_endpoint_1"``, a model name, or None (the default endpoint)."""
    if endpoint is None or isinstance(endpoint, str):
        return endpoint
    if isinstance(endpoint, int) and not isinstance(endpoint, bool):
        return str(endpoint)
    raise UsageError(f"the endpoint must be a number or a name such as 1 or 'metis_endpoint_1', not {type(endpoint).__name__}")


def _select(endpoint: Endpoint, model: str | None) -> tuple[Selection, str, Any]:
    settings = load_settings()
    selection, key = credentials.select_with_key(open_store(settings), _spec(endpoint), model, settings, "python")
    return selection, key, settings


def environ(endpoint: Endpoint = None, model: str | None = None) -> dict[str, str]:
    """The variables ``metis-env export ENDPOINT --model MODEL`` sets, as a dict; nothing is changed.

        >>> metis_env.environ(2, model="Llama-3.3-70B-Instruct")["MODEL_NAME"]
        'Llama-3.3-70B-Instruct'

    Raises the ``MetisEnvError`` that ``export`` reports (``NotFoundError`` before any sync, ...).
    """
    selection, key, settings = _select(endpoint, model)
    for warning in selection.warnings:
        warn(warning)
    return Environment(credentials.environment_for(selection, key, settings))


_loaded: set[str] = set()
"""Every name load() set in this process, so that unload() removes them all (aliases since changed included)."""


def load(endpoint: Endpoint = None, model: str | None = None, override: bool = True) -> dict[str, str]:
    """Set the variables of ``environ(endpoint, model)`` in ``os.environ``, as python-dotenv's
    ``load_dotenv`` does; with ``override=False`` a variable already set keeps its value. Returns the
    variables it set (and only those). With ``override`` (the default), the names that ``export`` sets
    for other endpoints and this one does not are removed, as ``export`` removes them: after
    ``load(1)`` then ``load("metis")``, no ``SAMBANOVA_API_KEY`` of endpoint 1 is left behind.

        >>> metis_env.load(1)
        >>> openai.OpenAI()   # reads OPENAI_BASE_URL and OPENAI_API_KEY
    """
    selection, key, settings = _select(endpoint, model)
    for warning in selection.warnings:
        warn(warning)
    variables = credentials.environment_for(selection, key, settings)
    applied = Environment((name, value) for name, value in variables.items() if override or name not in os.environ)
    if override:
        for name in every_exported_name(settings.aliases):
            if name not in variables:
                os.environ.pop(name, None)
    os.environ.update(applied)
    _loaded.update(applied)
    return applied


def unload() -> list[str]:
    """Remove from ``os.environ`` every name ``metis-env export --unset`` removes (aliases included)
    and every name ``load()`` set in this process; returns the names removed, in that order.

        >>> metis_env.unload()
        ['OPENAI_BASE_URL', 'OPENAI_API_BASE', 'OPENAI_API_KEY', 'MODEL_NAME', ...]
    """
    from .errors import MetisEnvError

    try:
        names = every_exported_name(load_settings().aliases)
    except MetisEnvError:  # a bad setting must not keep the key in the environment
        names = EXPORTED_NAMES
    removed = [name for name in dict.fromkeys([*names, *sorted(_loaded)]) if name in os.environ]
    for name in removed:
        del os.environ[name]
    _loaded.clear()
    return removed


class CurrentKey:
    """A callable giving the endpoint's current key: read once, then again whenever ``endpoints.yaml``
    changed (a sync or import rotated the key) or a gateway token is within ``token_refresh_margin`` of
    its expiry. A stat per call otherwise, so an openai client may call it before every request.

    The endpoint is pinned to the one first chosen: a default that changes in config.yaml does not
    move a running client to another endpoint.
    """

    def __init__(self, endpoint: Endpoint = None, model: str | None = None) -> None:
        import threading  # only long-lived clients pay for it

        self._lock = threading.Lock()
        self._model = model
        self._spec = _spec(endpoint)
        self._client: Any = None
        self._read()
        self._spec = self.selection.endpoint.id

    def __repr__(self) -> str:
        return f"CurrentKey(endpoint={self.selection.endpoint.id!r}, expires_at={self.expires_at!r})"

    @property
    def base_url(self) -> str:
        return self.selection.endpoint.base_url

    @property
    def expires_at(self) -> str | None:
        return self.selection.expires_at

    def __call__(self) -> str:
        if self._is_current():
            return self._key
        with self._lock:
            if not self._is_current():
                self._read()
            return self._key

    def _is_current(self) -> bool:
        if self._expires is not None and time.time() >= self._expires - self._margin:
            return False
        return _stamp(self._metadata_path) == self._stamp

    def _read(self) -> None:
        settings = load_settings()
        path = paths.metadata_file(settings.config_dir)
        stamp = _stamp(path)  # before the read: a change during it makes the next call read again
        selection, key = credentials.select_with_key(open_store(settings), self._spec, self._model, settings, "python")
        self.selection, self._key = selection, key
        self._metadata_path, self._stamp = path, stamp
        self._margin = settings.token_refresh_margin
        self._expires = _epoch(self.expires_at)
        client = self._client() if self._client is not None else None
        if client is not None and str(client.base_url).rstrip("/") != selection.endpoint.base_url.rstrip("/"):
            client.base_url = selection.endpoint.base_url

    def follow_base_url(self, client: Any) -> None:
        """Move ``client`` to the endpoint's new base URL when a sync changes it, with the new key: a
        new key must never go to the old URL, nor the old key to the new one."""
        import weakref

        self._client = weakref.ref(client)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    import datetime

    when = datetime.datetime.fromisoformat(iso[:-1] + "+00:00" if iso.endswith("Z") else iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _import_openai() -> Any:
    try:
        import openai
    except ImportError:
        raise UsageError(f"metis_env.openai_client needs the openai package; install it: {OPENAI_EXTRA_HINT}") from None
    return openai


def _takes_key_provider(client_class: type) -> bool:
    """Whether this openai accepts a callable ``api_key``, called before each request (openai 1.106 on)."""
    import inspect

    annotation = inspect.signature(client_class.__init__).parameters["api_key"].annotation
    return "Callable" in str(annotation)


def _rotating_subclass(client_class: type) -> type:
    """For an openai without key providers: ``api_key`` becomes a property read through CurrentKey, so
    that the Authorization header of every request carries the current key."""

    class MetisEnvClient(client_class):  # type: ignore[misc, valid-type]
        _metis_env_key: CurrentKey | None = None

        @property  # type: ignore[override]
        def api_key(self) -> str:
            source = self._metis_env_key
            return source() if source is not None else self.__dict__.get("_metis_env_fixed_key", "")

        @api_key.setter
        def api_key(self, value: str) -> None:
            self.__dict__["_metis_env_fixed_key"] = value

    MetisEnvClient.__name__ = MetisEnvClient.__qualname__ = client_class.__name__
    return MetisEnvClient


def _build_client(client_class: type, endpoint: Endpoint, model: str | None, kwargs: dict, asynchronous: bool = False, use_provider: bool | None = None) -> Any:
    source = CurrentKey(endpoint, model)
    ours_base_url = "base_url" not in kwargs
    kwargs.setdefault("base_url", source.base_url)
    if "api_key" in kwargs:  # the caller's own key: an ordinary client
        return client_class(**kwargs)
    if use_provider is None:
        use_provider = _takes_key_provider(client_class)
    if use_provider:
        client = client_class(api_key=_async_provider(source) if asynchronous else source, **kwargs)
    else:
        client = _rotating_subclass(client_class)(api_key=source(), **kwargs)
        client._metis_env_key = source
    if ours_base_url:
        source.follow_base_url(client)
    return client


def _async_provider(source: CurrentKey) -> Any:
    async def provider() -> str:
        return source()  # a stat, and a file read when the key changed: too short to need a thread

    return provider


def openai_client(endpoint: Endpoint = None, model: str | None = None, proxy: bool = False, **kwargs: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` for the endpoint, with its base URL and key set; other keyword arguments
    go to ``openai.OpenAI`` (``timeout=``, ``max_retries=``, ...).

        >>> client = metis_env.openai_client(1)
        >>> client.chat.completions.create(model=metis_env.environ(1)["MODEL_NAME"], messages=[...])

    The key is read again when a sync or import rotates it, and a gateway token before it expires,
    so a notebook or a job running for days never sends a dead key. ``proxy=True``: the client goes
    through this host's broker instead (joined, or started: see ``metis-env proxy``), which holds the
    key and paces requests under the gateway's rate limit, as ``run --proxy`` does. Needs the openai package.
    """
    openai = _import_openai()
    if proxy:
        return _broker_client(openai.OpenAI, openai.DefaultHttpxClient, endpoint, model, dict(kwargs))
    return _build_client(openai.OpenAI, endpoint, model, dict(kwargs))


def async_openai_client(endpoint: Endpoint = None, model: str | None = None, proxy: bool = False, **kwargs: Any) -> openai.AsyncOpenAI:
    """``openai_client``, as an ``openai.AsyncOpenAI``."""
    openai = _import_openai()
    if proxy:
        return _broker_client(openai.AsyncOpenAI, openai.DefaultAsyncHttpxClient, endpoint, model, dict(kwargs))
    return _build_client(openai.AsyncOpenAI, endpoint, model, dict(kwargs), asynchronous=True)


def _broker_client(client_class: type, http_client_class: type, endpoint: Endpoint, model: str | None, kwargs: dict) -> Any:
    from .broker import launch

    settings = load_settings()
    selection = credentials.select(open_store(settings), _spec(endpoint), model, settings, "openai_client")
    info, _started = launch.join_or_start(settings, selection.endpoint.id, client_pid=os.getpid())
    kwargs.setdefault("base_url", info.url_for(selection.endpoint.id))
    kwargs.setdefault("api_key", info.local_key)
    kwargs.setdefault("http_client", http_client_class(trust_env=False))  # loopback: never through http_proxy
    return client_class(**kwargs)
