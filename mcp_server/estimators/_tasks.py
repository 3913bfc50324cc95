"""Which task a target implies, and which scoring names fit a task.

Default scoring (``default_scoring``), chosen to be threshold-free or robust to class imbalance:

- binary classification: ``roc_auc`` (threshold-free, insensitive to the 62/38 imbalance of the rookie data)
- multiclass classification: ``f1_macro`` (every class counts equally, unlike accuracy)
- regression: ``neg_root_mean_squared_error`` (in the target's own units, so an agent can read it)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError
from mcp_server.estimators._registry import Task, check_task

if TYPE_CHECKING:
    import pandas as pd

# An integer target with at most this many distinct values is read as class labels.
MAX_CLASSES_FOR_INTEGER_TARGET = 20

_REGRESSION_SCORERS = frozenset(
    {
        "explained_variance",
        "r2",
        "d2_absolute_error_score",
        "neg_max_error",
        "neg_mean_absolute_error",
        "neg_mean_absolute_percentage_error",
        "neg_mean_gamma_deviance",
        "neg_mean_poisson_deviance",
        "neg_mean_squared_error",
        "neg_mean_squared_log_error",
        "neg_median_absolute_error",
        "neg_root_mean_squared_error",
        "neg_root_mean_squared_log_error",
    }
)
# Classification scorers are recognised by name; clustering scorers (rand_score, …) fit neither task.
_CLASSIFICATION_PREFIXES = (
    "accuracy",
    "balanced_accuracy",
    "average_precision",
    "f1",
    "precision",
    "recall",
    "jaccard",
    "roc_auc",
    "top_k_accuracy",
    "matthews_corrcoef",
    "neg_log_loss",
    "neg_brier_score",
    "d2_brier_score",
    "d2_log_loss_score",
    "positive_likelihood_ratio",
    "neg_negative_likelihood_ratio",
)


def _is_categorical_dtype(series: pd.Series) -> bool:
    import pandas as pd

    dtype = series.dtype
    return (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def infer_task(y: Any, *, task: str | None = None) -> Task:
    """Classification for bool/object/string/category targets or integers with few distinct
    values (<= MAX_CLASSES_FOR_INTEGER_TARGET); regression for floats and many-valued integers.
    An explicit ``task`` wins (validated)."""
    import numpy as np
    import pandas as pd

    if task is not None:
        return check_task(task)
    series = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))
    if _is_categorical_dtype(series):
        return "classification"
    if pd.api.types.is_integer_dtype(series.dtype):
        n_unique = series.nunique(dropna=True)
        return "classification" if n_unique <= MAX_CLASSES_FOR_INTEGER_TARGET else "regression"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "regression"
    raise InvalidRequestError(
        f"cannot infer the task from a target of dtype {series.dtype}; pass task explicitly"
    )


def scorers_for_task(task: str) -> list[str]:
    """The scikit-learn scorer names that fit ``task`` (sorted)."""
    from sklearn.metrics import get_scorer_names

    task = check_task(task)
    return [name for name in get_scorer_names() if _scorer_task(name) == task]


def _scorer_task(name: str) -> Task | None:
    if name in _REGRESSION_SCORERS:
        return "regression"
    if name.startswith(_CLASSIFICATION_PREFIXES):
        return "classification"
    return None


# Scorers defined for two classes only; a multiclass target needs their averaged variants.
BINARY_ONLY_SCORERS = frozenset(
    {
        "roc_auc",
        "average_precision",
        "f1",
        "precision",
        "recall",
        "jaccard",
        "positive_likelihood_ratio",
        "neg_negative_likelihood_ratio",
    }
)


def check_scoring(scoring: str, task: str, *, y: Any = None) -> str:
    """Return ``scoring`` if it is a scikit-learn scorer that fits ``task`` (and, given ``y``,
    its number of classes); refuse it otherwise with the valid choices."""
    from sklearn.metrics import get_scorer_names

    task = check_task(task)
    valid = scorers_for_task(task)
    if not isinstance(scoring, str) or scoring not in get_scorer_names():
        raise InvalidRequestError(
            f"unknown scoring {scoring!r}; valid scoring for {task}: {', '.join(valid)}"
        )
    if scoring not in valid:
        raise InvalidRequestError(
            f"scoring {scoring!r} does not fit task {task}; valid scoring for {task}: {', '.join(valid)}"
        )
    if y is not None and scoring in BINARY_ONLY_SCORERS:
        n_classes = _n_classes(y)
        if n_classes > 2:
            suggestions = [s for s in valid if s.startswith(scoring + "_") and s != scoring + "_samples"]
            raise InvalidRequestError(
                f"scoring {scoring!r} needs a binary target, the target has {n_classes} classes; "
                f"use one of: {', '.join(suggestions or ['accuracy', 'f1_macro'])}"
            )
    return scoring


def default_scoring(task: str, y: Any = None) -> str:
    """roc_auc for binary, f1_macro for multiclass, neg_root_mean_squared_error for regression.
    Without ``y`` a classification task is assumed to be binary."""
    task = check_task(task)
    if task == "regression":
        return "neg_root_mean_squared_error"
    if y is None:
        return "roc_auc"
    return "roc_auc" if _n_classes(y) <= 2 else "f1_macro"


def _n_classes(y: Any) -> int:
    import numpy as np
    import pandas as pd

    return pd.Series(np.asarray(y)).nunique(dropna=True)
