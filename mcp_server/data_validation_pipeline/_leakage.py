"""Columns that label rows rather than describe them: identifiers, dates, entities, and columns
derived from two others. Every finding is an ``Issue`` naming its column(s), with ``drop`` saying
what to leave out (the module docstring of ``_target_leaks`` covers leaks of the target).

identifier_column  pandas' ``Unnamed: N`` index columns, integers unique per row and increasing in
                   row order (gaps allowed), text unique (or nearly) per row
datetime_column    datetime dtype, or text that parses as dates: as a feature it is a category with
                   one level per day; the finding suggests a time-ordered split
entity_column      values repeating over many rows (a player's name or id, a game id): as a feature
                   they let a model memorize the entity, and a random split puts the same entity on
                   both sides; the finding says to drop it and suggests a group split
derived_column     a numeric column equal to the sum or difference of two others in every row
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

from mcp_server.data_validation_pipeline._result import Issue, Severity
from mcp_server.data_validation_pipeline._schema import dtype_kind

if TYPE_CHECKING:
    import pandas as pd

DERIVED_MAX_COLUMNS = 60
MIN_ROWS = 20
IDENTIFIER_UNIQUE_FRACTION = 0.95
ENTITY_MIN_VALUES = 20
ENTITY_MAX_FRACTION = 0.8  # more distinct values than this share of rows: an identifier, not an entity
ENTITY_MIN_FRACTION = 0.05  # fewer: a category (a team, a college), not an entity
_UNNAMED = re.compile(r"^Unnamed: \d+$")
_ID_NAME = re.compile(r"(^|[_\s])(id|key)$|[a-z]Id$|ID$", re.IGNORECASE)
_DATE_LIKE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|"
    r"[A-Za-z]{3,9}\.? \d{1,2},? \d{4}|\d{1,2} [A-Za-z]{3,9}\.? \d{4})([ T].*)?$"
)


def quoted(name: str) -> str:
    return repr(str(name))


def identifier_reason(series: pd.Series, name: str) -> str | None:
    """Why ``series`` only labels rows, or None."""
    n = len(series)
    if _UNNAMED.match(name):
        return "an unnamed index column written out with the file"
    if n < MIN_ROWS:
        return None
    kind = dtype_kind(series)
    values = series.dropna()
    if kind == "int" and values.is_unique and values.is_monotonic_increasing and len(values) == n:
        return "integers unique per row and increasing in row order (a row number or record id)"
    if kind == "string" and values.nunique() >= IDENTIFIER_UNIQUE_FRACTION * n:
        return f"text with {values.nunique()} distinct values in {n} rows (a name or id)"
    return None


def is_datetime_like(series: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return True
    if dtype_kind(series) != "string":
        return False
    sample = series.dropna().astype(str).head(200)
    if sample.empty or not sample.str.match(_DATE_LIKE).mean() >= 0.9:
        return False
    return bool(pd.to_datetime(sample, errors="coerce", format="mixed").notna().mean() >= 0.9)


def entity_reason(series: pd.Series, name: str) -> str | None:
    """Why ``series`` names an entity that repeats over rows (a player, a game), or None."""
    n = len(series)
    kind = dtype_kind(series)
    if n < MIN_ROWS or kind not in {"string", "category", "int"}:
        return None
    if kind == "int" and not _ID_NAME.search(name):
        return None  # counts and scores are integers too: only id-named integer columns
    n_values = series.nunique()
    if not (max(ENTITY_MIN_VALUES, ENTITY_MIN_FRACTION * n) <= n_values <= ENTITY_MAX_FRACTION * n):
        return None
    return f"{n_values} values over {n} rows ({n / n_values:.1f} rows each)"


def structure_findings(
    df: pd.DataFrame, columns: list[str], *, in_use: bool, skip: set[str] = frozenset()
) -> list[Issue]:
    """Identifier, date and entity columns among ``columns``. ``in_use``: they are a model's
    features, so they are errors (drop them), not warnings."""
    severity: Severity = "error" if in_use else "warning"
    issues: list[Issue] = []
    for name in columns:
        if name in skip:
            continue
        series = df[name]
        reason = identifier_reason(series, name)
        if reason:
            issues.append(Issue(
                column=name, rule="identifier_column", severity=severity, count=len(series), drop=[name],
                message=f"column {quoted(name)} is an identifier: {reason}; it only labels rows and lets a model "
                        f"memorize them; drop it (drop=[{quoted(name)}])"))
            continue
        if is_datetime_like(series):
            issues.append(Issue(
                column=name, rule="datetime_column", severity=severity, count=int(series.nunique()), drop=[name],
                message=f"column {quoted(name)} holds dates ({series.nunique()} distinct): as a feature it becomes a "
                        f"category per date; drop it (drop=[{quoted(name)}]), and to evaluate on later rows use "
                        f"split={{'kind': 'time', 'column': {quoted(name)}}}"))
            continue
        reason = entity_reason(series, name)
        if reason:
            issues.append(Issue(
                column=name, rule="entity_column", severity=severity, count=int(series.nunique()), drop=[name],
                message=f"column {quoted(name)} identifies repeating entities ({reason}): as a feature it lets a "
                        f"model memorize them; drop it (drop=[{quoted(name)}]), and to judge the model on entities "
                        f"it has not seen use split={{'kind': 'group', 'column': {quoted(name)}}}"))
    return issues


def derived_findings(df: pd.DataFrame, columns: list[str], *, severity: Severity) -> list[Issue]:
    """Numeric columns equal to the sum or difference of two others in every row."""
    import numpy as np

    numeric = [c for c in columns if dtype_kind(df[c]) in {"int", "float"}][:DERIVED_MAX_COLUMNS]
    if len(numeric) < 3 or len(df) < MIN_ROWS:
        return []
    # Candidates on a few hundred evenly spaced complete rows; each verified on every row.
    positions = np.linspace(0, len(df) - 1, min(len(df), 1024)).astype(int)
    sample = df[numeric].iloc[positions].dropna().to_numpy(dtype=float)[:256]
    if len(sample) < MIN_ROWS:
        return []
    scale = np.abs(sample).max(axis=0) + 1e-12
    issues: list[Issue] = []
    seen: set[frozenset[str]] = set()
    pairs = list(itertools.combinations(range(len(numeric)), 2))
    for op, (i, j) in itertools.chain((("+", p) for p in pairs), (("-", p) for p in pairs)):
        combined = sample[:, i] + sample[:, j] if op == "+" else sample[:, i] - sample[:, j]
        close = np.abs(sample - combined[:, None]) <= 1e-6 * np.maximum(scale, np.abs(combined).max())
        for k in np.flatnonzero(close.all(axis=0)):
            if k in (i, j) or np.ptp(sample[:, k]) == 0:
                continue
            trio = frozenset((numeric[i], numeric[j], numeric[k]))
            if trio in seen or not _holds_everywhere(df, numeric[i], numeric[j], numeric[k], op):
                continue
            seen.add(trio)
            a, b, c = numeric[i], numeric[j], numeric[k]
            issues.append(Issue(
                column=c, rule="derived_column", severity=severity, count=len(df), drop=[],
                message=f"{quoted(c)} = {quoted(a)} {op} {quoted(b)} in every row: predicting one of the three from "
                        "the other two is arithmetic, not learning; keep at most two of them as features"))
    return issues


def _holds_everywhere(df: pd.DataFrame, a: str, b: str, c: str, op: str) -> bool:
    import numpy as np

    rows = df[[a, b, c]].dropna().to_numpy(dtype=float)
    combined = rows[:, 0] + rows[:, 1] if op == "+" else rows[:, 0] - rows[:, 1]
    return bool(np.allclose(rows[:, 2], combined, rtol=1e-6, atol=1e-9))
