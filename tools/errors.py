"""Tool errors in the shape of results: one compact JSON text, ``isError`` true.

Every tool answers one JSON text, and so does every failed call::

    {"error": {"code": "invalid_argument", "message": "invalid arguments: request.max_trial: unknown
     field; did you mean 'max_trials'?", "field": "request.max_trial", "did_you_mean": "max_trials"}}

``code`` is one of ``ErrorCode`` (the README lists them): a client branches on it, a model reads
``message`` (the same words as before the shape existed). The other keys appear only when known:
``field`` (the argument at fault, as a path into the arguments), ``did_you_mean`` (the closest valid
name or choice), ``fix`` (what to send instead), ``error_id`` (quote it: the server log has the
details), ``problems`` (each problem, when the arguments have several).

Who builds them: ``tools.arguments`` (arguments that do not validate, unknown tools) and
``tools.error_table`` (the exception tree, in one table, for every tool ``ml_tool`` wraps). ``ErrorShape`` is the net under both:
an error result the SDK made itself (a crash outside our wrappers) is put in the same shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict

from mcp_server.error_handling import new_error_id

logger = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """The error codes of tool results: a small set that stays stable (the README has the table)."""

    INVALID_ARGUMENT = "invalid_argument"  # an argument breaks a rule: fix it and call again
    NOT_FOUND = "not_found"  # a named dataset, run, model, job or tool does not exist
    PERMISSION_DENIED = "permission_denied"  # the caller's role does not allow this tool
    CONFLICT = "conflict"  # it clashes with other work: exists already, held by another job
    FAILED_PRECONDITION = "failed_precondition"  # the named thing is not in the state this needs
    LIMIT_EXCEEDED = "limit_exceeded"  # a configured limit (rows, grid size, jobs per principal)
    EXECUTION_FAILED = "execution_failed"  # the work ran and failed (a job, a stage)
    UNAVAILABLE = "unavailable"  # the tracking store did not answer in time: retry later
    INTERNAL = "internal"  # a server fault: quote error_id, the details are in the server log


class ArgumentProblem(BaseModel):
    """One problem with the arguments of a call."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str
    did_you_mean: str | None = None
    fix: str | None = None


class ToolErrorDetail(BaseModel):
    """What an error result says, under ``"error"``."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    field: str | None = None
    did_you_mean: str | None = None
    fix: str | None = None
    error_id: str | None = None
    problems: list[ArgumentProblem] | None = None

    def to_text(self) -> str:
        return json.dumps({"error": self.model_dump(mode="json", exclude_none=True)}, ensure_ascii=False,
                          separators=(",", ":"))

    def to_result(self) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=self.to_text())], is_error=True)


def error_detail_of(result: Any) -> dict[str, Any] | None:
    """The ``error`` object of an error result in our shape (a ``CallToolResult`` or its wire dict),
    else None."""
    content = result.get("content") if isinstance(result, Mapping) else getattr(result, "content", None)
    if not content:
        return None
    first = content[0]
    text = first.get("text") if isinstance(first, Mapping) else getattr(first, "text", None)
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) and "code" in error and "message" in error else None


def _is_error(result: Any) -> bool:
    if isinstance(result, CallToolResult):
        return bool(result.is_error)
    return isinstance(result, Mapping) and bool(result.get("isError") or result.get("is_error"))


class ErrorShape:
    """Server middleware, outermost of ours: an error result of ``tools/call`` not in our shape yet
    (the SDK's own, e.g. a return value it could not convert) is answered in it, as ``internal``."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not _is_error(result) or error_detail_of(result) is not None:
            return result
        content = result.get("content") if isinstance(result, Mapping) else result.content
        first = content[0] if content else None
        text = (first.get("text") if isinstance(first, Mapping) else getattr(first, "text", None)) or "tool failed"
        error_id = new_error_id()
        logger.warning("tool call failed outside the tool wrappers [error id %s]: %s", error_id, text)
        return ToolErrorDetail(code=ErrorCode.INTERNAL, message=f"{text} (error id {error_id})",
                               error_id=error_id).to_result()
