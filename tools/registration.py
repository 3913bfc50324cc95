"""``ml_tool(permission=...)``: the cross-cutting wrappers every served tool gets, composed once.

Order, outermost first (fixed, so every tool behaves the same way):

0. the answer: an error mapped below leaves as a result, one JSON text with ``isError`` true
   (``tools.errors``), after monitoring has counted it as a failed call;
1. monitoring: counts the call, its latency and whether it failed (``tool.<name>`` in the metrics);
2. error mapping: turns the domain exception tree into error details (``tools.error_table``:
   each class to one ``tools.errors.ErrorCode``);
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic
from mcp.shared.exceptions import MCPError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from mcp_types import ToolAnnotations

from mcp_server import rbac
from mcp_server.error_handling import ConfigurationError
from mcp_server.mlflow_integration import recording_as
from mcp_server.monitoring import metrics
from tools.error_table import argument_fields, tool_error
from tools.errors import ToolErrorDetail

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
