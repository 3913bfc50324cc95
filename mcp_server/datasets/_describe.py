"""Compact, LLM-readable summaries of a data frame, and the features/target split."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mcp_server.data_validation_pipeline import DataValidationPipeline, Issue, is_datetime_like
from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MAX_LISTED_NAMES = 50
MAX_TOP_VALUES = 5
MAX_DESCRIBED_COLUMNS = 100
MAX_CLASS_COUNTS = 20


class ColumnSummary(BaseModel):
    name: str
    dtype: str
    missing: int
    n_unique: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    top_values: dict[str, int] | None = Field(default=None, description="At most 5, most frequent first")


class TargetSummary(BaseModel):
    column: str
    task: Literal["classification", "regression"]
    n_classes: int | None = None
    class_counts: dict[str, int] | None = Field(default=None, description="At most 20, most frequent first")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    median: float | None = None


# What describe reports from the leak checks: what a column is, and target leaks when a target is named.
FINDING_RULES = ("identifier_column", "datetime_column", "entity_column", "derived_column",
                 "target_copy", "target_leak", "pair_leak", "linear_leak")


class DatasetDescription(BaseModel):
    name: str
    description: str | None = Field(default=None, description="What the data set is (packaged data sets)")
    attribution: str | None = Field(default=None, description="Source, license and changes (packaged data sets)")
    n_rows: int
    n_columns: int
    columns: list[ColumnSummary]
    omitted_columns: int = Field(default=0, description="Columns past the limit, not summarized")
    target: TargetSummary | None = None
    duplicate_rows: int
    findings: list[Issue] = Field(
        default_factory=list,
        description="Identifier, date and entity columns, derived columns and target leaks: what to drop or split by",
    )


def _compact(value: Any) -> float | None:
    """A float rounded to 6 significant digits, or None for NaN (keeps descriptions short)."""
    import pandas as pd

    if value is None or pd.isna(value):
        return None
    return float(f"{float(value):.6g}")


def bounded_list(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = len(names) - MAX_LISTED_NAMES
    return f"{shown} (and {more} more)" if more > 0 else shown


def _is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def date_columns(frame: pd.DataFrame, limit: int = 5) -> list[str]:
    """The columns that hold dates (datetime dtype, or text that parses as dates): what a time
    split orders by. Each column is judged on a sample of its first values."""
    return [str(c) for c in frame.columns if is_datetime_like(frame[c])][:limit]


def describe_frame(
    frame: pd.DataFrame,
    *,
    name: str,
    target: str | None = None,
    max_columns: int = MAX_DESCRIBED_COLUMNS,
) -> DatasetDescription:
    """Summaries of the first ``max_columns`` columns (the target always included)."""
    from mcp_server.estimators import infer_task

    if target is not None:
        _check_columns([target], frame, field="target")
    shown = list(frame.columns[:max_columns])
    if target is not None and target not in shown:
        shown.append(target)
    columns = [_summarize_column(frame[column], str(column)) for column in shown]
    target_summary = None
    if target is not None:
        y = frame[target].dropna()
        task = infer_task(y)
        if task == "classification":
            counts = y.astype(str).value_counts()
            target_summary = TargetSummary(
                column=target,
                task=task,
                n_classes=len(counts),
                class_counts={str(k): int(v) for k, v in counts.head(MAX_CLASS_COUNTS).items()},
            )
        else:
            target_summary = TargetSummary(
                column=target,
                task=task,
                **{stat: _compact(getattr(y, stat)()) for stat in ("min", "max", "mean", "std", "median")},
            )
    return DatasetDescription(
        name=name,
        n_rows=len(frame),
        n_columns=frame.shape[1],
        columns=columns,
        omitted_columns=frame.shape[1] - len(shown),
        target=target_summary,
        duplicate_rows=int(frame.duplicated().sum()),
        findings=[i for i in DataValidationPipeline().validate(frame, name, target=target).issues
                  if i.rule in FINDING_RULES],
    )


def _summarize_column(series: pd.Series, name: str) -> ColumnSummary:
    summary = ColumnSummary(
        name=name,
        dtype=str(series.dtype),
        missing=int(series.isna().sum()),
        n_unique=int(series.nunique(dropna=True)),
    )
    if _is_numeric(series):
        summary.min, summary.max, summary.mean = (
            _compact(series.min()), _compact(series.max()), _compact(series.mean())
        )
    else:
        top = series.astype(str)[series.notna()].value_counts().head(MAX_TOP_VALUES)
        summary.top_values = {str(k): int(v) for k, v in top.items()}
    return summary


def _check_columns(names: list[str], frame: pd.DataFrame, *, field: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        valid = [str(c) for c in frame.columns]
        raise InvalidRequestError(
            f"{field} names unknown column(s) {', '.join(map(repr, missing))}; "
            f"valid columns: {bounded_list(valid)}"
        )


def job_features(
    df: pd.DataFrame,
    target: str,
    features: list[str] | None = None,
    drop: list[str] | None = None,
    *,
    split_column: str | None = None,
) -> list[str]:
    """The columns a tuning or pipeline job trains on: ``features`` as given (default: every column
    but the target and the split column) minus ``drop``. Raises naming the field on an unknown
    column, on the target or the split column among ``features``, or when nothing is left."""
    _check_columns([target], df, field="target")
    if features is not None:
        _check_columns(list(features), df, field="features")
        if target in features:
            raise InvalidRequestError(f"features must not include the target column {target!r}")
        if split_column is not None and split_column in features:
            raise InvalidRequestError(
                f"features must not include the split column {split_column!r}: it only decides the folds")
    if drop:
        _check_columns(list(drop), df, field="drop")
    columns = (list(dict.fromkeys(features)) if features is not None
               else [str(c) for c in df.columns if c not in (target, split_column)])
    columns = [c for c in columns if c not in set(drop or ())]
    if not columns:
        raise InvalidRequestError("no feature columns left after removing the target, the split column and drop")
    return columns


def load_xy(
    df: pd.DataFrame,
    target: str,
    features: list[str] | None = None,
    drop: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Split ``df`` into features and target. Features default to every other column minus
    ``drop``. Rows whose target is missing cannot be learned from and are dropped (logged)."""
    _check_columns([target], df, field="target")
    if features is not None:
        _check_columns(list(features), df, field="features")
        if target in features:
            raise InvalidRequestError(f"features must not include the target column {target!r}")
    if drop is not None:
        _check_columns(list(drop), df, field="drop")
    columns = list(features) if features is not None else [c for c in df.columns if c != target]
    columns = [c for c in columns if c not in set(drop or ())]
    if not columns:
        raise InvalidRequestError("no feature columns left after applying features and drop")
    labelled = df[df[target].notna()]
    if len(labelled) < len(df):
        logger.warning("dropped %d rows with a missing target %r", len(df) - len(labelled), target)
    if labelled.empty:
        raise InvalidRequestError(f"target column {target!r} has no non-missing values")
    return labelled[columns], labelled[target]
