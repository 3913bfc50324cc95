"""Custom rules: callables ``(df) -> list[Issue] | Issue | None`` or declarative dicts.

Declarative rules (``{"rule": "<kind>", ...}``) cover what callers most often add, without ever
evaluating caller-supplied expressions (no ``DataFrame.eval``/``query`` on strings):

    range                 column, min, max
    not_null              column
    unique                columns (one or more; the combination must be unique)
    allowed_values        column, values
    compare               left (column) op (<, <=, >, >=, ==, !=) right (column or number), tolerance
    max_missing_fraction  column, max_fraction

Each takes an optional ``severity`` (default "error", "warning" for max_missing_fraction) and
``name`` (reported as the issue's rule).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mcp_server.data_validation_pipeline._checks import check_range
from mcp_server.data_validation_pipeline._result import Issue, Severity, example_rows
from mcp_server.data_validation_pipeline._schema import compact_errors
from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Severity = "error"
    name: str | None = None


class RangeRule(_Rule):
    rule: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None


class NotNullRule(_Rule):
    rule: Literal["not_null"]
    column: str


class UniqueRule(_Rule):
    rule: Literal["unique"]
    columns: list[str] = Field(min_length=1)


class AllowedValuesRule(_Rule):
    rule: Literal["allowed_values"]
    column: str
    values: list[bool | int | float | str]


class CompareRule(_Rule):
    rule: Literal["compare"]
    left: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    right: str | float
    tolerance: float = Field(default=0.0, ge=0)


class MaxMissingFractionRule(_Rule):
    rule: Literal["max_missing_fraction"]
    column: str
    max_fraction: float = Field(ge=0, le=1)
    severity: Severity = "warning"


DeclarativeRule = Annotated[
    Union[RangeRule, NotNullRule, UniqueRule, AllowedValuesRule, CompareRule, MaxMissingFractionRule],
    Field(discriminator="rule"),
]
RULE_KINDS = ("range", "not_null", "unique", "allowed_values", "compare", "max_missing_fraction")
_ADAPTER: TypeAdapter[Any] = TypeAdapter(DeclarativeRule)
CustomRule = Callable[["pd.DataFrame"], Any] | dict[str, Any]


def parse_rule(spec: dict[str, Any]) -> Any:
    try:
        return _ADAPTER.validate_python(spec)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"invalid custom rule {spec!r}: {compact_errors(exc)}; rule kinds: {', '.join(RULE_KINDS)}"
        ) from None


def _require_columns(df: pd.DataFrame, columns: list[str], rule: Any) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InvalidRequestError(
            f"custom rule {rule.rule!r} names unknown column(s) {', '.join(map(repr, missing))}; "
            f"valid columns: {', '.join(map(str, df.columns))}"
        )


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def run_declarative(df: pd.DataFrame, rule: Any) -> list[Issue]:
    label = rule.name or rule.rule
    if isinstance(rule, RangeRule):
        _require_columns(df, [rule.column], rule)
        issues = check_range(df[rule.column], rule.column, rule.min, rule.max, rule.severity, label)
        return issues
    if isinstance(rule, UniqueRule):
        _require_columns(df, rule.columns, rule)
        bad = df.duplicated(subset=rule.columns, keep="first")
        what = f"columns {rule.columns}"
        message = f"{what} must be unique together, {int(bad.sum())} rows repeat an earlier combination"
        return _issue(bad, ", ".join(rule.columns), label, rule.severity, message)
    if isinstance(rule, CompareRule):
        columns = [rule.left] + ([rule.right] if isinstance(rule.right, str) else [])
        _require_columns(df, columns, rule)
        right = df[rule.right] if isinstance(rule.right, str) else rule.right
        left = df[rule.left]
        holds = _OPS[rule.op](left, right)
        if rule.tolerance and rule.op in {"==", "<", "<=", ">", ">="}:
            holds = holds | ((left - right).abs() <= rule.tolerance)
        bad = ~holds.fillna(False).astype(bool) & left.notna()
        message = f"{int(bad.sum())} rows break {rule.left} {rule.op} {rule.right}"
        return _issue(bad, rule.left, label, rule.severity, message)
    _require_columns(df, [rule.column], rule)
    series = df[rule.column]
    if isinstance(rule, NotNullRule):
        return _issue(series.isna(), rule.column, label, rule.severity,
                      f"column {rule.column!r} has {int(series.isna().sum())} missing values")
    if isinstance(rule, AllowedValuesRule):
        bad = series.notna() & ~series.astype(str).isin({str(v) for v in rule.values})
        return _issue(bad, rule.column, label, rule.severity,
                      f"column {rule.column!r} has {int(bad.sum())} values outside the allowed set")
    fraction = float(series.isna().mean()) if len(series) else 0.0
    if fraction <= rule.max_fraction:
        return []
    return [Issue(column=rule.column, rule=label, severity=rule.severity, count=int(series.isna().sum()),
                  message=f"column {rule.column!r} is {fraction:.1%} missing, above {rule.max_fraction:.1%}")]


def _issue(mask: pd.Series, column: str, rule: str, severity: Severity, message: str) -> list[Issue]:
    if not mask.any():
        return []
    return [Issue(column=column, rule=rule, severity=severity, count=int(mask.sum()),
                  example_rows=example_rows(mask), message=message)]


def run_callable(df: pd.DataFrame, rule: Callable[[pd.DataFrame], Any]) -> list[Issue]:
    """Run a rule on a copy; a rule that raises or returns nonsense becomes an error issue."""
    name = getattr(rule, "__name__", type(rule).__name__)
    try:
        returned = rule(df.copy())
    except Exception as exc:
        logger.warning("custom rule %s raised", name, exc_info=True)
        return [Issue(rule=f"custom:{name}", severity="error",
                      message=f"custom rule {name} raised {type(exc).__name__}: {exc}")]
    items = [] if returned is None else returned if isinstance(returned, (list, tuple)) else [returned]
    issues: list[Issue] = []
    for item in items:
        try:
            issues.append(item if isinstance(item, Issue) else Issue.model_validate(item))
        except ValidationError:
            issues.append(Issue(rule=f"custom:{name}", severity="error",
                                message=f"custom rule {name} returned {type(item).__name__}, "
                                        "expected Issue, dict, list of them, or None"))
    return issues


def run_custom_rules(df: pd.DataFrame, rules: list[CustomRule] | None) -> list[Issue]:
    # Parse every declarative rule first so a bad one is refused before any work is done.
    parsed = [rule if callable(rule) else parse_rule(rule) if isinstance(rule, dict) else rule
              for rule in rules or []]
    issues: list[Issue] = []
    for rule in parsed:
        if callable(rule):
            issues.extend(run_callable(df, rule))
        elif isinstance(rule, BaseModel):
            issues.extend(run_declarative(df, rule))
        else:
            raise InvalidRequestError(
                f"custom rules must be callables or dicts, got {type(rule).__name__}"
            )
    return issues
