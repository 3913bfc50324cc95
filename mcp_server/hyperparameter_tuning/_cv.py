"""Evaluation of one candidate, one fold at a time (so the loop can prune between folds).

Two evaluators share the ``n_folds`` / ``evaluate_fold(params, fold)`` shape:

* ``CallableEvaluator``: the seed's ``train_fn`` / ``eval_fn``. With ``cv_folds >= 2`` the tuner splits
  X, y itself and calls ``train_fn(params, X_train, y_train)`` / ``eval_fn(model, X_val, y_val)`` per fold;
  otherwise ``train_fn(params)`` / ``eval_fn(model)`` once (the caller holds out data).
* ``EstimatorEvaluator``: clone + set_params + fit + scorer per fold, as ``cross_val_score`` does.

Both are plain picklable objects so joblib (loky, Dask) can ship them to workers.
"""

from __future__ import annotations

import inspect
import logging
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError

logger = logging.getLogger(__name__)

MAX_CV_FOLDS = 20


def is_classification_target(y: Any) -> bool:
    from sklearn.utils.multiclass import type_of_target

    return type_of_target(y) in ("binary", "multiclass")


def make_splitter(n_folds: int, *, classification: bool, seed: int) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    cls = StratifiedKFold if classification else KFold
    return cls(n_splits=n_folds, shuffle=True, random_state=seed)


def describe_cv(splitter: Any | None) -> str:
    if splitter is None:
        return "holdout (train_fn(params) / eval_fn(model), evaluated once)"
    return f"{type(splitter).__name__}(n_splits={splitter.n_splits}, shuffle=True, random_state={splitter.random_state})"


def check_cv_folds(cv_folds: Any, *, max_folds: int = MAX_CV_FOLDS, allow_holdout: bool) -> int | None:
    """None / 0 / 1 -> None (holdout, if allowed); 2..max_folds -> the int."""
    if cv_folds is None or (isinstance(cv_folds, numbers.Integral) and not isinstance(cv_folds, bool) and cv_folds in (0, 1)):
        if allow_holdout:
            return None
        raise InvalidRequestError(f"cv_folds must be between 2 and {max_folds}, got {cv_folds}")
    if not isinstance(cv_folds, numbers.Integral) or isinstance(cv_folds, bool) or not 2 <= cv_folds <= max_folds:
        low = 0 if allow_holdout else 2
        raise InvalidRequestError(f"cv_folds must be between {low} and {max_folds}, got {cv_folds!r}")
    return int(cv_folds)


def _accepts(fn: Callable, n_args: int) -> bool:
    try:
        inspect.signature(fn).bind(*([None] * n_args))
    except TypeError:
        return False
    except ValueError:  # no signature available (some builtins): assume it fits
        return True
    return True


def _signature(fn: Callable) -> str:
    try:
        return f"{getattr(fn, '__name__', 'fn')}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def check_callables(train_fn: Callable, eval_fn: Callable, *, cv_folds: int | None, has_data: bool) -> None:
    """Refuse, up front, a CV request the functions cannot honour (never repeat one evaluation k times)."""
    if not callable(train_fn) or not callable(eval_fn):
        raise InvalidRequestError("train_fn and eval_fn must be callables")
    if cv_folds is None:
        if has_data:
            raise InvalidRequestError(
                "X and y are only used for cross-validation; pass cv_folds >= 2 with "
                "train_fn(params, X_train, y_train) / eval_fn(model, X_val, y_val), or drop X and y "
                "and evaluate on your own holdout with train_fn(params) / eval_fn(model)"
            )
        for fn, what in ((train_fn, "train_fn(params)"), (eval_fn, "eval_fn(model)")):
            if not _accepts(fn, 1):
                raise InvalidRequestError(
                    f"without cross-validation the tuner calls {what}, but {_signature(fn)} needs more "
                    "arguments; pass X, y and cv_folds >= 2 to cross-validate"
                )
        return
    problems = [
        f"{_signature(fn)} cannot be called as {what}"
        for fn, what in (
            (train_fn, "train_fn(params, X_train, y_train)"),
            (eval_fn, "eval_fn(model, X_val, y_val)"),
        )
        if not _accepts(fn, 3)
    ]
    if problems:
        raise InvalidRequestError(
            f"cv_folds={cv_folds} needs functions the tuner can give each fold's data: "
            + "; ".join(problems)
            + ". Change them to take (params, X_train, y_train) and (model, X_val, y_val), or pass "
            "cv_folds=None to evaluate once on your own holdout"
        )
    if not has_data:
        raise InvalidRequestError(f"cv_folds={cv_folds} needs X and y to split; pass X=..., y=...")


def take(data: Any, indices: np.ndarray) -> Any:
    """Rows of an array, DataFrame, Series or list by position."""
    if hasattr(data, "iloc"):
        return data.iloc[indices]
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not isinstance(data, list):
        return np.asarray(data)[indices]
    return [data[i] for i in indices]


def compute_splits(splitter: Any, X: Any, y: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        return [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(X, y)]
    except ValueError as exc:
        raise InvalidRequestError(f"cannot split the data into {splitter.n_splits} folds: {exc}") from None


class CallableEvaluator:
    def __init__(
        self,
        train_fn: Callable,
        eval_fn: Callable,
        *,
        X: Any = None,
        y: Any = None,
        splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.train_fn, self.eval_fn = train_fn, eval_fn
        self.X, self.y, self.splits = X, y, splits

    @property
    def n_folds(self) -> int:
        return len(self.splits) if self.splits else 1

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        if not self.splits:
            return _as_score(self.eval_fn(self.train_fn(dict(params))))
        train_idx, val_idx = self.splits[fold]
        model = self.train_fn(dict(params), take(self.X, train_idx), take(self.y, train_idx))
        return _as_score(self.eval_fn(model, take(self.X, val_idx), take(self.y, val_idx)))


class EstimatorEvaluator:
    def __init__(
        self,
        estimator: Any,
        *,
        X: Any,
        y: Any,
        splits: list[tuple[np.ndarray, np.ndarray]],
        scorer: Any,
        error_score: float | str = "raise",
        param_names: dict[str, str] | None = None,
    ) -> None:
        self.estimator, self.X, self.y, self.splits = estimator, X, y, splits
        self.scorer, self.error_score = scorer, error_score
        self.param_names = param_names or {}  # space name -> estimator param name (e.g. model__x)

    @property
    def n_folds(self) -> int:
        return len(self.splits)

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        from sklearn.base import clone

        train_idx, val_idx = self.splits[fold]
        model = clone(self.estimator).set_params(
            **{self.param_names.get(k, k): v for k, v in params.items()}
        )
        try:
            model.fit(take(self.X, train_idx), take(self.y, train_idx))
        except Exception as exc:
            if self.error_score == "raise":
                raise
            # sklearn's error_score contract: the fold scores error_score, with a warning.
            warnings.warn(f"fit failed on fold {fold} with {params}: {exc!r}; scored {self.error_score}", stacklevel=2)
            return float(self.error_score)
        return _as_score(self.scorer(model, take(self.X, val_idx), take(self.y, val_idx)))


def _as_score(value: Any) -> float:
    if isinstance(value, dict):
        raise TypeError("eval_fn must return one number, got a dict")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"eval_fn must return a number, got {value!r}") from None


def resolve_param_names(estimator: Any, names: list[str]) -> dict[str, str]:
    """Map space names to estimator params: as given, or ``<last step>__name`` for a Pipeline."""
    valid = set(estimator.get_params(deep=True))
    last_step = estimator.steps[-1][0] if hasattr(estimator, "steps") else None
    mapping: dict[str, str] = {}
    for name in names:
        if name in valid:
            mapping[name] = name
        elif last_step and f"{last_step}__{name}" in valid:
            mapping[name] = f"{last_step}__{name}"
        else:
            shown = sorted(p for p in valid if "__" not in p or (last_step and p.startswith(f"{last_step}__")))
            raise InvalidRequestError(
                f"search space parameter {name!r} is not a parameter of {type(estimator).__name__}; "
                f"valid: {', '.join(shown)}"
            )
    return mapping


def resolve_scorer(scoring: str) -> Any:
    from sklearn.metrics import get_scorer, get_scorer_names

    if not isinstance(scoring, str) or scoring not in get_scorer_names():
        raise InvalidRequestError(f"unknown scoring {scoring!r}; use a scikit-learn scorer name such as roc_auc")
    return get_scorer(scoring)
