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
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent

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
    errors = exc.errors(include_url=False)
    flat = _flat_hint(errors, schema, arguments, tool)
    if flat is not None:
        return flat
    problems = list(dict.fromkeys(_describe(err, schema) for err in errors))
    return "invalid arguments: " + "; ".join(problems)


def _describe(err: Mapping[str, Any], schema: Mapping[str, Any] | None) -> str:
    loc = [part for part in err["loc"] if not isinstance(part, str) or not _is_union_tag(part)]
    field = ".".join(str(part) for part in loc) or "arguments"
    value = _shown(err.get("input"))
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(loc) == 2 and loc[-1] in _allowed_fields(schema, []):
            return f"{field}: {loc[-1]!r} goes beside 'request', not inside it"
        allowed = _allowed_fields(schema, loc[:-1])
        return f"{field}: unknown field{_did_you_mean(str(loc[-1]), allowed)}"
    if kind in ("literal_error", "enum"):
        choices = _choices(err)
        hint = _did_you_mean(err.get("input"), choices, list_options=False)
        return f"{field}: {value} is not one of {', '.join(map(repr, choices))}{hint}"
    if "space" in loc and (kind in ("dict_type", "model_type", "model_attributes_type") or kind.startswith("union_tag")):
        return f"{field}: got {value}; a space maps each hyperparameter to its range, e.g. {SPACE_FORM}"
    if kind == "missing":
        return f"{field}: required"
    return f"{field}: {err['msg'].rstrip('.')} (got {value})"


def _flat_hint(errors: Sequence[Mapping[str, Any]], schema: Mapping[str, Any] | None,
               arguments: Mapping[str, Any] | None, tool: str | None) -> str | None:
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
    return (f"invalid arguments: {', '.join(strays)} belong inside 'request'; call {tool or 'the tool'} with "
            f"{_shown(fixed, limit=600)}")


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


def _did_you_mean(given: Any, options: Sequence[Any], *, list_options: bool = True) -> str:
    names = [str(o) for o in options]
    if isinstance(given, str):
        same_but_case = [n for n in names if n.lower() == given.lower()]
        if same_but_case:
            return f"; did you mean {same_but_case[0]!r}?"
        if SYNONYMS.get(given) in names:
            return f"; did you mean {SYNONYMS[given]!r}?"
        close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]!r}?"
    if list_options and names and len(names) <= 40:
        return f"; expected one of: {', '.join(names)}"
    return ""


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
    """Server middleware: a ``tools/call`` whose arguments do not validate is answered here."""

    def __init__(self, tools: Mapping[str, Any]) -> None:
        self._tools = tools  # name -> SDK Tool

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            tool = self._tools.get(ctx.params.get("name"))
            arguments = ctx.params.get("arguments") or {}
            if tool is not None and isinstance(arguments, Mapping):
                try:
                    tool.fn_metadata.validate_arguments(dict(arguments))
                except pydantic.ValidationError as exc:
                    text = describe_validation_error(exc, schema=tool.parameters, arguments=arguments, tool=tool.name)
                    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return await call_next(ctx)
