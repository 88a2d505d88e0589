"""An llm plugin (simonw/llm, entry point group ``llm``): every stored endpoint's models as
``metis-<id>/<model>``, asking metis-env for the current key at request time.

Installed with metis-env in llm's environment, it needs no ``llm keys set`` and no ``metis-env run``:

    metis-env login                      # or sync / import
    llm -m metis-metis/gpt-oss-120b 'hi'

Under ``metis-env run --proxy`` (and the node broker, which sets the same variables) the command's
``OPENAI_BASE_URL`` is a loopback proxy and ``OPENAI_API_KEY`` the proxy's local key: for the endpoint
named by ``METIS_ENV_ENDPOINT`` the plugin then sends to that proxy with that key, and never reads the
store. After ``metis-env configure llm ENDPOINT --proxy`` it sends every request of that endpoint
through this host's broker (joined, or started when none runs) with the broker's local key. Models
of the same ids that ``metis-env configure llm`` wrote into ``extra-openai-models.yaml``
are replaced by these (the same model, with the key asked for at request time).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import llm
from llm.default_plugins.openai_models import AsyncChat, Chat

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def on_loopback(url: str) -> bool:
    try:
        return urlsplit(url).hostname in LOOPBACK
    except ValueError:
        return False


def through_proxy(endpoint_id: str, environ=os.environ) -> tuple[str, str] | None:
    """(base URL, key) of the loopback proxy or broker this process was started under for
    ``endpoint_id``, or None when there is none."""
    base, key = environ.get("OPENAI_BASE_URL", ""), environ.get("OPENAI_API_KEY", "")
    if environ.get("METIS_ENV_ENDPOINT") != endpoint_id or not base or not key:
        return None
    return (base, key) if on_loopback(base) else None


def through_broker(endpoint_id: str) -> tuple[str, str] | None:
    """(base URL, local key) of this host's broker, joined or started, when ``metis-env configure llm
    ENDPOINT --proxy`` said so (configured.json); None otherwise."""
    from .configure.records import through_broker_for
    from .settings import load_settings

    settings = load_settings()
    if not through_broker_for(settings.config_dir, "llm", endpoint_id):
        return None
    from .broker import client

    return client.broker_url(settings, endpoint_id) + "/", client.local_key(settings, endpoint_id, client_pid=os.getpid())


def target(endpoint_id: str, model: str) -> tuple[str, str]:
    """(base URL, key) for one request: the proxy's this process was started under, else this host's
    broker when configured so, else the store's current ones."""
    proxied = through_proxy(endpoint_id) or through_broker(endpoint_id)
    if proxied:
        return proxied
    from . import api

    variables = api.environ(endpoint_id, model)
    return variables["OPENAI_BASE_URL"], variables["OPENAI_API_KEY"]


class _MetisModel:
    """Chat's request code, with the base URL and key chosen per request (see ``target``)."""

    endpoint_id = ""

    def get_client(self, key, *, async_=False):
        import openai

        base_url, current = target(self.endpoint_id, self.model_name)
        client_class = openai.AsyncOpenAI if async_ else openai.OpenAI
        extra = {}
        if on_loopback(base_url):  # a proxy or the broker: never through the user's HTTP proxy (ALCF's no_proxy lacks 127.0.0.1)
            extra["http_client"] = (openai.DefaultAsyncHttpxClient if async_ else openai.DefaultHttpxClient)(trust_env=False)
        return client_class(base_url=base_url, api_key=key or current, default_headers=self.headers, **extra)


class MetisChat(_MetisModel, Chat):
    needs_key = None


class AsyncMetisChat(_MetisModel, AsyncChat):
    needs_key = None


def tool_calling(endpoint, model: str) -> bool:
    """Whether the gateway said the model calls tools (``extra.capabilities``); False when unsaid."""
    said = (endpoint.extra or {}).get("capabilities", {})
    said = said.get(model) if isinstance(said, dict) else None
    flag = said.get("tool_calling") if isinstance(said, dict) else None
    return (flag.get("supported") if isinstance(flag, dict) else flag) is True


def models_of(endpoint) -> list:
    """(sync, async) models for each model of a stored endpoint."""
    out = []
    for name in endpoint.models:
        pair = []
        for klass in (MetisChat, AsyncMetisChat):
            model = klass(model_id=f"metis-{endpoint.id}/{name}", model_name=name, api_base=endpoint.base_url, can_stream=True,
                          supports_tools=tool_calling(endpoint, name))
            model.endpoint_id = endpoint.id
            pair.append(model)
        out.append(pair)
    return out


def stored_endpoints() -> list:
    from .errors import MetisEnvError
    from .settings import load_settings
    from .store import open_store

    try:
        return list(open_store(load_settings()).endpoints().values())
    except (MetisEnvError, OSError, ValueError):
        # llm loads every plugin for every command: an unreadable store must not break `llm` itself
        return []


@llm.hookimpl(trylast=True)
def register_models(register, model_aliases):
    ours = [pair for endpoint in stored_endpoints() for pair in models_of(endpoint)]
    ids = {sync.model_id for sync, _async in ours}
    model_aliases[:] = [m for m in model_aliases if m.model.model_id not in ids]
    for sync, asynchronous in ours:
        register(sync, asynchronous)
