"""The one table from the exception tree to error results: each class to one ``ErrorCode``.

``tool_error(exc, tool, fields)`` is what a failed tool call answers (``tools.registration`` wraps
every tool with it). Errors the caller can fix keep their message (it names the field, the rule and
the value) and, when the message starts with an argument of the tool, name that ``field``; a denial
says only "permission denied"; server-side trouble is recorded under an error id the answer quotes.
"""

from __future__ import annotations

import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Collection
from typing import Any

import pydantic
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server.error_handling import (
    ConfigurationError,
    ConflictError,
    ExecutionError,
    FailedPreconditionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
    TrackingUnavailableError,
    error_id_of,
    error_recorder,
)
from tools.arguments import validation_error_detail
from tools.errors import ErrorCode, ToolErrorDetail

logger = logging.getLogger(__name__)

_DENIED = "permission denied"


def _as_stated(exc: BaseException, _tool: str) -> tuple[str, str | None]:
    """The caller can fix it: our messages already name the field, the rule and the value."""
    return str(exc), None


def _denied(_exc: BaseException, _tool: str) -> tuple[str, str | None]:
    return _DENIED, None  # never say which permission or role was missing


def _error_id(exc: BaseException, tool: str) -> str:
    """The id ``exc`` was recorded under: the one ``handle_errors`` gave it, else a new record's."""
    return error_id_of(exc) or error_recorder.record(exc, context=f"tool {tool}").error_id


def _recorded(exc: BaseException, tool: str) -> tuple[str, str | None]:
    """Server-side trouble the caller cannot fix: recorded with an id, message kept short."""
    error_id = _error_id(exc, tool)
    logger.warning("tool %s failed [error id %s]: %s", tool, error_id, exc)
    return f"{exc} (error id {error_id})", error_id


def _unexpected(exc: BaseException, tool: str) -> tuple[str, str | None]:
    # ConfigurationError and anything outside the tree: details stay in the server log.
    error_id = _error_id(exc, tool)
    logger.error("unexpected error in tool %s [error id %s]", tool, error_id, exc_info=exc)
    kind = "server configuration error" if isinstance(exc, ConfigurationError) else "internal error"
    return f"{kind} while running {tool} (error id {error_id}); the details are in the server log", error_id


# Each row: the exception class, its error code, how its message is told. First match wins, so a
# subclass comes before its base. A plain ToolError is what a tool raises for failed work it waited
# for (a job that failed within the wait). A pydantic ValidationError (a domain model built from the
# arguments refused them) is invalid_argument with its fields (``tool_error``); anything else is internal.
ERROR_TABLE: tuple[tuple[type[BaseException], ErrorCode, Callable[[BaseException, str], tuple[str, str | None]]], ...] = (
    (PermissionDeniedError, ErrorCode.PERMISSION_DENIED, _denied),
    (ConflictError, ErrorCode.CONFLICT, _as_stated),
    (FailedPreconditionError, ErrorCode.FAILED_PRECONDITION, _as_stated),
    (InvalidRequestError, ErrorCode.INVALID_ARGUMENT, _as_stated),
    (NotFoundError, ErrorCode.NOT_FOUND, _as_stated),
    (ResourceLimitError, ErrorCode.LIMIT_EXCEEDED, _as_stated),
    (ExecutionError, ErrorCode.EXECUTION_FAILED, _recorded),
    (TrackingUnavailableError, ErrorCode.UNAVAILABLE, _recorded),
    (ToolError, ErrorCode.EXECUTION_FAILED, _as_stated),
)


def tool_error(exc: BaseException, tool: str, fields: Collection[str] = ()) -> ToolErrorDetail:
    """The error result for ``exc`` raised by ``tool`` (records server-side errors with an id).

    ``fields``: the tool's argument paths (``job_id``, ``request.cv_folds``); a message that starts
    with one of them names the field at fault (our messages do: "cv_folds must be between 2 and 20").
    """
    if isinstance(exc, pydantic.ValidationError):
        # A domain model built from tool arguments rejected them: field, rule and value, no URLs.
        return validation_error_detail(exc)
    for error_type, code, render in ERROR_TABLE:
        if isinstance(exc, error_type):
            message, error_id = render(exc, tool)
            if code is ErrorCode.PERMISSION_DENIED:
                return ToolErrorDetail(code=code, message=message)
            return ToolErrorDetail(code=code, message=message, field=field_named_in(message, fields), error_id=error_id,
                                   fix=getattr(exc, "fix", None), did_you_mean=getattr(exc, "did_you_mean", None))
    message, error_id = _unexpected(exc, tool)
    return ToolErrorDetail(code=ErrorCode.INTERNAL, message=message, error_id=error_id)


def tool_error_message(exc: BaseException, tool: str) -> str:
    """The client-facing message for ``exc`` raised by ``tool`` (records unexpected errors)."""
    return tool_error(exc, tool).message


_LEADING_NAME = re.compile(r"([A-Za-z_]\w*(?:\.\w+)*)(?=[\s=:]|$)")


def field_named_in(message: str, fields: Collection[str]) -> str | None:
    """The argument path ``message`` starts with ("cv_folds must be …" -> ``request.cv_folds``)."""
    match = _LEADING_NAME.match(message)
    if match is None:
        return None
    name = match.group(1)
    if name in fields:
        return name
    nested = sorted((f for f in fields if f.endswith("." + name)), key=lambda f: f.count("."))
    return nested[0] if nested else None


def argument_fields(fn: Callable[..., Any]) -> frozenset[str]:
    """The argument paths of a tool function: its parameters and, for a pydantic-model parameter,
    ``param.field`` (one level further for nested models: ``request.split.column``)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only costs the field hint
        hints = {}
    paths: set[str] = set()
    for name in inspect.signature(fn).parameters:
        if name in ("ctx", "context"):
            continue
        paths.add(name)
        for model in _models_in(hints.get(name)):
            for sub, info in model.model_fields.items():
                paths.add(f"{name}.{sub}")
                for inner in _models_in(info.annotation):
                    paths.update(f"{name}.{sub}.{leaf}" for leaf in inner.model_fields)
    return frozenset(paths)


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation stands for (through ``Annotated``, ``X | None`` and unions;
    not inside containers, whose items have no fixed path)."""
    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, pydantic.BaseModel) else []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []
