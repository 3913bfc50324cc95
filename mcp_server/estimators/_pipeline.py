"""Turn an allow-listed estimator name into a pipeline that predicts from raw columns."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mcp_server.error_handling import InvalidRequestError
from mcp_server.estimators._registry import (
    REGISTRY,
    Task,
    check_limits,
    check_task,
    get_estimator_spec,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

param_prefix = "model__"
PARAM_PREFIX = param_prefix
DEFAULT_RANDOM_STATE = 0
# One-hot columns per categorical feature are capped (rarer values share one column) so that a
# name-like column such as player_name (2,551 values) cannot blow up the design matrix.
MAX_ONE_HOT_CATEGORIES = 30
# Parameters a caller may not set, and why.
BLOCKED_PARAMS = {"verbose": "it prints to stdout, which is the MCP stdio channel"}


class EstimatorInfo(BaseModel):
    """What an agent needs to pick and tune a model."""

    name: str
    tasks: list[Task]
    description: str
    default_params: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    estimator_classes: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, float] = Field(
        default_factory=dict, description="Upper bounds on hyperparameters that size a fit's work or memory"
    )


def list_estimators(task: str | None = None) -> list[EstimatorInfo]:
    """Every allow-listed estimator (sorted by name), optionally only those supporting ``task``."""
    if task is not None:
        task = check_task(task)
    return [
        EstimatorInfo(
            name=spec.name,
            tasks=spec.tasks,
            description=spec.description,
            default_params=copy.deepcopy(spec.default_params),
            search_space=copy.deepcopy(spec.search_space),
            estimator_classes={t: path.replace(":", ".") for t, path in spec.classes.items()},
            limits=dict(spec.limits),
        )
        for spec in sorted(REGISTRY.values(), key=lambda s: s.name)
        if task is None or task in spec.classes
    ]


def default_search_space(name: str, task: str | None = None) -> dict[str, dict[str, Any]]:
    """A copy of the estimator's default search space (checked against ``task`` if given)."""
    spec = get_estimator_spec(name)
    if task is not None:
        spec.estimator_class(check_task(task))
    return copy.deepcopy(spec.search_space)


def to_pipeline_params(params: dict[str, Any]) -> dict[str, Any]:
    """Prefix hyperparameter names with ``model__`` for ``Pipeline.set_params``."""
    return {
        key if key.startswith(param_prefix) else f"{param_prefix}{key}": value
        for key, value in params.items()
    }


def check_params(name: str, task: str, params: dict[str, Any] | None, *,
                 max_threads: int | None = None) -> dict[str, Any]:
    """Validate hyperparameter names (with or without ``model__``) against the estimator;
    return them without the prefix. Unknown names are refused with the valid ones; so are numbers
    sent as strings (no allow-listed estimator takes a numeric string, and ``"1000000000"`` went
    past the bounds to fail inside the fit) and work-sizing values past their bounds, threads
    included (``check_limits``; ``max_threads``: threads one fit may use)."""
    spec = get_estimator_spec(name)
    task = check_task(task)
    valid = spec.valid_params(task)
    cleaned: dict[str, Any] = {}
    for key, value in (params or {}).items():
        bare = key.removeprefix(param_prefix) if isinstance(key, str) else key
        if bare in BLOCKED_PARAMS:
            raise InvalidRequestError(
                f"hyperparameter {bare!r} of {name} may not be set: {BLOCKED_PARAMS[bare]}"
            )
        if bare not in valid:
            allowed = [p for p in valid if p not in BLOCKED_PARAMS]
            raise InvalidRequestError(
                f"unknown hyperparameter {bare!r} for {name} ({task}); "
                f"valid hyperparameters: {', '.join(allowed)}"
            )
        cleaned[bare] = value
    check_limits(name, cleaned, max_threads=max_threads)
    return cleaned


def _column_groups(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    import pandas as pd

    numeric, categorical = [], []
    for column in X.columns:
        dtype = X[column].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if pd.api.types.is_datetime64_any_dtype(dtype):
                logger.warning("column %r is a datetime and is not used as a feature", column)
                continue
            categorical.append(column)
        else:
            numeric.append(column)
    return numeric, categorical


def build_preprocessor(*, X: pd.DataFrame | None = None, scale: bool = True) -> Any:
    """Impute + (optionally) scale numeric columns; impute + one-hot encode categorical ones.
    Without ``X`` the column groups are chosen by dtype at fit time."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps = [
        ("impute", SimpleImputer(strategy="most_frequent")),
        (
            "encode",
            OneHotEncoder(
                handle_unknown="ignore", max_categories=MAX_ONE_HOT_CATEGORIES, sparse_output=False
            ),
        ),
    ]
    if X is not None:
        numeric_columns, categorical_columns = _column_groups(X)
    else:
        numeric_columns = make_column_selector(dtype_include="number", dtype_exclude="bool")
        categorical_columns = make_column_selector(
            dtype_exclude=["number", "datetime", "datetimetz"]
        )
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), numeric_columns),
            ("categorical", Pipeline(categorical_steps), categorical_columns),
        ],
        remainder="drop",
    )


def build_model(
    name: str,
    task: str,
    params: dict[str, Any] | None = None,
    *,
    X: pd.DataFrame | None = None,
    random_state: int | None = None,
) -> Any:
    """Pipeline(preprocess → model) for an allow-listed estimator. ``params`` are given without
    the ``model__`` prefix; the estimator's defaults apply underneath them. Estimators that take a
    ``random_state`` get ``random_state`` (default 0) unless ``params`` sets it."""
    from sklearn.pipeline import Pipeline

    spec = get_estimator_spec(name)
    task = check_task(task)
    estimator_class = spec.estimator_class(task)
    merged = {**spec.default_params, **check_params(name, task, params)}
    if spec.accepts_random_state(task) and "random_state" not in merged:
        merged["random_state"] = DEFAULT_RANDOM_STATE if random_state is None else random_state
    try:
        estimator = estimator_class(**merged)
        # Surface bad values now (as the caller's error) rather than deep inside a CV fit. LightGBM
        # states no parameter constraints: it checks its values when it fits.
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"invalid hyperparameters for {name} ({task}): {exc}") from None
    return Pipeline(
        [("preprocess", build_preprocessor(X=X, scale=spec.needs_scaling)), ("model", estimator)]
    )


def build_ensemble_model(
    members: list[tuple[str, dict[str, Any] | None, float]],
    task: str,
    *,
    X: pd.DataFrame | None = None,
    random_state: int | None = None,
) -> Any:
    """A weighted ensemble of allow-listed estimators, each ``(name, params, weight)`` in its own
    ``build_model`` pipeline: soft voting (weighted class probabilities) for classification, the
    weighted mean for regression — how a search's ensemble was scored on its folds."""
    from sklearn.ensemble import VotingClassifier, VotingRegressor

    if len(members) < 2:
        raise InvalidRequestError(f"an ensemble needs at least 2 members, got {len(members)}")
    weights = [float(weight) for _, _, weight in members]
    if any(not weight > 0 for weight in weights):
        raise InvalidRequestError(f"ensemble weights must be > 0, got {weights}")
    task = check_task(task)
    named = [(f"m{index}_{name}", build_model(name, task, params, X=X, random_state=random_state))
             for index, (name, params, _) in enumerate(members)]
    if task == "classification":
        for label, model in named:
            if not hasattr(model[-1], "predict_proba"):
                raise InvalidRequestError(f"ensemble member {label} gives no class probabilities to average")
        return VotingClassifier(named, voting="soft", weights=weights)
    return VotingRegressor(named, weights=weights)
