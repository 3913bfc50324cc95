"""The exception tree (drawn in the package docstring)."""

from __future__ import annotations


class MCPServerError(Exception):
    """Base class of every error the product raises on purpose.

    ``fix`` (what to send instead) and ``did_you_mean`` (the closest valid name), when the raiser
    knows them, reach the caller as keys of the error result, beside the message.
    """

    def __init__(self, *args: object, fix: str | None = None, did_you_mean: str | None = None) -> None:
        super().__init__(*args)
        self.fix = fix
        self.did_you_mean = did_you_mean


class InvalidRequestError(MCPServerError, ValueError):
    """The request is invalid and the caller can fix it."""


class ConflictError(InvalidRequestError):
    """The request clashes with other work on the same thing (it exists already, another job holds it)."""


class FailedPreconditionError(InvalidRequestError):
    """The named thing is not in the state this needs (a run not RUNNING, a search not finished)."""


class NotFoundError(MCPServerError, LookupError):
    """A named resource does not exist."""


class PermissionDeniedError(MCPServerError, PermissionError):
    """The principal is not allowed to do this."""

    def __init__(self, message: str = "permission denied") -> None:
        super().__init__(message)


class ResourceLimitError(MCPServerError):
    """A configured resource limit was exceeded."""


class ExecutionError(MCPServerError):
    """The requested work ran and failed."""


class TrackingUnavailableError(MCPServerError):
    """The tracking store could not be reached within the configured time."""


class ConfigurationError(MCPServerError):
    """The server configuration is invalid."""
