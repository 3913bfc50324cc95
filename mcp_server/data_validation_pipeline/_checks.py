"""The checks: each takes the frame (and what it needs) and returns a list of Issues."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mcp_server.data_validation_pipeline._result import Issue, Severity, example_rows
from mcp_server.data_validation_pipeline._schema import (
    ColumnRule,
    DatasetSchema,
    dtype_kind,
    dtype_matches,
)

if TYPE_CHECKING:
    import pandas as pd

MAX_SHOWN_VALUES = 5


def _shown(values: Any) -> str:
    values = list(values)
    text = ", ".join(repr(v) for v in values[:MAX_SHOWN_VALUES])
    return text + (", …" if len(values) > MAX_SHOWN_VALUES else "")


def _numeric(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _textual(series: pd.Series) -> bool:
    return dtype_kind(series) in {"string", "category"}


# --- generic checks (no schema needed) ----------------------------------------------------------
def check_min_rows(df: pd.DataFrame, min_rows: int) -> list[Issue]:
    if len(df) >= min_rows:
        return []
    return [Issue(rule="min_rows", severity="error", count=len(df),
                  message=f"dataset has {len(df)} rows, fewer than the minimum of {min_rows}")]


def check_columns_content(df: pd.DataFrame, *, high_cardinality_fraction: float,
                          numeric_string_fraction: float, skip: set[str]) -> list[Issue]:
    """Per column: all-missing, missing counts, constant, infinite, blank strings, numbers stored
    as text, and identifier-like text columns."""
    import numpy as np
    import pandas as pd

    issues: list[Issue] = []
    n_rows = len(df)
    for column in df.columns:
        series, name = df[column], str(column)
        missing = series.isna()
        if n_rows and missing.all():
            issues.append(Issue(column=name, rule="empty_column", severity="warning", count=n_rows,
                                message=f"column {name!r} has no values at all"))
            continue
        if missing.any():
            issues.append(Issue(column=name, rule="missing_values", severity="info", count=int(missing.sum()),
                                example_rows=example_rows(missing),
                                message=f"column {name!r} has {int(missing.sum())} missing values "
                                        f"({missing.mean():.1%})"))
        if n_rows > 1 and series.nunique(dropna=True) == 1:
            issues.append(Issue(column=name, rule="constant_column", severity="warning", count=n_rows,
                                message=f"column {name!r} holds a single value; it cannot help a model"))
        if _numeric(series):
            infinite = pd.Series(np.isinf(series.to_numpy(dtype=float, na_value=np.nan)), index=df.index)
            if infinite.any():
                issues.append(Issue(column=name, rule="infinite_values", severity="error",
                                    count=int(infinite.sum()), example_rows=example_rows(infinite),
                                    message=f"column {name!r} has {int(infinite.sum())} infinite values"))
        elif _textual(series):
            issues.extend(_check_text_column(series, name, high_cardinality_fraction,
                                             numeric_string_fraction, skip))
    return issues


def _check_text_column(series: pd.Series, name: str, high_cardinality_fraction: float,
                       numeric_string_fraction: float, skip: set[str]) -> list[Issue]:
    import pandas as pd

    issues: list[Issue] = []
    text = series.dropna().astype(str)
    blank = series.notna() & series.astype(str).str.strip().eq("")
    if blank.any():
        issues.append(Issue(column=name, rule="blank_strings", severity="warning", count=int(blank.sum()),
                            example_rows=example_rows(blank),
                            message=f"column {name!r} has {int(blank.sum())} cells holding only whitespace; "
                                    "they are not counted as missing"))
    numbers = pd.to_numeric(text, errors="coerce")
    not_numeric = numbers.isna() & text.str.strip().ne("")
    if len(text) and numbers.notna().mean() >= numeric_string_fraction and not_numeric.any():
        mask = pd.Series(False, index=series.index)
        mask[not_numeric[not_numeric].index] = True
        examples = text[not_numeric].value_counts().index
        issues.append(Issue(column=name, rule="numeric_strings", severity="info", count=int(mask.sum()),
                            example_rows=example_rows(mask),
                            message=f"column {name!r} is numeric except for {int(mask.sum())} rows holding "
                                    f"text such as {_shown(examples)}; it is read as text"))
    n_unique = text.nunique()
    if name not in skip and n_unique > 20 and n_unique >= high_cardinality_fraction * len(series):
        issues.append(Issue(column=name, rule="high_cardinality", severity="info", count=n_unique,
                            message=f"column {name!r} has {n_unique} distinct values in {len(series)} rows: "
                                    "it looks like an identifier or free text; leave it out of the features"))
    return issues


def is_row_index(series: pd.Series) -> bool:
    """True when an integer column just numbers the rows (0..n-1 or 1..n)."""
    import numpy as np

    if len(series) < 2 or dtype_kind(series) != "int":
        return False
    values = series.to_numpy()
    start = values[0]
    return start in (0, 1) and bool(np.array_equal(values, np.arange(start, start + len(values))))


def check_duplicate_rows(df: pd.DataFrame, severity: Severity) -> list[Issue]:
    duplicated = df.duplicated(keep="first")
    if not duplicated.any():
        return []
    count = int(duplicated.sum())
    return [Issue(rule="duplicate_rows", severity=severity, count=count, example_rows=example_rows(duplicated),
                  message=f"{count} rows exactly repeat an earlier row; deduplicate before splitting "
                          "so one row cannot land in both train and test")]


def check_conflicting_labels(df: pd.DataFrame, target: str, features: list[str],
                             severity: Severity) -> list[Issue]:
    """Rows sharing a feature vector: how many repeat one (info), how many vectors disagree on the target."""
    import pandas as pd

    if not features or target not in df.columns:
        return []
    # Hashing rows treats NaN as equal to NaN, which groupby on raw values would not.
    keys = pd.util.hash_pandas_object(df[features], index=False)
    repeats = keys.duplicated(keep="first")
    issues: list[Issue] = []
    if repeats.any():
        issues.append(Issue(rule="duplicate_feature_vectors", severity="info", count=int(repeats.sum()),
                            example_rows=example_rows(repeats),
                            message=f"{int(repeats.sum())} rows repeat another row's features "
                                    f"(all columns except {_shown(sorted(set(map(str, df.columns)) - set(features)))})"))
    labels = df[target].astype(str).where(df[target].notna(), None)
    n_labels = labels.groupby(keys).nunique(dropna=False)
    conflicting = n_labels[n_labels > 1].index
    if len(conflicting):
        in_conflict = keys.isin(conflicting)
        issues.append(Issue(column=target, rule="conflicting_labels", severity=severity, count=len(conflicting),
                            example_rows=example_rows(in_conflict),
                            message=f"{len(conflicting)} feature vectors appear with different {target!r} values "
                                    f"({int(in_conflict.sum())} rows); the model cannot fit both"))
    return issues


# --- target --------------------------------------------------------------------------------------
def check_target(df: pd.DataFrame, target: str, task: str, min_class_fraction: float | None,
                 balance_severity: Severity) -> list[Issue]:
    y = df[target]
    issues: list[Issue] = []
    missing = y.isna()
    if missing.any():
        issues.append(Issue(column=target, rule="target_missing", severity="error", count=int(missing.sum()),
                            example_rows=example_rows(missing),
                            message=f"target {target!r} is missing in {int(missing.sum())} rows"))
    if task != "classification" or y.dropna().empty:
        return issues
    fractions = y.dropna().value_counts(normalize=True)
    if len(fractions) < 2:
        issues.append(Issue(column=target, rule="class_balance", severity="error", count=len(fractions),
                            message=f"target {target!r} has a single class; a classifier needs two or more"))
    elif min_class_fraction is not None and fractions.iloc[-1] < min_class_fraction:
        label, fraction = fractions.index[-1], fractions.iloc[-1]
        issues.append(Issue(column=target, rule="class_balance", severity=balance_severity,
                            count=int((y == label).sum()),
                            message=f"minority class {label!r} of {target!r} is {fraction:.1%} of rows, "
                                    f"below min_class_fraction={min_class_fraction}"))
    return issues


# --- schema --------------------------------------------------------------------------------------
def check_schema_columns(df: pd.DataFrame, schema: DatasetSchema) -> list[Issue]:
    issues: list[Issue] = []
    present = set(map(str, df.columns))
    missing = [c for c, rule in schema.columns.items() if rule.required and c not in present]
    if missing:
        issues.append(Issue(rule="required_columns", severity="error", count=len(missing),
                            message=f"required columns missing: {_shown(missing)}"))
    if not schema.allow_extra_columns:
        extra = [c for c in map(str, df.columns) if c not in schema.columns]
        if extra:
            issues.append(Issue(rule="unexpected_columns", severity="error", count=len(extra),
                                message=f"columns not in schema {schema.name!r}: {_shown(extra)}"))
    for column, rule in schema.columns.items():
        if column in df.columns:
            issues.extend(check_column_rule(df[column], column, rule))
    return issues


def check_schema_splits(df: pd.DataFrame, schema: DatasetSchema) -> list[Issue]:
    """The splits the schema declares (a group column, a time column), as advice."""
    splits = [f"{{'kind': '{kind}', 'column': '{column}'}}"
              for kind, column in (("group", schema.group_column), ("time", schema.time_column))
              if column is not None and column in df.columns]
    if not splits:
        return []
    return [Issue(rule="suggested_split", severity="info", column=schema.group_column or schema.time_column,
                  message=f"schema {schema.name!r}: rows repeat entities or follow time; evaluate with "
                          f"split={' or split='.join(splits)} so the test rows are new players or later seasons")]


def check_column_rule(series: pd.Series, name: str, rule: ColumnRule) -> list[Issue]:
    if not dtype_matches(series, rule.dtype):
        return [Issue(column=name, rule="dtype", severity="error", count=len(series),
                      message=f"column {name!r} should be {rule.dtype}, found {dtype_kind(series)} ({series.dtype})")]
    issues: list[Issue] = []
    missing = series.isna()
    if not rule.nullable and missing.any():
        issues.append(Issue(column=name, rule="not_null", severity="error", count=int(missing.sum()),
                            example_rows=example_rows(missing),
                            message=f"column {name!r} must not be missing, found {int(missing.sum())} missing"))
    if rule.max_missing_fraction is not None and len(series) and missing.mean() > rule.max_missing_fraction:
        issues.append(Issue(column=name, rule="max_missing_fraction", severity="warning", count=int(missing.sum()),
                            message=f"column {name!r} is {missing.mean():.1%} missing, "
                                    f"above max_missing_fraction={rule.max_missing_fraction}"))
    if rule.unique:
        repeated = series.notna() & series.duplicated(keep="first")
        if repeated.any():
            issues.append(Issue(column=name, rule="unique", severity="error", count=int(repeated.sum()),
                                example_rows=example_rows(repeated),
                                message=f"column {name!r} must be unique, {int(repeated.sum())} values repeat"))
    if rule.allowed_values is not None:
        allowed = {str(v) for v in rule.allowed_values}
        bad = series.notna() & ~series.astype(str).isin(allowed)
        if bad.any():
            issues.append(Issue(column=name, rule="allowed_values", severity="error", count=int(bad.sum()),
                                example_rows=example_rows(bad),
                                message=f"column {name!r} has {int(bad.sum())} values outside "
                                        f"{_shown(rule.allowed_values)}, e.g. {_shown(series[bad].unique())}"))
    if _numeric(series):
        issues.extend(check_range(series, name, rule.min, rule.max, rule.range_severity, "range"))
        issues.extend(check_range(series, name, rule.expected_min, rule.expected_max,
                                  rule.expected_severity, "expected_range"))
    return issues


def check_range(series: pd.Series, name: str, low: float | None, high: float | None,
                severity: Severity, rule_name: str) -> list[Issue]:
    import pandas as pd

    if low is None and high is None:
        return []
    below = series < low if low is not None else pd.Series(False, index=series.index)
    above = series > high if high is not None else pd.Series(False, index=series.index)
    outside = (below | above).fillna(False)
    if not outside.any():
        return []
    bounds = f"[{'-inf' if low is None else _num(low)}, {'inf' if high is None else _num(high)}]"
    kind = "allowed" if rule_name == "range" else "expected"
    return [Issue(column=name, rule=rule_name, severity=severity, count=int(outside.sum()),
                  example_rows=example_rows(outside),
                  message=f"column {name!r} has {int(outside.sum())} values outside the {kind} range {bounds} "
                          f"({int(below.sum())} below, {int(above.sum())} above; observed "
                          f"{_num(series.min())}..{_num(series.max())})")]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and math.isfinite(value) else f"{value:g}"
