"""Targets that cannot be right, refused before any work.

A date, an identifier (a row number, a name unique per row) or free text is not something to
predict: trained as classes, a date column became a 653-class forest that grew the server to 9 GB.
A classification target with more classes than ``max_classes``, or more than ``max_class_share`` of
its rows, is a label per row, not a class. Each refusal says why and what was likely meant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_CLASSES = 100
DEFAULT_MAX_CLASS_SHARE = 0.25
_FREE_TEXT_WORDS = 4  # a median of this many words per value: sentences, not labels


def check_target(y: pd.Series, *, task: str, settings: Any = None) -> None:
    """Raise ``InvalidRequestError`` when ``y`` (named) cannot be a target of ``task`` (declared or
    inferred). Cheap: a few vectorized passes over the column."""
    import pandas as pd

    from mcp_server.data_validation_pipeline import dtype_kind, identifier_reason, is_datetime_like

    name = str(y.name)
    values = y.dropna()
    if values.empty:
        return
    if is_datetime_like(values):
        raise InvalidRequestError(
            f"target {name!r} holds dates ({values.nunique()} distinct): a date is not a class or a score to "
            f"predict. To predict when something happens, regress on a number computed from it (days since an "
            f"event); to test on later rows, keep it out of the target and use split={{'kind': 'time', "
            f"'column': {name!r}}}")
    kind = dtype_kind(values)
    text = kind in {"string", "category"}
    reason = identifier_reason(values, name)
    if reason and (text or task != "regression"):
        raise InvalidRequestError(
            f"target {name!r} is an identifier ({reason}): it labels rows, so there is nothing to learn; "
            f"pick the column you want to predict, and drop this one (drop=[{name!r}])")
    if text:
        words = values.astype(str).str.split().str.len().median()
        if words >= _FREE_TEXT_WORDS:
            raise InvalidRequestError(
                f"target {name!r} is free text (a median of {words:.0f} words per value): a model predicts a "
                "class or a number; pick a categorical or numeric column as target")
    if task != "classification":
        return
    max_classes = int(getattr(settings, "max_classes", DEFAULT_MAX_CLASSES))
    share = float(getattr(settings, "max_class_share", DEFAULT_MAX_CLASS_SHARE))
    n_classes = int(values.nunique())
    limit = min(max_classes, max(2, int(share * len(values))))
    if n_classes > limit:
        numeric = pd.api.types.is_numeric_dtype(values.dtype) and kind != "bool"
        hint = ("it is numeric: predict it as a number with task='regression'" if numeric
                else "is it an identifier or a free-text column? pick the column you meant to predict")
        rule = (f"settings.max_classes={max_classes}" if limit == max_classes
                else f"settings.max_class_share={share:g} of its {len(values)} rows")
        raise InvalidRequestError(
            f"target {name!r} has {n_classes} classes, more than {limit} ({rule}): {hint}")
