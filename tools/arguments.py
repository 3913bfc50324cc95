"""Tool arguments checked before a tool runs, with errors an agent fixes in one try.

The SDK would answer a bad call with pydantic's text (a line per error, a documentation URL on
each). ``ArgumentCheck`` validates the arguments first, against the same argument model, and
answers with one line per problem that names the field, the rule and the value, and says what
would be accepted: the closest field or choice ("did you mean"), the expected form of a search
space, or the wrapped form of arguments passed flat instead of inside ``request``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import pydantic
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server import rbac
from mcp_server.error_handling import error_recorder
from mcp_server.field_aliases import FIELD_ALIASES
from tools.argument_names import allowed_fields, closest_name, options_text, shown
from tools.errors import ArgumentProblem, ErrorCode, ToolErrorDetail

logger = logging.getLogger(__name__)

SPACE_FORM = (
    '{"max_depth": {"type": "int", "low": 2, "high": 12}, "learning_rate": {"type": "float", "low": 0.01, '
    '"high": 0.3, "log": true}, "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]}}'
)
DATE_HINT_SECONDS = 2.0  # at most this long to find a data set's date columns for a split's example


def describe_validation_error(exc: pydantic.ValidationError, *, schema: Mapping[str, Any] | None = None,
                              arguments: Mapping[str, Any] | None = None, tool: str | None = None) -> str:
    """One line per problem: field, rule, value and, where we can tell, what to send instead."""
    return validation_error_detail(exc, schema=schema, arguments=arguments, tool=tool).message


def validation_error_detail(exc: pydantic.ValidationError, *, schema: Mapping[str, Any] | None = None,
                            arguments: Mapping[str, Any] | None = None, tool: str | None = None,
                            date_columns: Sequence[str] = ()) -> ToolErrorDetail:
    """The error result for arguments that do not validate: the message of
    ``describe_validation_error``, and its field, did-you-mean and fix as keys of their own.

    ``date_columns``: the named data set's date columns, shown in the example of a time split."""
    errors = exc.errors(include_url=False)
    flat = _flat_detail(schema, arguments, tool)
    if flat is not None:
        return flat
    problems = list({p.message: p for p in (_describe(err, schema, date_columns) for err in errors)}.values())
    return ToolErrorDetail(
        code=ErrorCode.INVALID_ARGUMENT,
        message="invalid arguments: " + "; ".join(p.message for p in problems),
        field=problems[0].field if problems else None,
        did_you_mean=next((p.did_you_mean for p in problems if p.did_you_mean), None),
        fix=next((p.fix for p in problems if p.fix), None),
        problems=problems if len(problems) > 1 else None,
    )


def unknown_tool_detail(name: Any, known: Sequence[str]) -> ToolErrorDetail:
    """A call to a tool this server does not serve: the closest name, else the list."""
    suggestion = closest_name(name, known)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return ToolErrorDetail(code=ErrorCode.NOT_FOUND, message=f"Unknown tool: {name}{hint}", field="name",
                           did_you_mean=suggestion, fix=None if suggestion else f"tools/list shows the {len(known)} tools")


def _describe(err: Mapping[str, Any], schema: Mapping[str, Any] | None, date_columns: Sequence[str] = ()) -> ArgumentProblem:
    loc = [part for part in err["loc"] if not isinstance(part, str) or not _is_union_tag(part)]
    field = ".".join(str(part) for part in loc) or "arguments"
    value = shown(err.get("input"))
    kind = err["type"]
    if loc and loc[-1] == "split" and (kind in ("model_type", "dict_type", "model_attributes_type")
                                       or err["msg"].startswith(("split.column is required", "Value error, split.column is required"))):
        example = split_example(err.get("input"), date_columns)
        others = f" (date columns: {', '.join(map(repr, date_columns))})" if len(date_columns) > 1 else ""
        return ArgumentProblem(field=field, fix=f"split={example}",
                               message=f"{field}: got {value}; a split is an object with its kind and, for group "
                                       f"and time, its column, e.g. split={example}{others}")
    if kind == "extra_forbidden":
        if len(loc) == 2 and loc[-1] in allowed_fields(schema, []):
            return ArgumentProblem(field=field, message=f"{field}: {loc[-1]!r} goes beside 'request', not inside it",
                                   fix=f"move {loc[-1]!r} out of 'request'")
        allowed = allowed_fields(schema, loc[:-1])
        suggestion = closest_name(str(loc[-1]), allowed)
        options = options_text(allowed) if suggestion is None else None
        return ArgumentProblem(field=field, message=f"{field}: unknown field{_hint(suggestion, options)}",
                               did_you_mean=suggestion, fix=options and f"expected one of: {options}")
    if kind in ("literal_error", "enum"):
        choices = _choices(err)
        suggestion = closest_name(err.get("input"), choices)
        return ArgumentProblem(
            field=field, did_you_mean=suggestion,
            message=f"{field}: {value} is not one of {', '.join(map(repr, choices))}{_hint(suggestion, None)}",
        )
    if "space" in loc and (kind in ("dict_type", "model_type", "model_attributes_type") or kind.startswith("union_tag")):
        fix = f"a space maps each hyperparameter to its range, e.g. {SPACE_FORM}"
        return ArgumentProblem(field=field, message=f"{field}: got {value}; {fix}", fix=fix)
    if kind == "missing":
        return ArgumentProblem(field=field, message=f"{field}: required")
    return ArgumentProblem(field=field, message=f"{field}: {err['msg'].rstrip('.')} (got {value})")


SPLIT_COLUMN_PLACEHOLDER = {"time": "<a date column>", "group": "<the column naming each group, e.g. a player id>"}


def split_example(given: Any, date_columns: Sequence[str] = ()) -> str:
    """A complete split for the kind ``given`` asks for (a kind name, or an object with ``kind``):
    with its column, the data set's first date column for a time split when one is known."""
    kind = given.get("kind") if isinstance(given, Mapping) else given
    kind = kind.strip().lower() if isinstance(kind, str) else "time"
    if kind not in ("kfold", "group", "time"):
        kind = closest_name(kind, ["kfold", "group", "time"]) or "time"
    rest = {k: v for k, v in given.items() if k not in ("kind", "column")} if isinstance(given, Mapping) else {}
    if kind == "kfold":
        return json.dumps({"kind": "kfold", **(rest or {"test_size": 0.2})})
    column = date_columns[0] if kind == "time" and date_columns else SPLIT_COLUMN_PLACEHOLDER[kind]
    return json.dumps({"kind": kind, "column": column, **rest})  # the caller's other keys kept


MAX_FIXED_CALL = 8000  # characters: a fixed call is shown whole (a cut one could not be sent back)


def _flat_detail(schema: Mapping[str, Any] | None, arguments: Mapping[str, Any] | None,
                 tool: str | None) -> ToolErrorDetail | None:
    """Arguments beside ``request`` that are not the tool's own (request fields given flat, a
    misspelt option): answer with the whole call as it should be. Every key is kept: a request
    field moves inside ``request``, a name we know another word for (``n_trials``) is renamed to
    it and said so, a name we cannot place stays inside ``request`` and is named as unknown."""
    if schema is None or not arguments or "request" not in schema.get("properties", {}):
        return None
    top = set(schema["properties"])
    outside = {k: v for k, v in arguments.items() if k not in top}
    if not outside:
        return None
    given_request = arguments.get("request")
    if given_request is not None and not isinstance(given_request, Mapping):
        return None  # a request that is not an object: the field-by-field answer says so
    request_fields = allowed_fields(schema, ["request"])
    known = set(request_fields) | {alias for f in request_fields for alias in FIELD_ALIASES.get(f, ())}
    request = dict(given_request or {})
    fixed_top = {k: v for k, v in arguments.items() if k in top and k != "request"}
    moved: list[str] = []
    renamed: dict[str, str] = {}
    unknown: list[str] = []
    misplaced = [(k, request.pop(k)) for k in list(request) if k not in known]
    for key, value in [*outside.items(), *misplaced]:
        in_request = closest_name(key, request_fields)
        in_top = closest_name(key, sorted(top - {"request"}))
        if key in known:
            request[key] = value
            moved.append(key)
        elif key in top and key not in fixed_top:
            fixed_top[key] = value
            renamed[key] = key  # an option of the call given inside request
        elif in_request is not None and in_request not in request:
            request[in_request] = value
            renamed[key] = f"request.{in_request}"
        elif in_top is not None and in_top not in fixed_top:
            fixed_top[in_top] = value
            renamed[key] = in_top
        else:
            request[key] = value  # kept: the caller meant something by it, and the next answer names it
            unknown.append(key)
    fixed = {"request": request, **fixed_top}
    parts = []
    if moved:
        parts.append(f"{', '.join(moved)} {'belongs' if len(moved) == 1 else 'belong'} inside 'request'")
    parts += [f"{key!r} goes beside 'request', not inside it" if key == to else
              f"{key} is not a field: did you mean {to.rsplit('.', 1)[-1]!r}? (renamed in the call below)"
              for key, to in renamed.items()]
    if unknown:
        options = options_text(request_fields)
        parts.append(f"{', '.join(unknown)}: unknown field (kept inside 'request'; rename or remove it"
                     + (f"; fields: {options})" if options else ")"))
    fix = f"call {tool or 'the tool'} with {shown(fixed, limit=MAX_FIXED_CALL)}"
    problems = ([ArgumentProblem(field=k, message=f"{k}: belongs inside 'request'", fix=f"request.{k}") for k in moved]
                + [ArgumentProblem(field=f"request.{k}", message=f"request.{k}: goes beside 'request'", fix=k)
                   if k == to else
                   ArgumentProblem(field=k, message=f"{k}: unknown field; did you mean {to.rsplit('.', 1)[-1]!r}?",
                                   did_you_mean=to.rsplit(".", 1)[-1]) for k, to in renamed.items()]
                + [ArgumentProblem(field=k, message=f"{k}: unknown field") for k in unknown])
    return ToolErrorDetail(
        code=ErrorCode.INVALID_ARGUMENT, message="invalid arguments: " + "; ".join(parts) + "; " + fix,
        field=problems[0].field, fix=fix,
        did_you_mean=next((p.did_you_mean for p in problems if p.did_you_mean), None),
        problems=problems if len(problems) > 1 else None,
    )


def _hint(suggestion: str | None, options: str | None) -> str:
    if suggestion is not None:
        return f"; did you mean {suggestion!r}?"
    return f"; expected one of: {options}" if options else ""


def _choices(err: Mapping[str, Any]) -> list[Any]:
    ctx = err.get("ctx") or {}
    expected = ctx.get("expected", "")
    return [part.strip().strip("'\"") for part in expected.replace(" or ", ", ").split(",") if part.strip()]


def _is_union_tag(part: str) -> bool:
    # pydantic puts the tried member of a union in the location: 'function-after[...]', 'int', 'str'...
    return "[" in part or part in {"int", "float", "str", "bool", "none", "constrained-str", "constrained-int"}


class ArgumentCheck:
    """Server middleware: a ``tools/call`` naming no served tool, or whose arguments do not
    validate, is answered here (an error result in the shape of ``tools.errors``)."""

    def __init__(self, tools: Mapping[str, Any], *, date_columns: Callable[[str], list[str]] | None = None) -> None:
        self._tools = tools  # name -> SDK Tool
        self._date_columns = date_columns  # data set name -> its date columns (blocking; run in a thread)

    async def _split_hint_columns(self, exc: pydantic.ValidationError, arguments: Mapping[str, Any]) -> list[str]:
        """The named data set's date columns, when a split is at fault and the caller may read data
        sets (the hint is a read); none after DATE_HINT_SECONDS: the answer must not wait on a load."""
        request = arguments.get("request")
        dataset = request.get("dataset") if isinstance(request, Mapping) else None
        if (self._date_columns is None or not isinstance(dataset, str)
                or not any(err["loc"] and err["loc"][-1] == "split" for err in exc.errors())
                or not rbac.authorize(rbac.current_principal(), rbac.Permission.READ)):
            return []
        with anyio.move_on_after(DATE_HINT_SECONDS):
            return await anyio.to_thread.run_sync(self._date_columns, dataset, abandon_on_cancel=True)
        return []

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            name = ctx.params.get("name")
            tool = self._tools.get(name)
            arguments = ctx.params.get("arguments") or {}
            if tool is None:
                return unknown_tool_detail(name, list(self._tools)).to_result()
            if isinstance(arguments, Mapping):
                try:
                    tool.fn_metadata.validate_arguments(dict(arguments))
                except pydantic.ValidationError as exc:
                    detail = validation_error_detail(exc, schema=tool.parameters, arguments=arguments, tool=tool.name,
                                                     date_columns=await self._split_hint_columns(exc, arguments))
                    return detail.to_result()
                except Exception as exc:  # noqa: BLE001 - a validator that crashed: a server fault, with an id
                    error_id = error_recorder.record(exc, context=f"arguments of {tool.name}").error_id
                    logger.error("checking the arguments of %s crashed [error id %s]", tool.name, error_id, exc_info=exc)
                    return ToolErrorDetail(
                        code=ErrorCode.INTERNAL, error_id=error_id,
                        message=f"internal error while checking the arguments of {tool.name} (error id {error_id}); "
                                "the details are in the server log",
                    ).to_result()
        return await call_next(ctx)
