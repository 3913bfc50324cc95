"""Errors of the product: one exception tree, and the helpers that record, notify and retry.

    MCPServerError                      base of everything we raise on purpose
    ├── InvalidRequestError (ValueError)    the caller can fix it: names the field, the rule, the value
    │   ├── ConflictError                   it clashes with other work (exists already, held by another job)
    │   └── FailedPreconditionError         the named thing is not in the state this needs (run not RUNNING)
    ├── NotFoundError (LookupError)         a named dataset, run, model or job does not exist
    ├── PermissionDeniedError (PermissionError)  the principal may not do this (message never leaks more)
    ├── ResourceLimitError                  a configured limit (rows, bytes, grid size, jobs) was exceeded
    ├── ExecutionError                      the work itself failed (training raised, a stage failed)
    ├── TrackingUnavailableError            the MLflow tracking store cannot be reached in time
    └── ConfigurationError                  the server's own configuration is wrong

The MCP layer maps this tree to tool errors in one table (each class to one error code, see
``tools.errors``); anything outside it is "unexpected".

Helpers (all work on sync and async functions and keep the wrapped signature):

- ``handle_errors`` records an error (per-type counts, a bounded ring of ``ErrorRecord`` with an
  error id), logs it with that id, optionally notifies (log + webhook) and re-raises or returns None.
- ``ErrorRecorder`` / ``error_recorder`` and ``ErrorNotifier`` / ``error_notifier`` are the state
  behind it; ``configure_error_handling(settings)`` applies the webhook and ring size.
- ``retry`` / ``call_with_retry`` retry transient failures with exponential backoff and jitter.
"""

from __future__ import annotations

from mcp_server.error_handling._decorator import handle_errors
from mcp_server.error_handling._exceptions import (
    ConfigurationError,
    ConflictError,
    ExecutionError,
    FailedPreconditionError,
    InvalidRequestError,
    MCPServerError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
    TrackingUnavailableError,
)
from mcp_server.error_handling._recording import (
    ErrorNotifier,
    ErrorRecord,
    ErrorRecorder,
    configure_error_handling,
    error_id_of,
    error_notifier,
    error_recorder,
    new_error_id,
    reset_error_handling,
)
from mcp_server.error_handling._retry import (
    DEFAULT_RETRY_ON,
    backoff_delay,
    call_with_retry,
    retry,
)

__all__ = [
    "DEFAULT_RETRY_ON",
    "ConfigurationError",
    "ConflictError",
    "ErrorNotifier",
    "ErrorRecord",
    "ErrorRecorder",
    "ExecutionError",
    "FailedPreconditionError",
    "InvalidRequestError",
    "MCPServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceLimitError",
    "TrackingUnavailableError",
    "backoff_delay",
    "call_with_retry",
    "configure_error_handling",
    "error_id_of",
    "error_notifier",
    "error_recorder",
    "handle_errors",
    "new_error_id",
    "reset_error_handling",
    "retry",
]
