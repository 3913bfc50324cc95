"""Allow-listed scikit-learn estimators, task inference and scoring checks.

Callers name a model (``random_forest``, ``logistic_regression``, …); no import path ever comes
from a caller. ``build_model`` wraps the estimator in a preprocessing pipeline whose last step is
``"model"``, so hyperparameters go through ``to_pipeline_params`` (``model__`` prefix) for
``Pipeline.set_params``.
"""

from mcp_server.estimators._pipeline import (
    BLOCKED_PARAMS,
    DEFAULT_RANDOM_STATE,
    MAX_ONE_HOT_CATEGORIES,
    PARAM_PREFIX,
    EstimatorInfo,
    build_ensemble_model,
    build_model,
    build_preprocessor,
    check_params,
    default_search_space,
    list_estimators,
    param_prefix,
    to_pipeline_params,
)
from mcp_server.estimators._registry import (
    PORTFOLIO,
    REGISTRY,
    TASKS,
    EstimatorSpec,
    Task,
    THREAD_PARAMS,
    check_limits,
    check_space_limits,
    check_task,
    get_estimator_spec,
    portfolio,
)
from mcp_server.estimators._tasks import (
    BINARY_ONLY_SCORERS,
    MAX_CLASSES_FOR_INTEGER_TARGET,
    check_scoring,
    default_scoring,
    infer_task,
    scorers_for_task,
)

__all__ = [
    "BINARY_ONLY_SCORERS",
    "BLOCKED_PARAMS",
    "DEFAULT_RANDOM_STATE",
    "MAX_CLASSES_FOR_INTEGER_TARGET",
    "MAX_ONE_HOT_CATEGORIES",
    "PARAM_PREFIX",
    "PORTFOLIO",
    "REGISTRY",
    "TASKS",
    "EstimatorInfo",
    "EstimatorSpec",
    "Task",
    "build_ensemble_model",
    "build_model",
    "build_preprocessor",
    "THREAD_PARAMS",
    "check_limits",
    "check_params",
    "check_space_limits",
    "check_scoring",
    "check_task",
    "default_scoring",
    "default_search_space",
    "get_estimator_spec",
    "infer_task",
    "list_estimators",
    "param_prefix",
    "portfolio",
    "scorers_for_task",
    "to_pipeline_params",
]
