"""Hyperparameter tuning: typed search spaces, grid / random / Bayesian / successive-halving strategies behind ask/tell,
real cross-validation, fold-level pruning, budgets, parallel or Dask execution, MLflow runs.

    from mcp_server.hyperparameter_tuning import HyperparameterTuner
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    result = tuner.tune(estimator="random_forest", X=X, y=y, space={"max_depth": [5, 10]},
                        strategy="grid", scoring="roc_auc", cv_folds=5, seed=42)
    result.best_params, result.best_score, result.summary

See docs/tuning.md.
"""

# Names load on first use (PEP 562): the tool layer imports the request types without paying for
# numpy, scikit-learn and scikit-optimize before a server answers tools/list.
from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BayesianStrategy": "_strategies",
    "BestMarginPruner": "_pruning",
    "CategoricalDimension": "_space",
    "ColumnList": "_request",
    "Direction": "_types",
    "DistributionDimension": "_space",
    "EnsembleMember": "_types",
    "EnsembleResult": "_types",
    "EstimatorName": "_request",
    "ExecutionInterrupted": "_worker_pool",
    "FamilyResult": "_types",
    "FloatDimension": "_space",
    "GridStrategy": "_strategies",
    "HalvingOptions": "_halving",
    "HalvingStrategy": "_halving",
    "HyperparameterTuner": "_tuner",
    "KIND_TAG": "_mlflow_log",
    "PARENT_KIND": "_mlflow_log",
    "IntDimension": "_space",
    "MedianPruner": "_pruning",
    "NoiseAwarePruner": "_pruning",
    "OnTrialError": "_types",
    "ParamName": "_request",
    "Pruner": "_pruning",
    "RandomStrategy": "_strategies",
    "STRATEGIES": "_strategies",
    "SearchCancelled": "_loop",
    "SearchData": "_cv",
    "SearchPlan": "_request",
    "SearchSpace": "_space",
    "SearchStrategy": "_strategies",
    "StopReason": "_types",
    "TrialRecord": "_types",
    "TrialState": "_types",
    "TuneRequest": "_request",
    "TuningProgress": "_types",
    "TuningResult": "_types",
    "TuningSummary": "_types",
    "make_pruner": "_pruning",
    "make_splitter": "_cv",
    "make_strategy": "_choose",
    "plan_search": "_request",
    "prepare_search_data": "_cv",
    "run_stoppable": "_worker_pool",
    "shutdown_workers": "_worker_pool",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from mcp_server.hyperparameter_tuning._cv import SearchData, make_splitter, prepare_search_data
    from mcp_server.hyperparameter_tuning._halving import HalvingOptions, HalvingStrategy
    from mcp_server.hyperparameter_tuning._loop import SearchCancelled
    from mcp_server.hyperparameter_tuning._mlflow_names import KIND_TAG, PARENT_KIND
    from mcp_server.hyperparameter_tuning._worker_pool import ExecutionInterrupted, run_stoppable, shutdown_workers
    from mcp_server.hyperparameter_tuning._request import (
        ColumnList,
        EstimatorName,
        ParamName,
        SearchPlan,
        TuneRequest,
        plan_search,
    )
    from mcp_server.hyperparameter_tuning._pruning import (
        BestMarginPruner,
        MedianPruner,
        NoiseAwarePruner,
        Pruner,
        make_pruner,
    )
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
    )
    from mcp_server.hyperparameter_tuning._choose import make_strategy
    from mcp_server.hyperparameter_tuning._tuner import HyperparameterTuner
    from mcp_server.hyperparameter_tuning._types import (
        Direction,
        FamilyResult,
        OnTrialError,
        StopReason,
        TrialRecord,
        TrialState,
        TuningProgress,
        TuningResult,
        TuningSummary,
    )

__all__ = [
    "ColumnList",
    "EstimatorName",
    "ParamName",
    "STRATEGIES",
    "BayesianStrategy",
    "BestMarginPruner",
    "CategoricalDimension",
    "Direction",
    "DistributionDimension",
    "ExecutionInterrupted",
    "FamilyResult",
    "FloatDimension",
    "GridStrategy",
    "HalvingOptions",
    "HalvingStrategy",
    "HyperparameterTuner",
    "KIND_TAG",
    "PARENT_KIND",
    "IntDimension",
    "MedianPruner",
    "NoiseAwarePruner",
    "OnTrialError",
    "Pruner",
    "RandomStrategy",
    "SearchData",
    "SearchPlan",
    "SearchCancelled",
    "SearchSpace",
    "SearchStrategy",
    "StopReason",
    "TrialRecord",
    "TrialState",
    "TuningProgress",
    "TuningResult",
    "TuneRequest",
    "TuningSummary",
    "make_pruner",
    "make_splitter",
    "make_strategy",
    "plan_search",
    "prepare_search_data",
    "run_stoppable",
    "shutdown_workers",
]
