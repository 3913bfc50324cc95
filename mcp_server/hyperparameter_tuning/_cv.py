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
from dataclasses import dataclass, field
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


def baseline_fold_scores(y: Any, folds: list, task: str, scoring: str) -> list[float] | None:
    """A trivial model (prior class probabilities / the mean) scored by ``scoring`` on each of
    ``folds``: the bar a tuned model must clear. None when the scorer cannot score it."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    X = np.zeros((len(y), 1))  # the trivial model never looks at the features
    y = np.asarray(y)
    trivial = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor(strategy="mean")
    scorer = resolve_scorer(scoring)
    scores = []
    try:
        for train, valid in folds:
            fitted = trivial.fit(X[train], y[train])
            scores.append(float(scorer(fitted, X[valid], y[valid])))
    except (ValueError, TypeError, AttributeError):  # e.g. a scorer needing a decision the dummy lacks
        return None
    return scores


@dataclass
class SearchData:
    """The rows a search may use, its folds, and what was found on the way (the holdout stays out)."""

    X: Any
    y: Any
    task: str
    folds: list[tuple[np.ndarray, np.ndarray]]
    cv: str
    split: Any = None  # SplitRecord, when a split spec was given
    warnings: list[Any] = field(default_factory=list)


def prepare_search_data(
    X: Any, y: Any, spec: Any, *, task: str, n_folds: int, seed: int, leak_check: str, settings: Any = None,
    dataset: str = "dataset",
) -> SearchData:
    """Screen the columns (identifiers, dates, leaks), hold out the spec's test rows, fold the rest."""
    import pandas as pd

    from mcp_server import evaluation

    if not hasattr(X, "columns"):
        if spec is not None and spec.column is not None:
            raise InvalidRequestError(f"split.column {spec.column!r} needs X as a DataFrame holding that column")
        X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
    if not X.index.is_unique:
        raise InvalidRequestError("X must have a unique index: row ids identify the holdout rows")
    y = y.set_axis(X.index) if isinstance(y, pd.Series) else pd.Series(np.asarray(y), index=X.index)
    target = str(y.name) if y.name is not None and y.name not in X.columns else "target"
    y = y.rename(target)
    column = spec.column if spec is not None else None
    if spec is not None:
        evaluation.check_split(spec, X.assign(**{target: y}), target=target, n_folds=n_folds)
    features = [str(c) for c in X.columns if c != column]
    screened = evaluation.screen_features(X.assign(**{target: y}), target, features, dataset=dataset,
                                          settings=settings, extra_columns=[column] if column else [])
    warnings = evaluation.apply_leak_check(evaluation.leak_errors(screened), leak_check)
    classification = task == "classification" and is_classification_target(y)
    if spec is None:
        splitter = make_splitter(n_folds, classification=classification, seed=seed)
        return SearchData(X=X, y=y, task=task, folds=compute_splits(splitter, X, y), cv=describe_cv(splitter),
                          warnings=warnings)
    record = evaluation.holdout_rows(X, y, spec, classification=classification)
    X_train, y_train = X.loc[record.train_rows], y.loc[record.train_rows]
    folds = evaluation.cv_folds(X_train, y_train, spec, n_folds=n_folds, seed=seed, classification=classification)
    splitter = evaluation.cv_splitter(spec, n_folds=n_folds, seed=seed, classification=classification)
    warnings += evaluation.holdout_warnings(record, None, task)
    warnings += evaluation.entity_overlap(X, record, evaluation.entity_columns(X, exclude=set()))
    return SearchData(
        X=X_train.drop(columns=[column]) if column else X_train, y=y_train, task=task, folds=folds,
        cv=f"{evaluation.describe_splitter(splitter, spec)} on {record.n_train} rows; {record.description}",
        split=record, warnings=warnings,
    )
