"""``ml_tool(permission=...)``: the cross-cutting wrappers every served tool gets, composed once.

Order, outermost first (fixed, so every tool behaves the same way):

0. the answer: an error mapped below leaves as a result, one JSON text with ``isError`` true
   (``tools.errors``), after monitoring has counted it as a failed call;
1. monitoring: counts the call, its latency and whether it failed (``tool.<name>`` in the metrics);
2. error mapping: turns the domain exception tree into error details (``ERROR_TABLE``: each
   class to one ``tools.errors.ErrorCode``);
3. permission check: the caller's principal (set by the transport, see ``tools.identity``) must
   hold ``permission``, else ``PermissionDeniedError`` (audited by ``mcp_server.rbac``);
4. attribution: MLflow runs the call creates name the tool (``mlflow.source.name``) and the
   principal (``mlflow.user``);
5. the result, a pydantic model, becomes one compact JSON text block.

Every layer uses ``functools.wraps`` and stays ``async``, so the SDK builds the tool's schema from
the real signature (no ``*args``/``**kwargs`` leak into ``inputSchema``). ``make_tool`` turns the
wrapped function into the SDK ``Tool`` the server lists.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import types
import typing
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from mcp_types import ToolAnnotations

from mcp_server import rbac
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
from mcp_server.mlflow_integration import recording_as
from mcp_server.monitoring import metrics
from tools.arguments import validation_error_detail
from tools.errors import ErrorCode, ToolErrorDetail

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ML_TOOL_ATTRIBUTE = "__ml_tool__"

# Reusable annotation sets: what a client may assume about a tool's side effects.
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
UPDATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)


@dataclass(frozen=True)
class ToolSpec:
    """What ``ml_tool`` declared about a tool; ``build_server`` refuses tools without one."""

    permission: rbac.Permission
    annotations: ToolAnnotations | None
    title: str | None


# --- the one mapping table: domain error -> what the client reads ----------------------------

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
            field = None if code is ErrorCode.PERMISSION_DENIED else field_named_in(message, fields)
            return ToolErrorDetail(code=code, message=message, field=field, error_id=error_id)
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


# --- the three layers ------------------------------------------------------------------------


def _monitored(fn: F, name: str) -> F:
    @functools.wraps(fn)
    async def monitored(*args: Any, **kwargs: Any) -> Any:
        with metrics.track(f"tool.{name}"):
            return await fn(*args, **kwargs)

    return monitored  # type: ignore[return-value]


class _ErrorResult(Exception):
    """Carries a mapped error out through monitoring (which counts it as failed) to ``_answered``."""

    def __init__(self, detail: ToolErrorDetail) -> None:
        super().__init__(detail.message)
        self.detail = detail


def _error_mapped(fn: F, name: str) -> F:
    fields: frozenset[str] | None = None

    @functools.wraps(fn)
    async def error_mapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal fields
        try:
            return await fn(*args, **kwargs)
        except MCPError:
            raise  # a protocol error stays one (the SDK answers it as a JSON-RPC error)
        except Exception as exc:
            if fields is None:
                fields = argument_fields(fn)  # on the first error, not at import: startup stays fast
            raise _ErrorResult(tool_error(exc, name, fields)) from exc

    return error_mapped  # type: ignore[return-value]


def _answered(fn: F) -> F:
    @functools.wraps(fn)
    async def answered(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except _ErrorResult as failed:
            # One compact JSON text with isError, as a result is one JSON text (tools.errors).
            return failed.detail.to_result()

    return answered  # type: ignore[return-value]


def _as_json(fn: F) -> F:
    @functools.wraps(fn)
    async def as_json(*args: Any, **kwargs: Any) -> Any:
        result = await fn(*args, **kwargs)
        if isinstance(result, pydantic.BaseModel) and not isinstance(result, CallToolResult):
            # One compact JSON text: what the model reads.
            return TextContent(type="text", text=result.model_dump_json())
        return result

    return as_json  # type: ignore[return-value]


def _attributed(fn: F, name: str) -> F:
    @functools.wraps(fn)
    async def attributed(*args: Any, **kwargs: Any) -> Any:
        # MLflow runs created by this call (in its worker threads too) name the tool as their source.
        with recording_as(source=f"nba-mcp {name}"):
            return await fn(*args, **kwargs)

    return attributed  # type: ignore[return-value]


def _permission_checked(fn: F, permission: rbac.Permission) -> F:
    # rbac.require_permission reads the principal the transport put in the context and audits.
    return rbac.require_permission(permission)(fn)


def ml_tool(
    *,
    permission: rbac.Permission,
    annotations: ToolAnnotations | None = None,
    title: str | None = None,
) -> Callable[[F], F]:
    """Wrap an async tool function with monitoring, error mapping and a permission check."""
    if not isinstance(permission, rbac.Permission):
        raise ConfigurationError(f"permission must be an rbac.Permission, got {permission!r}")

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            # A sync tool runs in a worker thread the client cannot interrupt.
            raise ConfigurationError(f"tool {fn.__name__} must be declared async def")
        name = fn.__name__
        wrapped = _answered(_monitored(_error_mapped(_permission_checked(_attributed(_as_json(fn), name), permission), name), name))
        setattr(wrapped, ML_TOOL_ATTRIBUTE, ToolSpec(permission, annotations, title))
        return wrapped

    return decorate


def tool_spec(fn: Callable[..., Any]) -> ToolSpec | None:
    """The ``ml_tool`` declaration on ``fn`` (only the outermost wrapper carries it)."""
    return fn.__dict__.get(ML_TOOL_ATTRIBUTE) if hasattr(fn, "__dict__") else None


def make_tool(fn: Callable[..., Any]) -> Tool:
    """The SDK ``Tool`` for an ``ml_tool`` function, as an agent should read it.

    - Results are one JSON text block (no output schema, no second structured copy): the model
      reads that text, and an output schema would triple what ``tools/list`` costs.
    - Unknown arguments are refused (``additionalProperties: false``): by default a misspelt
      option (``max_trial``) would silently fall back to its default.
    - Schemas carry no generated ``title`` keys (they repeat the property names).
    """
    spec = tool_spec(fn)
    if spec is None:
        raise ConfigurationError(
            f"every tool must declare a permission with ml_tool(permission=...); missing on: {fn.__name__}"
        )
    tool = Tool.from_function(
        fn,
        title=spec.title,
        # The docstring is the prompt the model reads: without its source indentation.
        description=inspect.cleandoc(fn.__doc__ or "") or None,
        annotations=spec.annotations,
        structured_output=False,
    )
    base = tool.fn_metadata.arg_model
    tool.fn_metadata.arg_model = type(
        base.__name__, (base,), {"model_config": {**base.model_config, "extra": "forbid"}, "__module__": base.__module__}
    )
    tool.parameters = compact_schema(tool.parameters) | {"additionalProperties": False}
    return tool


def compact_schema(schema: Any) -> Any:
    """``schema`` without pydantic's generated titles (values such as defaults are left as they are)."""
    if isinstance(schema, list):
        return [compact_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: value if key in _LITERAL_KEYS else compact_schema(value)
        for key, value in schema.items()
        if not (key == "title" and isinstance(value, str))
    }


_LITERAL_KEYS = frozenset({"default", "const", "enum", "examples"})
