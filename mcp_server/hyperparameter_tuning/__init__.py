"""Hyperparameter tuning: typed search spaces, grid / random / Bayesian / successive-halving strategies behind ask/tell,
real cross-validation, fold-level pruning, budgets, parallel or Dask execution, MLflow runs.

    from mcp_server.hyperparameter_tuning import HyperparameterTuner
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    result = tuner.tune(estimator="random_forest", X=X, y=y, space={"max_depth": [5, 10]},
                        strategy="grid", scoring="roc_auc", cv_folds=5, seed=42)
    result.best_params, result.best_score, result.summary

See docs/tuning.md.
"""

from mcp_server.hyperparameter_tuning._cv import SearchData, make_splitter, prepare_search_data
from mcp_server.hyperparameter_tuning._halving import HalvingOptions, HalvingStrategy
from mcp_server.hyperparameter_tuning._loop import SearchCancelled
from mcp_server.hyperparameter_tuning._pruning import BestMarginPruner, MedianPruner, Pruner, make_pruner
from mcp_server.hyperparameter_tuning._space import (
    CategoricalDimension,
    DistributionDimension,
    FloatDimension,
    IntDimension,
    SearchSpace,
)
from mcp_server.hyperparameter_tuning._strategies import (
    STRATEGIES,
    BayesianStrategy,
    GridStrategy,
    RandomStrategy,
    SearchStrategy,
    make_strategy,
)
from mcp_server.hyperparameter_tuning._tuner import HyperparameterTuner
from mcp_server.hyperparameter_tuning._types import (
    Direction,
    OnTrialError,
    StopReason,
    TrialRecord,
    TrialState,
    TuningProgress,
    TuningResult,
    TuningSummary,
)

__all__ = [
    "STRATEGIES",
    "BayesianStrategy",
    "BestMarginPruner",
    "CategoricalDimension",
    "Direction",
    "DistributionDimension",
    "FloatDimension",
    "GridStrategy",
    "HalvingOptions",
    "HalvingStrategy",
    "HyperparameterTuner",
    "IntDimension",
    "MedianPruner",
    "OnTrialError",
    "Pruner",
    "RandomStrategy",
    "SearchData",
    "SearchCancelled",
    "SearchSpace",
    "SearchStrategy",
    "StopReason",
    "TrialRecord",
    "TrialState",
    "TuningProgress",
    "TuningResult",
    "TuningSummary",
    "make_pruner",
    "make_splitter",
    "make_strategy",
    "prepare_search_data",
]
