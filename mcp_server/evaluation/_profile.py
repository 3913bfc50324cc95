"""What a model saw in training, so ``predict`` can say when it is guessing.

The profile (numeric ranges, known categories) is stored on the fitted model itself
(``model.training_profile_``), so it travels wherever the model goes: MLflow, the in-memory store,
a pickle. Rows are still scored; each row that leaves the profile gets warnings naming the column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import pandas as pd

PROFILE_ATTRIBUTE = "training_profile_"
MAX_CATEGORIES = 1000
# A value is "far outside" when it passes the training range by more than this share of its width.
RANGE_MARGIN = 0.1
MAX_ROW_WARNINGS = 10


class NumericRange(BaseModel):
    min: float
    max: float


class TrainingProfile(BaseModel):
    n_rows: int
    numeric: dict[str, NumericRange] = Field(default_factory=dict)
    categories: dict[str, list[str]] = Field(default_factory=dict)


class RowWarning(BaseModel):
    row: int
    column: str
    message: str


def profile_frame(X: pd.DataFrame) -> TrainingProfile:
    import pandas as pd

    profile = TrainingProfile(n_rows=len(X))
    for column in X.columns:
        series = X[column].dropna()
        if series.empty:
            continue
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            profile.numeric[str(column)] = NumericRange(min=float(series.min()), max=float(series.max()))
        else:
            values = series.astype(str).unique()
            if len(values) <= MAX_CATEGORIES:
                profile.categories[str(column)] = sorted(values.tolist())
    return profile


def attach_profile(model: Any, X: pd.DataFrame) -> Any:
    # Plain dicts and lists: skops and pickle both store them without new trusted types.
    setattr(model, PROFILE_ATTRIBUTE, profile_frame(X).model_dump())
    return model


def model_profile(model: Any) -> TrainingProfile | None:
    data = getattr(model, PROFILE_ATTRIBUTE, None)
    return TrainingProfile.model_validate(data) if data else None


def row_warnings(profile: TrainingProfile | None, frame: pd.DataFrame) -> list[RowWarning]:
    """Per row and column: unseen categories, numbers far outside the training range."""
    import pandas as pd

    if profile is None:
        return []
    found: list[RowWarning] = []
    for column, bounds in profile.numeric.items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        margin = RANGE_MARGIN * (bounds.max - bounds.min)
        outside = (values < bounds.min - margin) | (values > bounds.max + margin)
        for position in outside.to_numpy().nonzero()[0]:
            found.append(RowWarning(
                row=int(position), column=column,
                message=f"{column}={values.iloc[position]:g} is far outside the training range "
                        f"[{bounds.min:g}, {bounds.max:g}]: the prediction extrapolates"))
    for column, known in profile.categories.items():
        if column not in frame.columns:
            continue
        seen = set(known)
        for position, value in enumerate(frame[column]):
            if value is not None and not (isinstance(value, float) and value != value) and str(value) not in seen:
                found.append(RowWarning(row=position, column=column,
                                        message=f"{column}={value!r} was never seen in training: it is treated "
                                                "as unknown"))
    return sorted(found, key=lambda w: (w.row, w.column))
