"""Errors of the product: one exception tree, and the helpers that record, notify and retry.

    MCPServerError                      base of everything we raise on purpose
    ├── InvalidRequestError (ValueError)    the caller can fix it: names the field, the rule, the value
    ├── NotFoundError (LookupError)         a named dataset, run, model or job does not exist
    ├── PermissionDeniedError (PermissionError)  the principal may not do this (message never leaks more)
    ├── ResourceLimitError                  a configured limit (rows, bytes, grid size, jobs) was exceeded
    ├── ExecutionError                      the work itself failed (training raised, a stage failed)
    ├── TrackingUnavailableError            the MLflow tracking store cannot be reached in time
    └── ConfigurationError                  the server's own configuration is wrong

The MCP layer maps this tree to tool errors in one table; anything outside it is "unexpected".
"""

from __future__ import annotations


class MCPServerError(Exception):
    """Base class of every error the product raises on purpose."""


class InvalidRequestError(MCPServerError, ValueError):
    """The request is invalid and the caller can fix it."""


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
