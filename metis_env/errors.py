"""The MetisEnvError family and the exit codes, nothing else.

Every error a user can meet is one of these, raised with a one-line message that says what failed,
on what, and what to do next. The CLI turns them into ``metis-env: error: <message>`` on stderr and
the class's exit code, in one place (``metis_env.main``).
"""

from __future__ import annotations


class MetisEnvError(Exception):
    """Base class: something the user can fix, described in one line."""

    exit_code = 1


class UsageError(MetisEnvError):
    """The command line or a setting is not valid."""

    exit_code = 2


class NotFoundError(MetisEnvError):
    """The endpoint, model or stored data asked for does not exist."""

    exit_code = 3


class EndpointFileError(MetisEnvError):
    """An endpoint file cannot be parsed or fails validation."""

    exit_code = 4


class StoreUnavailableError(MetisEnvError):
    """No usable credential store: no keyring backend, or it is locked or not answering."""

    exit_code = 5


class StoreError(MetisEnvError):
    """The store exists but cannot be read or written safely (permissions, owner, a corrupt file)."""

    exit_code = 6


class ConnectionFailedError(MetisEnvError):
    """The login node could not be reached, or the connection broke or timed out."""

    exit_code = 7


class UnknownHostKeyError(MetisEnvError):
    """The login node's host key is not known and was not accepted."""

    exit_code = 8


class HostKeyChangedError(MetisEnvError):
    """The login node's host key differs from the one in known_hosts: possible man in the middle."""

    exit_code = 9


class AuthenticationError(MetisEnvError):
    """The login node refused the passcode (or every other method offered)."""

    exit_code = 10


class RemoteFilesError(MetisEnvError):
    """The login node has no usable endpoint files, or one of them is refused."""

    exit_code = 11


class CheckUnauthorizedError(MetisEnvError):
    """`check`: the endpoint refused the stored key (HTTP 401/403)."""

    exit_code = 12


class CheckUnreachableError(MetisEnvError):
    """`check`: the endpoint could not be reached (DNS, refused, TLS)."""

    exit_code = 13


class CheckTimeoutError(MetisEnvError):
    """`check`: the endpoint did not answer in time."""

    exit_code = 14


class CheckFailedError(MetisEnvError):
    """`check`: the endpoint answered, but not as an OpenAI-compatible server should."""

    exit_code = 15


class BusyError(MetisEnvError):
    """Another metis-env sync holds the lock."""

    exit_code = 16


class DoctorProblemsError(MetisEnvError):
    """`doctor` found at least one problem (each already printed with its fix)."""

    exit_code = 17


class LoginRequiredError(MetisEnvError):
    """The gateway needs a Globus login: none is stored, the token expired, or its refresh was refused."""

    exit_code = 18


class ReauthRequiredError(MetisEnvError):
    """The gateway's policy asks for a fresh Globus session (high-assurance re-authentication); no refresh cures it."""

    exit_code = 19


class GatewayError(MetisEnvError):
    """The ALCF gateway or Globus answered, but not as they should (HTML, 5xx, a JSON of the wrong shape)."""

    exit_code = 20


class NotLiveError(MetisEnvError):
    """`check`/`status`: the model is not live (queued, starting, offline) or the cluster is under maintenance."""

    exit_code = 21


class ToolConfigError(MetisEnvError):
    """`configure`: a tool's config file cannot be parsed, or is not ours to write (a symlink, another owner)."""

    exit_code = 22


class RateLimitedError(MetisEnvError):
    """The gateway answered 429: this user's shared rate or tokens-per-minute limit is used up for now."""

    exit_code = 23


class IdentityNotAuthorizedError(MetisEnvError):
    """The gateway refused the Globus identity's provider: log in with an ALCF or Argonne identity."""

    exit_code = 24


class ServiceAccountError(MetisEnvError):
    """A service-account login failed: Globus refused the client, or the gateway has not allow-listed it."""

    exit_code = 25


class BrokerError(MetisEnvError):
    """`proxy`: the node's broker could not be started, reached or stopped."""

    exit_code = 26


class Interrupted(MetisEnvError):
    """The user interrupted the command (Ctrl-C); nothing was changed."""

    exit_code = 130


EXIT_CODES = {
    cls.exit_code: cls
    for cls in (
        MetisEnvError,
        UsageError,
        NotFoundError,
        EndpointFileError,
        StoreUnavailableError,
        StoreError,
        ConnectionFailedError,
        UnknownHostKeyError,
        HostKeyChangedError,
        AuthenticationError,
        RemoteFilesError,
        CheckUnauthorizedError,
        CheckUnreachableError,
        CheckTimeoutError,
        CheckFailedError,
        BusyError,
        DoctorProblemsError,
        LoginRequiredError,
        ReauthRequiredError,
        GatewayError,
        NotLiveError,
        ToolConfigError,
        RateLimitedError,
        IdentityNotAuthorizedError,
        ServiceAccountError,
        BrokerError,
        Interrupted,
    )
}
"""Exit code -> class; docs/exit-codes.md's table is tested against this."""


class CommandNotFoundError(MetisEnvError):
    """`run`: the command to run was not found or cannot be executed."""

    exit_code = 127


EXIT_CODES[CommandNotFoundError.exit_code] = CommandNotFoundError
