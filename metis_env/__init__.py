"""metis-env: ALCF Metis inference endpoint credentials, synced once, used from any shell, script or notebook.

    import metis_env

    metis_env.load(1)                     # OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME, ... in os.environ
    client = metis_env.openai_client(1)   # an openai.OpenAI, its key kept current

In IPython or Jupyter: ``%load_ext metis_env``, then ``%metis 1``. The names are imported on first use
(PEP 562), so that ``import metis_env`` and the command line's hot path stay cheap.

The package in layers, each importing only from its own layer or below (``tests/test_main.py`` holds it)::

    faces        main.py (console entry, stdlib fast path), cli.py + cli_options.py + cli_groups.py (click),
                 api.py, magic.py, llm_plugin.py
    commands/    export/get/run, import/list, sync/login/logout, config, status/check, doctor, hooks, kernel,
                 demo, proxy start/stop/status, store move; proxy.py (run --proxy)
    sources/     ssh/ (paramiko), gateway/ (login, discovery, probes); configure/ (AI tools' configs);
                 broker/ (the node broker's engine, used by commands/proxy.py, proxy.py and api.py)
    credentials  a stored endpoint -> its current key (the one place that asks a record's source);
                 selection.py: which endpoint and model
    store        endpoints.yaml records (the only writer) and the commit protocol
    settings     settings.py, keystore.py (keyring / keys.json), status_cache.py
    primitives   endpoint, render, files, http, check, records, variables, prompt, reporting, supervise, locks,
                 sources/gateway/globus.py (the only globus_sdk user)
    leaves       errors, paths, text, findings, alcf, structs, secret_service, coredump, reserved_variables,
                 noproxy
"""

__version__ = "0.1.0"

_API_NAMES = ("environ", "load", "unload", "openai_client", "async_openai_client")
_ERROR_NAMES = (
    "MetisEnvError",
    "UsageError",
    "NotFoundError",
    "EndpointFileError",
    "StoreUnavailableError",
    "StoreError",
    "ConnectionFailedError",
    "UnknownHostKeyError",
    "HostKeyChangedError",
    "AuthenticationError",
    "RemoteFilesError",
    "CheckUnauthorizedError",
    "CheckUnreachableError",
    "CheckTimeoutError",
    "CheckFailedError",
    "BusyError",
    "DoctorProblemsError",
    "LoginRequiredError",
    "ReauthRequiredError",
    "GatewayError",
    "NotLiveError",
    "ToolConfigError",
    "RateLimitedError",
    "IdentityNotAuthorizedError",
    "ServiceAccountError",
    "BrokerError",
    "Interrupted",
    "CommandNotFoundError",
)
"""The MetisEnvError family, importable from the package (``from metis_env import NotFoundError``)."""

__all__ = [*_API_NAMES, *_ERROR_NAMES, "load_ipython_extension"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import async_openai_client, environ, load, openai_client, unload
    from .errors import (
        AuthenticationError,
        BrokerError,
        BusyError,
        CheckFailedError,
        CheckTimeoutError,
        CheckUnauthorizedError,
        CheckUnreachableError,
        CommandNotFoundError,
        ConnectionFailedError,
        DoctorProblemsError,
        EndpointFileError,
        GatewayError,
        HostKeyChangedError,
        IdentityNotAuthorizedError,
        Interrupted,
        LoginRequiredError,
        MetisEnvError,
        NotFoundError,
        NotLiveError,
        RateLimitedError,
        ReauthRequiredError,
        RemoteFilesError,
        ServiceAccountError,
        StoreError,
        StoreUnavailableError,
        ToolConfigError,
        UnknownHostKeyError,
        UsageError,
    )


def __getattr__(name: str):
    if name in _API_NAMES:
        from . import api

        value = getattr(api, name)
    elif name in _ERROR_NAMES:
        from . import errors

        value = getattr(errors, name)
    else:
        raise AttributeError(f"module 'metis_env' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython) -> None:
    """``%load_ext metis_env``: registers the ``%metis`` line magic (see metis_env.magic)."""
    from .magic import register

    register(ipython)
