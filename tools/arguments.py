"""Tool arguments checked before a tool runs, with errors an agent fixes in one try.

The SDK would answer a bad call with pydantic's text (a line per error, a documentation URL on
each). ``ArgumentCheck`` validates the arguments first, against the same argument model, and
answers with one line per problem that names the field, the rule and the value, and says what
would be accepted: the closest field or choice ("did you mean"), the expected form of a search
space, or the wrapped form of arguments passed flat instead of inside ``request``.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pydantic
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server.error_handling import error_recorder
from tools.errors import ArgumentProblem, ErrorCode, ToolErrorDetail

logger = logging.getLogger(__name__)

# Names agents reach for that mean one of ours (tools/list shows ours; these are not aliases).
SYNONYMS = {
    "n_trials": "max_trials", "n_iter": "max_trials", "trials": "max_trials", "budget": "max_trials",
    "n_calls": "max_trials", "folds": "cv_folds", "cv": "cv_folds", "n_folds": "cv_folds",
    "metric": "scoring", "model": "estimator", "algorithm": "estimator", "timeout": "timeout_seconds",
    "drop_columns": "drop", "exclude": "drop", "exclude_columns": "drop", "label": "target",
    "target_column": "target", "columns": "features", "param_space": "space", "search_space": "space",
    "params_grid": "space", "param_grid": "space", "hyperparameters": "params", "random_state": "seed",
    "wait": "wait_seconds", "name": "model_name", "version_number": "version",
}
SPACE_FORM = (
    '{"max_depth": {"type": "int", "low": 2, "high": 12}, "learning_rate": {"type": "float", "low": 0.01, '
    '"high": 0.3, "log": true}, "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]}}'
)
MAX_SHOWN = 300  # characters of a rejected value shown back


def describe_validation_error(exc: pydantic.ValidationError, *, schema: Mapping[str, Any] | None = None,
                              arguments: Mapping[str, Any] | None = None, tool: str | None = None) -> str:
    """One line per problem: field, rule, value and, where we can tell, what to send instead."""
    return validation_error_detail(exc, schema=schema, arguments=arguments, tool=tool).message


def validation_error_detail(exc: pydantic.ValidationError, *, schema: Mapping[str, Any] | None = None,
                            arguments: Mapping[str, Any] | None = None, tool: str | None = None) -> ToolErrorDetail:
    """The error result for arguments that do not validate: the message of
    ``describe_validation_error``, and its field, did-you-mean and fix as keys of their own."""
    errors = exc.errors(include_url=False)
    flat = _flat_hint(errors, schema, arguments, tool)
    if flat is not None:
        return ToolErrorDetail(code=ErrorCode.INVALID_ARGUMENT, message="invalid arguments: " + flat.message,
                               field=flat.field, fix=flat.fix)
    problems = list({p.message: p for p in (_describe(err, schema) for err in errors)}.values())
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
    suggestion = _suggestion(name, known)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return ToolErrorDetail(code=ErrorCode.NOT_FOUND, message=f"Unknown tool: {name}{hint}", field="name",
                           did_you_mean=suggestion, fix=None if suggestion else f"tools/list shows the {len(known)} tools")


def _describe(err: Mapping[str, Any], schema: Mapping[str, Any] | None) -> ArgumentProblem:
    loc = [part for part in err["loc"] if not isinstance(part, str) or not _is_union_tag(part)]
    field = ".".join(str(part) for part in loc) or "arguments"
    value = _shown(err.get("input"))
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(loc) == 2 and loc[-1] in _allowed_fields(schema, []):
            return ArgumentProblem(field=field, message=f"{field}: {loc[-1]!r} goes beside 'request', not inside it",
                                   fix=f"move {loc[-1]!r} out of 'request'")
        allowed = _allowed_fields(schema, loc[:-1])
        suggestion = _suggestion(str(loc[-1]), allowed)
        options = _options(allowed) if suggestion is None else None
        return ArgumentProblem(field=field, message=f"{field}: unknown field{_hint(suggestion, options)}",
                               did_you_mean=suggestion, fix=options and f"expected one of: {options}")
    if kind in ("literal_error", "enum"):
        choices = _choices(err)
        suggestion = _suggestion(err.get("input"), choices)
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


class _FlatCall(NamedTuple):
    message: str
    field: str
    fix: str


def _flat_hint(errors: Sequence[Mapping[str, Any]], schema: Mapping[str, Any] | None,
               arguments: Mapping[str, Any] | None, tool: str | None) -> _FlatCall | None:
    """Arguments meant for ``request`` given beside it: answer with the call as it should be."""
    if schema is None or not arguments or "request" not in schema.get("properties", {}):
        return None
    top = set(schema["properties"])
    request_fields = _allowed_fields(schema, ["request"])
    strays = {k: v for k, v in arguments.items() if k not in top and k in request_fields}
    if not strays:
        return None
    request = {**(arguments.get("request") or {}), **strays}
    fixed = {"request": request, **{k: v for k, v in arguments.items() if k in top and k != "request"}}
    fix = f"call {tool or 'the tool'} with {_shown(fixed, limit=600)}"
    return _FlatCall(f"{', '.join(strays)} belong inside 'request'; {fix}", next(iter(strays)), fix)


def _allowed_fields(schema: Mapping[str, Any] | None, loc: Sequence[Any]) -> list[str]:
    node = _resolve(schema, schema)
    for part in loc:
        if node is None:
            return []
        if isinstance(part, int):
            node = _resolve(schema, node.get("items"))
        elif "properties" in node and part in node["properties"]:
            node = _resolve(schema, node["properties"][part])
        else:
            node = _resolve(schema, node.get("additionalProperties"))
    return list((node or {}).get("properties", {}))


def _resolve(root: Mapping[str, Any] | None, node: Any) -> Mapping[str, Any] | None:
    """Follow ``$ref`` and pick the object member of ``anyOf`` (``X | None`` fields)."""
    for _ in range(10):
        if not isinstance(node, Mapping) or root is None:
            return None
        if "$ref" in node:
            node = root.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1])
        elif "anyOf" in node:
            node = next((m for m in node["anyOf"] if isinstance(m, Mapping) and m.get("type") != "null"), None)
        else:
            return node
    return None


def _suggestion(given: Any, options: Sequence[Any]) -> str | None:
    """The option ``given`` most likely meant: same but case, a known synonym, else a close spelling."""
    names = [str(o) for o in options]
    if not isinstance(given, str):
        return None
    same_but_case = [n for n in names if n.lower() == given.lower()]
    if same_but_case:
        return same_but_case[0]
    if SYNONYMS.get(given) in names:
        return SYNONYMS[given]
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _options(options: Sequence[Any]) -> str | None:
    names = [str(o) for o in options]
    return ", ".join(names) if names and len(names) <= 40 else None


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


def _shown(value: Any, limit: int = MAX_SHOWN) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ArgumentCheck:
    """Server middleware: a ``tools/call`` naming no served tool, or whose arguments do not
    validate, is answered here (an error result in the shape of ``tools.errors``)."""

    def __init__(self, tools: Mapping[str, Any]) -> None:
        self._tools = tools  # name -> SDK Tool

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
                    detail = validation_error_detail(exc, schema=tool.parameters, arguments=arguments, tool=tool.name)
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
