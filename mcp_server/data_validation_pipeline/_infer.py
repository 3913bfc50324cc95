"""Draft a schema from data: a starting point to edit, which the data it came from passes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mcp_server.data_validation_pipeline._checks import is_row_index
from mcp_server.data_validation_pipeline._schema import ColumnRule, DatasetSchema, dtype_kind
from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

# Text columns with at most this many distinct values get an allowed_values list.
MAX_ALLOWED_VALUES = 10
MIN_ROWS_FOR_INFERRED_SCHEMA = 10


def _plain(value: object) -> float:
    return float(value)  # numpy scalars -> float, so the schema serializes cleanly


def infer_column_rule(series: pd.Series) -> ColumnRule:
    kind = dtype_kind(series)
    values = series.dropna()
    rule = ColumnRule(dtype=kind if kind != "other" else "any", nullable=bool(series.isna().any()))
    if kind in {"int", "string"} and len(values) > 1 and values.is_unique:
        rule.unique = True
    if kind in {"int", "float"} and not values.empty:
        low, high = _plain(values.min()), _plain(values.max())
        if math.isfinite(low) and math.isfinite(high):
            # Observed bounds are a draft, not a law: new data past them is worth a warning only.
            rule.min, rule.max, rule.range_severity = low, high, "warning"
    if kind in {"string", "category", "bool"} and 0 < values.nunique() <= MAX_ALLOWED_VALUES:
        distinct = values.unique().tolist()
        rule.allowed_values = sorted(distinct, key=str) if kind != "bool" else sorted(map(bool, distinct))
    return rule


def infer_schema(
    df: pd.DataFrame, target: str | None = None, *, name: str = "inferred", task: str | None = None
) -> DatasetSchema:
    """Columns with their observed dtype, nullability, ranges and small value sets; row-number and
    all-distinct text columns as identifiers; the target's task and a class-balance floor at half
    the observed minority fraction."""
    from mcp_server.estimators import infer_task

    if target is not None and target not in df.columns:
        raise InvalidRequestError(
            f"target {target!r} is not a column; valid columns: {', '.join(map(str, df.columns))}"
        )
    columns = {str(column): infer_column_rule(df[column]) for column in df.columns}
    identifiers = [
        str(column) for column in df.columns
        if column != target and (
            is_row_index(df[column]) or (columns[str(column)].dtype == "string" and columns[str(column)].unique)
        )
    ]
    schema = DatasetSchema(
        name=name,
        description=f"Drafted from {len(df)} rows x {df.shape[1]} columns; review before use.",
        min_rows=min(len(df), MIN_ROWS_FOR_INFERRED_SCHEMA),
        identifier_columns=identifiers,
        columns=columns,
    )
    if target is not None:
        y = df[target].dropna()
        schema.target = target
        schema.task = infer_task(y, task=task)
        if schema.task == "classification" and y.nunique() > 1:
            minority = float(y.value_counts(normalize=True).iloc[-1])
            schema.min_class_fraction = math.floor(minority / 2 * 1000) / 1000
    return schema
