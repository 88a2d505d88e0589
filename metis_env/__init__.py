"""metis-env: ALCF Metis inference endpoint credentials, synced once, used from any shell, script or notebook.

    import metis_env

    metis_env.load(1)                     # OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME, ... in os.environ
    client = metis_env.openai_client(1)   # an openai.OpenAI, its key kept current

In IPython or Jupyter: ``%load_ext metis_env``, then ``%metis 1``. The names are imported on first use
(PEP 562), so that ``import metis_env`` and the command line's hot path stay cheap.
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
