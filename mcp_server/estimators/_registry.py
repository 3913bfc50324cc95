"""The allow-list of estimators: every model a caller may name, with defaults and search spaces.

Classes are referenced by fixed ``module:Class`` strings written here (never taken from callers)
and imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.threads import fit_threads

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")


def _int(low: int, high: int, *, log: bool = False) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, "log": log}


def _float(low: float, high: float, *, log: bool = False) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "log": log}


def _categorical(*choices: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(choices)}


@dataclass(frozen=True)
class EstimatorSpec:
    """One allow-listed model: its scikit-learn class per task, defaults and default search space."""

    name: str
    description: str
    classes: dict[Task, str]
    default_params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Distance- and gradient-based models need standardized inputs; trees do not.
    needs_scaling: bool = False
    # Upper bounds on the hyperparameters that size the work or the memory of one fit
    # (``n_estimators=10**9`` asked gradient boosting for 7.45 GiB up front): checked in every plan.
    limits: dict[str, float] = field(default_factory=dict)
    # The portfolio (estimator="auto", FLAML's low_cost_init_value and cost_relative2lgbm): a point
    # of the default space that is cheap to fit and still sound, where the family's search starts,
    # and the family's cost at that point relative to LightGBM's (measured: docs/tuning.md).
    low_cost_params: dict[str, Any] = field(default_factory=dict)
    relative_cost: float = 1.0
    # The family's second point in the portfolio (AutoGluon's and FLAML's preset configurations): a
    # costlier point of the default space that is strong on most tabular data. Random initial points
    # rarely find it within a minute on larger data (all_seasons, 9k rows: 3-4 LightGBM trials).
    strong_params: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> list[Task]:
        return [task for task in TASKS if task in self.classes]

    def estimator_class(self, task: Task) -> type:
        if task not in self.classes:
            raise InvalidRequestError(
                f"estimator '{self.name}' does not support task '{task}'; "
                f"it supports: {', '.join(self.tasks)}"
            )
        module_name, class_name = self.classes[task].split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def valid_params(self, task: Task) -> list[str]:
        return sorted(self.estimator_class(task)().get_params(deep=False))

    def accepts_random_state(self, task: Task) -> bool:
        return "random_state" in self.valid_params(task)


_TREE_SPACE = {
    "n_estimators": _int(50, 500, log=True),
    "max_depth": _categorical(None, 4, 8, 16, 32),
    "min_samples_split": _int(2, 20),
    "min_samples_leaf": _int(1, 10),
    "max_features": _categorical("sqrt", "log2", None),
}

# The forests' cheap start: few trees, depth bounded (unbounded trees cost 3-5x more on 10k rows).
_TREE_START = {"n_estimators": 50, "max_depth": 16, "min_samples_split": 2, "min_samples_leaf": 1,
               "max_features": "sqrt"}

# Far above any useful value (the default spaces stop at 500), far below a fit that runs for hours.
MAX_TREES = 5000
_TREE_LIMITS = {"n_estimators": MAX_TREES, "max_depth": 200, "max_leaf_nodes": 1_000_000}

_SPECS: tuple[EstimatorSpec, ...] = (
    EstimatorSpec(
        name="random_forest",
        description="Random forest: robust default for tabular data, little tuning needed.",
        classes={
            "classification": "sklearn.ensemble:RandomForestClassifier",
            "regression": "sklearn.ensemble:RandomForestRegressor",
        },
        default_params={"n_estimators": 200, "n_jobs": 1},
        search_space=_TREE_SPACE,
        limits=_TREE_LIMITS,
        low_cost_params=_TREE_START,
        relative_cost=5.0,
    ),
    EstimatorSpec(
        name="extra_trees",
        description="Extremely randomized trees: like a random forest, faster and more regularized.",
        classes={
            "classification": "sklearn.ensemble:ExtraTreesClassifier",
            "regression": "sklearn.ensemble:ExtraTreesRegressor",
        },
        default_params={"n_estimators": 200, "n_jobs": 1},
        search_space=_TREE_SPACE,
        limits=_TREE_LIMITS,
        low_cost_params=_TREE_START,
        relative_cost=3.0,
    ),
    EstimatorSpec(
        name="gradient_boosting",
        description="Gradient-boosted trees (classic): strong on small and medium tables.",
        classes={
            "classification": "sklearn.ensemble:GradientBoostingClassifier",
            "regression": "sklearn.ensemble:GradientBoostingRegressor",
        },
        default_params={},
        search_space={
            "n_estimators": _int(50, 500, log=True),
            "learning_rate": _float(0.01, 0.3, log=True),
            "max_depth": _int(2, 6),
            "subsample": _float(0.5, 1.0),
            "min_samples_leaf": _int(1, 20),
        },
        limits={**_TREE_LIMITS, "n_iter_no_change": 1000},
    ),
    EstimatorSpec(
        name="hist_gradient_boosting",
        description="Histogram gradient boosting: fast boosting for larger tables (10k+ rows).",
        classes={
            "classification": "sklearn.ensemble:HistGradientBoostingClassifier",
            "regression": "sklearn.ensemble:HistGradientBoostingRegressor",
        },
        default_params={},
        search_space={
            "learning_rate": _float(0.01, 0.3, log=True),
            "max_iter": _int(50, 500, log=True),
            "max_leaf_nodes": _int(8, 64, log=True),
            "min_samples_leaf": _int(5, 50),
            "l2_regularization": _float(1e-6, 10.0, log=True),
        },
        limits={"max_iter": MAX_TREES, "max_leaf_nodes": 65_536, "max_depth": 200, "n_iter_no_change": 1000},
        low_cost_params={"learning_rate": 0.1, "max_iter": 50, "max_leaf_nodes": 15, "min_samples_leaf": 20,
                         "l2_regularization": 1e-6},
        relative_cost=2.0,
    ),
    EstimatorSpec(
        name="lightgbm",
        description="LightGBM: leaf-wise gradient boosting, the field's standard for tabular data; fast at every size.",
        classes={"classification": "lightgbm:LGBMClassifier", "regression": "lightgbm:LGBMRegressor"},
        # verbose=-1: LightGBM prints warnings to stdout otherwise (the MCP stdio channel). One native
        # thread per fit unless the caller sets n_jobs: fits share the machine (architecture rule 19).
        # subsample_freq=1 makes ``subsample`` (bagging) take effect; with subsample=1 it changes nothing.
        default_params={"n_jobs": 1, "verbose": -1, "subsample_freq": 1},
        search_space={
            "n_estimators": _int(20, 1000, log=True),
            "num_leaves": _int(4, 256, log=True),
            "learning_rate": _float(0.01, 0.3, log=True),
            "min_child_samples": _int(2, 100, log=True),
            "subsample": _float(0.5, 1.0),
            "colsample_bytree": _float(0.3, 1.0),
            "reg_lambda": _float(1e-3, 10.0, log=True),
        },
        limits={"n_estimators": MAX_TREES, "num_leaves": 65_536, "max_depth": 200, "subsample_for_bin": 10_000_000},
        low_cost_params={"n_estimators": 50, "num_leaves": 15, "learning_rate": 0.1, "min_child_samples": 20,
                         "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0},
        relative_cost=1.0,
        # all_seasons pts, 5-fold group CV RMSE: 1.266 at the cheap start, 0.972 here (docs/tuning.md).
        strong_params={"n_estimators": 500, "num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 20,
                       "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0},
    ),
    EstimatorSpec(
        name="decision_tree",
        description="A single decision tree: interpretable baseline, overfits easily.",
        classes={
            "classification": "sklearn.tree:DecisionTreeClassifier",
            "regression": "sklearn.tree:DecisionTreeRegressor",
        },
        default_params={},
        search_space={
            "max_depth": _int(2, 20),
            "min_samples_split": _int(2, 20),
            "min_samples_leaf": _int(1, 20),
        },
        limits={"max_depth": 200, "max_leaf_nodes": 1_000_000},
    ),
    EstimatorSpec(
        name="logistic_regression",
        description="Logistic regression: fast, calibrated linear baseline for classification.",
        classes={"classification": "sklearn.linear_model:LogisticRegression"},
        # lbfgs often needs more than the default 100 iterations on unscaled-looking data.
        default_params={"max_iter": 1000},
        search_space={
            "C": _float(1e-3, 100.0, log=True),
            "class_weight": _categorical(None, "balanced"),
        },
        needs_scaling=True,
        limits={"max_iter": 100_000},
        low_cost_params={"C": 1.0, "class_weight": None},
        relative_cost=0.5,
    ),
    EstimatorSpec(
        name="ridge",
        description="Ridge regression: L2-regularized linear baseline for regression.",
        classes={"regression": "sklearn.linear_model:Ridge"},
        default_params={},
        search_space={"alpha": _float(1e-3, 100.0, log=True)},
        needs_scaling=True,
        low_cost_params={"alpha": 1.0},
        relative_cost=0.1,
    ),
    EstimatorSpec(
        name="linear_regression",
        description="Ordinary least squares: the simplest regression baseline (nothing to tune).",
        classes={"regression": "sklearn.linear_model:LinearRegression"},
        default_params={},
        search_space={"fit_intercept": _categorical(True, False)},
        needs_scaling=True,
    ),
    EstimatorSpec(
        name="knn",
        description="k-nearest neighbours: non-parametric, needs scaled features, slow on big data.",
        classes={
            "classification": "sklearn.neighbors:KNeighborsClassifier",
            "regression": "sklearn.neighbors:KNeighborsRegressor",
        },
        default_params={},
        search_space={
            "n_neighbors": _int(1, 50, log=True),
            "weights": _categorical("uniform", "distance"),
            "p": _categorical(1, 2),
        },
        needs_scaling=True,
        limits={"n_neighbors": 100_000, "leaf_size": 100_000},
    ),
    EstimatorSpec(
        name="svm",
        description="Support vector machine (RBF kernel): strong on small scaled data, slow past ~10k rows.",
        classes={"classification": "sklearn.svm:SVC", "regression": "sklearn.svm:SVR"},
        default_params={},
        search_space={
            "C": _float(1e-2, 100.0, log=True),
            "gamma": _categorical("scale", "auto"),
        },
        needs_scaling=True,
        limits={"max_iter": 10_000_000, "cache_size": 2048},
    ),
)

REGISTRY: dict[str, EstimatorSpec] = {spec.name: spec for spec in _SPECS}

# Parameters that size a fit's thread pool, under every name an estimator library uses (scikit-learn's
# n_jobs, LightGBM's num_threads and its aliases, XGBoost's nthread, CatBoost's thread_count):
# ``params: {"n_jobs": 100000}`` started 14,661 threads. Each must be an integer from 1 to the
# threads one fit may use (architecture rule 19), whatever the estimator.
THREAD_PARAMS = frozenset({"n_jobs", "num_threads", "num_thread", "nthread", "nthreads", "n_threads",
                           "thread_count"})

# The families estimator="auto" searches, per task (FLAML's default learners, scikit-learn's own
# linear models and forests): one linear model with scaling, three tree ensembles, two boosters.
PORTFOLIO: dict[Task, tuple[str, ...]] = {
    "classification": ("logistic_regression", "lightgbm", "hist_gradient_boosting", "extra_trees", "random_forest"),
    "regression": ("ridge", "lightgbm", "hist_gradient_boosting", "extra_trees", "random_forest"),
}


def portfolio(task: str) -> list[EstimatorSpec]:
    """The specs of the families ``estimator="auto"`` searches for ``task``, cheapest first."""
    return sorted((REGISTRY[name] for name in PORTFOLIO[check_task(task)]), key=lambda spec: spec.relative_cost)


def get_estimator_spec(name: str) -> EstimatorSpec:
    """The allow-listed spec called ``name``; unknown names are refused with the valid ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise InvalidRequestError(
            f"unknown estimator {name!r}; valid estimators: {', '.join(sorted(REGISTRY))}"
        ) from None


def check_task(task: str) -> Task:
    if task not in TASKS:
        raise InvalidRequestError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task  # type: ignore[return-value]


def check_limits(name: str, params: dict[str, Any], *, max_threads: int | None = None) -> None:
    """Refuse a number sent as a string (for any hyperparameter), and a work-sizing value
    (``EstimatorSpec.limits``, ``THREAD_PARAMS``) that is past its bound or not a number (``"n_estimators": "1000000000"`` passed unchecked and failed inside the
    fit), naming the field, the rule and the value. ``max_threads``: threads one fit may use
    (default: the current job's share, or this machine's usable cores outside a job)."""
    spec = get_estimator_spec(name)
    for key, value in params.items():
        if isinstance(value, str) and _is_number_text(value):
            raise InvalidRequestError(
                f"hyperparameter {key!r} of {name} must be a number, not a string: got {value!r}; "
                "send numbers without quotes")
        if key in THREAD_PARAMS:
            _check_threads(name, key, value, fit_threads() if max_threads is None else max_threads)
            continue
        limit = spec.limits.get(key)
        if limit is None or value is None:  # None: the estimator's own default (max_depth=None: grown to purity)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise InvalidRequestError(
                f"{key} of {name} must be a number at most {limit:,}, got {value!r} ({type(value).__name__}); "
                "send numbers without quotes")
        if value > limit:
            raise ResourceLimitError(
                f"{key} of {name} must be at most {limit:,} (it sizes the work and memory of one fit), got {value!r}"
            )


def _is_number_text(value: str) -> bool:
    """'1000000000', ' 5 ', '1e9', 'nan': text a caller meant as a number (no estimator here takes one)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_threads(name: str, key: str, value: Any, max_threads: int) -> None:
    if value is None:  # the estimator's default: one thread (scikit-learn) or the bounded pool (LightGBM)
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_threads:
        raise ResourceLimitError(
            f"{key} of {name} must be an integer from 1 to {max_threads} (the threads one fit may use on this "
            f"server: cores / max_concurrent_jobs / parallel trials), got {value!r}")


def check_space_limits(name: str, space: Any, *, max_threads: int | None = None) -> None:
    """The same bounds on a search space (a ``SearchSpace`` or its dict form): both ends of every
    int/float range and every choice."""
    dims = space.dimensions if hasattr(space, "dimensions") else None
    if dims is None:
        from mcp_server.search_space import SearchSpace  # below the registry (rule 20); imports numpy

        dims = SearchSpace(space).dimensions
    for dim in dims:
        values = list(getattr(dim, "choices", ())) + [getattr(dim, "low", None), getattr(dim, "high", None)]
        for value in values:
            if value is not None or hasattr(dim, "choices"):
                check_limits(name, {dim.name: value}, max_threads=max_threads)
