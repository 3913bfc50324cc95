"""One split spec, shared by tuning and pipelines: the holdout and the cross-validation folds.

    spec = SplitSpec(kind="group", column="player_name")          # or kind="time", column="Date"
    train_rows, test_rows = holdout_rows(frame, y, spec, classification=False)
    folds = cv_folds(frame.loc[train_rows], y.loc[train_rows], spec, n_folds=5, seed=42, classification=False)

The holdout depends only on the spec (kind, column, test_size, seed, gap) and the labelled rows,
never on the search seed, so ``tune_hyperparameters`` and ``run_pipeline`` with the same spec draw
the same test rows and the search never sees them. Row ids are the frame's index labels (the row
number in a CSV file).

Folds are scikit-learn's splitters, unchanged:
- kfold: ``StratifiedKFold`` (classification) / ``KFold``, shuffled with the seed.
- group: ``StratifiedGroupKFold`` (classification) / ``GroupKFold``, shuffled with the seed;
  no group is on both sides of a fold, nor of the holdout (``GroupShuffleSplit``).
- time: rows ordered by the column (stable), ``TimeSeriesSplit(gap=...)``: every fold validates
  on rows later than all its training rows; the holdout is the latest ``test_size`` of the rows
  (all rows of the cut-off time go to the test side), with ``gap`` rows left out before it.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SplitKind = Literal["kfold", "group", "time"]
DEFAULT_TEST_SIZE = 0.2
MIN_TEST_ROWS = 2
_YEAR_PREFIX = re.compile(r"^\s*(\d{4})(\b|[-/])")  # "1996-97" NBA seasons, "2019" years


class SplitSpec(BaseModel):
    # How rows are divided: the holdout (test) part and the cross-validation folds of the rest. A comment,
    # not a docstring: the requests' split fields say it, and the schema of every job tool inlines this one.

    model_config = ConfigDict(extra="forbid")

    kind: SplitKind = Field(
        default="kfold",
        description="kfold: random (stratified); group: a group (a player) on one side; time: test on later rows",
    )
    column: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="The group or time column (required for group/time); never used as a feature",
    )
    test_size: float = Field(
        default=DEFAULT_TEST_SIZE, ge=0.0, le=0.5,
        description="Holdout fraction, never seen by tuning; 0: none (recorded)",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the holdout draw")
    gap: int = Field(default=0, ge=0, le=100_000, description="time only: rows left out between train and test")

    @model_validator(mode="after")
    def _column_matches_kind(self) -> SplitSpec:
        if self.kind == "kfold" and self.column is not None:
            raise InvalidRequestError(
                f"split.column is only for kind 'group' or 'time', got kind 'kfold' with column {self.column!r}"
            )
        if self.kind != "kfold" and self.column is None:
            raise InvalidRequestError(f"split.column is required for kind {self.kind!r} (the {self.kind} column)")
        if self.gap and self.kind != "time":
            raise InvalidRequestError(f"split.gap is only for kind 'time', got kind {self.kind!r} with gap {self.gap}")
        return self

    @property
    def has_holdout(self) -> bool:
        return self.test_size > 0

    def describe(self) -> str:
        by = f" by {self.column!r}" if self.column else ""
        gap = f", gap {self.gap}" if self.gap else ""
        holdout = f"holdout {self.test_size:.0%} (seed {self.seed})" if self.has_holdout else "no holdout"
        return f"{self.kind}{by}{gap}; {holdout}"

    def as_params(self) -> dict[str, Any]:
        """MLflow params (the spec, flat)."""
        return {"split.kind": self.kind, "split.column": self.column or "", "split.test_size": self.test_size,
                "split.seed": self.seed, "split.gap": self.gap}


def coerce_split(split: SplitSpec | dict[str, Any] | None) -> SplitSpec | None:
    if split is None or isinstance(split, SplitSpec):
        return split
    if isinstance(split, dict):
        from pydantic import ValidationError

        from mcp_server.data_validation_pipeline import compact_errors

        try:
            return SplitSpec.model_validate(split)
        except ValidationError as exc:
            raise InvalidRequestError(f"invalid split: {compact_errors(exc)}") from None
    raise InvalidRequestError(f"split must be a dict like {{'kind': 'group', 'column': 'player'}}, got {split!r}")


class SplitRecord(BaseModel):
    """Which rows a split put where: recorded with every tuning search and pipeline run."""

    spec: SplitSpec
    description: str
    n_train: int
    n_test: int
    test_digest: str = Field(description="sha256 of the sorted test row ids (first 16 hex): equal digests, same holdout")
    train_rows: list[int | str] = Field(default_factory=list, exclude=True, repr=False)
    test_rows: list[int | str] = Field(default_factory=list, exclude=True, repr=False)


def row_digest(rows: list[Any]) -> str:
    text = ",".join(sorted(map(str, rows)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- checks ----------------------------------------------------------------------------------------
def check_split(spec: SplitSpec, frame: pd.DataFrame, *, target: str | None, n_folds: int | None) -> None:
    """Refuse a split the data cannot give: unknown column, the target as column, a time column
    that does not parse, one group, fewer groups than folds."""
    if spec.column is None:
        return
    columns = [str(c) for c in frame.columns]
    if spec.column not in columns:
        shown = ", ".join(columns[:50]) + (" …" if len(columns) > 50 else "")
        raise InvalidRequestError(f"split.column {spec.column!r} is not a column; valid columns: {shown}")
    if spec.column == target:
        raise InvalidRequestError(f"split.column must not be the target {target!r}")
    values = frame[spec.column]
    if values.isna().any():
        raise InvalidRequestError(
            f"split.column {spec.column!r} has {int(values.isna().sum())} missing values; every row needs a "
            f"{spec.kind} value"
        )
    if spec.kind == "time":
        time_order(values, column=spec.column)  # raises when it does not parse
        return
    n_groups = int(values.nunique())
    if n_groups < 2:
        raise InvalidRequestError(
            f"split.column {spec.column!r} has a single group ({values.iloc[0]!r}); a group split needs at least 2"
        )
    needed = (n_folds or 0) + (1 if spec.has_holdout else 0)
    if n_folds and n_groups < needed:
        raise InvalidRequestError(
            f"split.column {spec.column!r} has {n_groups} groups, fewer than the {needed} needed "
            f"({n_folds} folds{' + a holdout' if spec.has_holdout else ''}); lower cv_folds or choose another column"
        )


def time_order(values: pd.Series, *, column: str) -> pd.Series:
    """Values that sort in time: numbers as they are, datetimes, date strings, or a leading year
    ("1996-97"). A column that is none of these is refused."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        raise InvalidRequestError(f"split.column {column!r} is boolean; a time column needs dates or numbers")
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = values.astype(str)
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    if parsed.notna().all():
        return parsed
    years = text.str.extract(_YEAR_PREFIX, expand=False)[0]
    if years.notna().all():
        return years.astype(int)
    bad = text[parsed.isna()].head(3).tolist()
    raise InvalidRequestError(
        f"split.column {column!r} does not parse as time: values such as {', '.join(map(repr, bad))} are not "
        "dates, numbers or years; use kind 'group' for labels"
    )


# --- holdout ---------------------------------------------------------------------------------------
def holdout_rows(frame: pd.DataFrame, y: pd.Series, spec: SplitSpec, *, classification: bool) -> SplitRecord:
    """Train and test row ids of ``frame`` (its labelled rows) under ``spec``."""
    import numpy as np

    index = frame.index
    if not spec.has_holdout:
        train_pos, test_pos = np.arange(len(index)), np.array([], dtype=int)
    elif spec.kind == "kfold":
        train_pos, test_pos = _random_holdout(y, spec, classification=classification)
    elif spec.kind == "group":
        from sklearn.model_selection import GroupShuffleSplit

        splitter = GroupShuffleSplit(n_splits=1, test_size=spec.test_size, random_state=spec.seed)
        train_pos, test_pos = next(splitter.split(np.zeros(len(index)), groups=frame[spec.column].to_numpy()))
    else:
        train_pos, test_pos = _time_holdout(frame, spec)
    if spec.has_holdout and (len(test_pos) < MIN_TEST_ROWS or len(train_pos) < MIN_TEST_ROWS):
        raise InvalidRequestError(
            f"split {spec.describe()} leaves {len(train_pos)} training and {len(test_pos)} test rows; "
            "both need at least 2 (more data, or another test_size)"
        )
    train, test = index[np.sort(train_pos)].tolist(), index[np.sort(test_pos)].tolist()
    return SplitRecord(spec=spec, description=spec.describe(), n_train=len(train), n_test=len(test),
                       test_digest=row_digest(test), train_rows=train, test_rows=test)


def _random_holdout(y: pd.Series, spec: SplitSpec, *, classification: bool) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(y))
    stratify = None
    if classification:
        counts = y.value_counts()
        n_test = math.ceil(spec.test_size * len(y))
        # Stratify when every class can give a row to each side; else a plain shuffle.
        if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
            stratify = y.to_numpy()
    train, test = train_test_split(positions, test_size=spec.test_size, random_state=spec.seed, stratify=stratify)
    return np.asarray(train), np.asarray(test)


def _time_holdout(frame: pd.DataFrame, spec: SplitSpec) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    times = time_order(frame[spec.column], column=spec.column).to_numpy()
    order = np.argsort(times, kind="stable")
    n_test = max(1, math.ceil(spec.test_size * len(order)))
    cutoff = times[order[len(order) - n_test]]
    test = np.flatnonzero(times >= cutoff)  # no time value on both sides
    before = order[: len(order) - len(test)]
    train = before[: max(0, len(before) - spec.gap)]
    return train, test


# --- folds -----------------------------------------------------------------------------------------
def cv_splitter(spec: SplitSpec | None, *, n_folds: int, seed: int, classification: bool) -> Any:
    """The scikit-learn splitter for the folds of the training part."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold, TimeSeriesSplit

    kind = spec.kind if spec is not None else "kfold"
    if kind == "time":
        return TimeSeriesSplit(n_splits=n_folds, gap=spec.gap)
    if kind == "group":
        cls = StratifiedGroupKFold if classification else GroupKFold
        return cls(n_splits=n_folds, shuffle=True, random_state=seed)
    cls = StratifiedKFold if classification else KFold
    return cls(n_splits=n_folds, shuffle=True, random_state=seed)


def cv_folds(
    frame: pd.DataFrame, y: pd.Series, spec: SplitSpec | None, *, n_folds: int, seed: int, classification: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, validation positions) per fold, positions into ``frame``'s rows."""
    import numpy as np

    splitter = cv_splitter(spec, n_folds=n_folds, seed=seed, classification=classification)
    kind = spec.kind if spec is not None else "kfold"
    try:
        if kind == "time":
            times = time_order(frame[spec.column], column=spec.column).to_numpy()
            order = np.argsort(times, kind="stable")
            return [(order[tr], order[va]) for tr, va in splitter.split(order)]
        groups = frame[spec.column].to_numpy() if kind == "group" else None
        return [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(np.zeros(len(y)), y, groups)]
    except ValueError as exc:
        raise InvalidRequestError(f"cannot split the data into {n_folds} {kind} folds: {exc}") from None


def describe_splitter(splitter: Any, spec: SplitSpec | None) -> str:
    params = {"n_splits": splitter.n_splits}
    if getattr(splitter, "shuffle", False):
        params |= {"shuffle": True, "random_state": splitter.random_state}
    if getattr(splitter, "gap", 0):
        params["gap"] = splitter.gap
    text = f"{type(splitter).__name__}({', '.join(f'{k}={v}' for k, v in params.items())})"
    if spec is not None and spec.column:
        text += f" by {spec.column!r}"
    return text
