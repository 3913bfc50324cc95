"""HyperparameterTuner: the seed's public API (grid / random / Bayesian with train_fn / eval_fn) and
the declarative ``tune`` (estimator + X + y + scoring). Both build a SearchRequest for the one loop."""

from __future__ import annotations

import logging
import numbers
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.evaluation import (
    DEFAULT_NEAR_PERFECT,
    LeakCheck,
    ModelWarning,
    SplitRecord,
    SplitSpec,
    coerce_split,
    target_warnings,
)
from mcp_server.hyperparameter_tuning._cv import (
    MAX_CV_FOLDS,
    baseline_fold_scores,
    CallableEvaluator,
    EstimatorEvaluator,
    check_callables,
    check_cv_folds,
    compute_splits,
    describe_cv,
    is_classification_target,
    make_splitter,
    prepare_search_data,
    resolve_param_names,
    resolve_scorer,
)
from mcp_server.hyperparameter_tuning._parallel import BACKENDS, DEFAULT_BACKEND, check_n_jobs
from mcp_server.hyperparameter_tuning._portfolio import (
    AUTO,
    Portfolio,
    PortfolioEvaluator,
    check_auto,
    plan_portfolio,
)
from mcp_server.hyperparameter_tuning._pruning import make_pruner
from mcp_server.hyperparameter_tuning._search import SearchRequest, run_search
from mcp_server.hyperparameter_tuning._space import DEFAULT_MAX_GRID_SIZE, SearchSpace
from mcp_server.hyperparameter_tuning._strategies import STRATEGIES
from mcp_server.hyperparameter_tuning._types import Direction, OnTrialError, SearchedData, TuningResult

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)

# A search given neither max_trials nor a timeout runs for settings.default_time_budget_seconds.
DEFAULT_TIME_BUDGET_SECONDS = 60.0


class HyperparameterTuner:
    """Grid, random and Bayesian search with real cross-validation, pruning, budgets and MLflow runs."""

    def __init__(
        self,
        mlflow_tracker: Tracker | None = None,
        enable_mlflow: bool = True,
        enable_early_stopping: bool = False,
        early_stopping_patience: int = 5,
        *,
        min_delta: float = 0.0,
        settings: Any = None,
        n_jobs: int | None = 1,
        backend: str = DEFAULT_BACKEND,
        dask_address: str | None = None,
        pruning: Any = None,
        on_trial_error: OnTrialError | str = OnTrialError.RECORD,
    ) -> None:
        if not isinstance(early_stopping_patience, int) or early_stopping_patience < 1:
            raise InvalidRequestError(f"early_stopping_patience must be an integer >= 1, got {early_stopping_patience!r}")
        if not isinstance(min_delta, numbers.Real) or min_delta < 0:
            raise InvalidRequestError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.mlflow_tracker = mlflow_tracker
        self.enable_mlflow = enable_mlflow
        self.enable_early_stopping = enable_early_stopping
        self.early_stopping_patience = early_stopping_patience
        self.min_delta = float(min_delta)
        self.settings = settings
        self.n_jobs = check_n_jobs(n_jobs)
        if backend not in BACKENDS:
            raise InvalidRequestError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.dask_address = dask_address or getattr(settings, "dask_scheduler_address", None)
        self.pruning = make_pruner(pruning)
        self.on_trial_error = _on_trial_error(on_trial_error)
        self.last_result: TuningResult | None = None
        self.results: list[TuningResult] = []  # every search run by this tuner, oldest first

    # --- seed API ---------------------------------------------------------------------------
    def grid_search(
        self, param_grid: Mapping[str, Any], train_fn: Callable, eval_fn: Callable, maximize: bool = True,
        cv_folds: int | None = None, X: Any = None, y: Any = None, **options: Any,
    ) -> dict[str, Any]:
        """Try every combination of ``param_grid``; returns ``{"params", "score", ...}``."""
        return self._search_callables("grid", param_grid, train_fn, eval_fn, maximize=maximize,
                                      cv_folds=cv_folds, X=X, y=y, max_trials=options.pop("max_trials", None), **options)

    def random_search(
        self, param_distributions: Mapping[str, Any], n_iter: int = 20, train_fn: Callable | None = None,
        eval_fn: Callable | None = None, cv_folds: int | None = None, maximize: bool = True,
        X: Any = None, y: Any = None, *, random_state: int | None = None, **options: Any,
    ) -> dict[str, Any]:
        """Sample ``n_iter`` candidates (seeded); returns ``{"params", "score", ...}``."""
        return self._search_callables("random", param_distributions, train_fn, eval_fn, maximize=maximize,
                                      cv_folds=cv_folds, X=X, y=y, max_trials=n_iter, seed=random_state, **options)

    def bayesian_optimization(
        self, param_space: Mapping[str, Any], train_fn: Callable, eval_fn: Callable, n_calls: int = 50,
        random_state: int | None = 42, cv_folds: int | None = None, X: Any = None, y: Any = None,
        maximize: bool = True, **options: Any,
    ) -> dict[str, Any]:
        """Gaussian-process search over ``param_space`` for ``n_calls`` trials."""
        return self._search_callables("bayesian", param_space, train_fn, eval_fn, maximize=maximize,
                                      cv_folds=cv_folds, X=X, y=y, max_trials=n_calls, seed=random_state, **options)

    def get_tuning_summary(self) -> dict[str, Any]:
        """Summary of the last search (seed keys total_trials, best_score, mean_score, and more)."""
        if self.last_result is None:
            return {"total_trials": 0, "best_score": None, "mean_score": None}
        return self.last_result.summary.model_dump(mode="json") | {"parent_run_id": self.last_result.parent_run_id}

    def get_top_results(self, n: int = 5) -> list[dict[str, Any]]:
        """The n best completed trials of the last search, best first."""
        if not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"n must be an integer >= 1, got {n!r}")
        return [] if self.last_result is None else [t.to_seed_dict() for t in self.last_result.top(n)]

    # --- declarative API ----------------------------------------------------------------------
    def tune(
        self, *, estimator: Any, X: Any, y: Any, space: Mapping[str, Any] | None = None,
        strategy: str | None = None, scoring: str | None = None, cv_folds: int = 5,
        max_trials: int | None = None, timeout: float | None = None, seed: int | None = None,
        n_jobs: int | None = None, on_trial: Callable | None = None, should_stop: Any = None,
        pruning: Any = None, task: str | None = None, error_score: float | str = "raise",
        resume_from: str | None = None, run_name: str | None = None,
        on_trial_error: OnTrialError | str | None = None, early_stopping_patience: int | None = None,
        split: SplitSpec | Mapping[str, Any] | None = None, leak_check: LeakCheck = "stop",
        dataset: str = "dataset", dataset_source: Any = None, halving: Any = None,
    ) -> TuningResult:
        """Tune an sklearn estimator (or an allow-listed estimator name) by cross-validated ``scoring``.

        First the columns are screened for identifiers, dates and target leaks (``leak_check``).
        ``split`` (a ``SplitSpec``) holds out ``test_size`` of the rows, never seen by the search,
        and folds the rest by kind (kfold / group / time, its column never a feature); without it
        every row of X is cross-validated by (stratified) k-fold. ``dataset_source`` (a
        ``DatasetSource``): the rows searched are recorded as the parent run's dataset input.
        ``strategy="halving"`` runs successive halving; ``halving`` (a ``HalvingOptions`` or dict:
        factor, min_resource, resource, candidates, n_candidates) tunes it.

        ``estimator="auto"`` searches a portfolio of families (linear, LightGBM, histogram gradient
        boosting, extra trees, random forest), each from its cheap start, with ``strategy``
        (default bayesian, or random) within a family; the result names the winning ``estimator``
        and every family's best score. ``strategy`` defaults to random for a named estimator.
        Budget: ``max_trials`` and/or ``timeout`` (seconds from this call, its MLflow logging
        included); with neither, ``settings.default_time_budget_seconds`` (60)."""
        started_at = time.monotonic()
        auto = isinstance(estimator, str) and estimator == AUTO
        strategy = strategy or ("bayesian" if auto else "random")
        folds = check_cv_folds(cv_folds, max_folds=self._max_cv_folds(), allow_holdout=False)
        _check_xy(X, y)
        if error_score != "raise" and not isinstance(error_score, numbers.Real):
            raise InvalidRequestError(f"error_score must be 'raise' or a number, got {error_score!r}")
        seed = self._seed(seed, resume_from)
        spec = coerce_split(split)
        data = prepare_search_data(X, y, spec, task=_task_of(estimator, y, task), n_folds=folds, seed=seed,
                                   leak_check=leak_check, settings=self.settings, dataset=dataset)
        portfolio = None
        if auto:
            portfolio, task, objective = _plan_auto(strategy, space, resume_from, data.task), data.task, AUTO
            scoring = _resolve_scoring(scoring, task, data.y)
            search_space = portfolio.space()
            evaluator = _portfolio_evaluator(portfolio, data, task=task, seed=seed, scoring=scoring,
                                             error_score=error_score)
            strategy = "portfolio"
        else:
            model, task, space, objective, X_search = _resolve_estimator(estimator, data.X, data.y, space=space,
                                                                         task=data.task, seed=seed)
            scoring = _resolve_scoring(scoring, task, data.y)
            search_space = SearchSpace(space)
            param_names = resolve_param_names(model, search_space.names)
            evaluator = EstimatorEvaluator(model, X=X_search, y=data.y, splits=data.folds,
                                           scorer=resolve_scorer(scoring), error_score=error_score,
                                           param_names=param_names)
        budget_is_default = max_trials is None and timeout is None
        if budget_is_default:  # every search has a wall budget
            timeout = getattr(self.settings, "default_time_budget_seconds", DEFAULT_TIME_BUDGET_SECONDS)
        warnings = data.warnings + target_warnings(data.y, task, scoring)
        return self._record(run_search(self._search_request(
                         strategy, search_space, evaluator, direction=Direction.MAXIMIZE, scoring=scoring,
                         cv=data.cv, objective=objective, seed=seed, max_trials=max_trials,
                         timeout=timeout, n_jobs=n_jobs, on_trial=on_trial, should_stop=should_stop,
                         pruning=pruning, resume_from=resume_from, run_name=run_name,
                         on_trial_error=on_trial_error, early_stopping_patience=early_stopping_patience,
                         split=data.split, warnings=warnings, halving=halving, portfolio=portfolio,
                         started_at=started_at, budget_is_default=budget_is_default,
                         baseline_fold_scores=baseline_fold_scores(data.y, data.folds, task, scoring),
                         searched_data=SearchedData(dataset, dataset_source, data.X.assign(**{str(data.y.name): data.y}),
                                                    str(data.y.name)) if dataset_source is not None else None)))

    # --- internals ----------------------------------------------------------------------------
    def _search_callables(
        self, strategy: str, space: Mapping[str, Any], train_fn: Callable | None, eval_fn: Callable | None, *,
        maximize: bool, cv_folds: int | None, X: Any, y: Any, max_trials: int | None, seed: int | None = None,
        task: str | None = None, scoring: str = "score", **options: Any,
    ) -> dict[str, Any]:
        folds = check_cv_folds(cv_folds, max_folds=self._max_cv_folds(), allow_holdout=True)
        check_callables(train_fn, eval_fn, cv_folds=folds, has_data=X is not None or y is not None)
        seed = self._seed(seed, options.get("resume_from"))
        search_space = SearchSpace(space)
        splitter = splits = None
        if folds is not None:
            _check_xy(X, y)
            classification = task == "classification" if task else is_classification_target(y)
            splitter = make_splitter(folds, classification=classification, seed=seed)
            splits = compute_splits(splitter, X, y)
        evaluator = CallableEvaluator(train_fn, eval_fn, X=X, y=y, splits=splits)
        request = self._search_request(
            strategy, search_space, evaluator, direction=Direction.from_maximize(bool(maximize)), scoring=scoring,
            cv=describe_cv(splitter), objective=getattr(train_fn, "__name__", "train_fn"), seed=seed,
            max_trials=max_trials, **options)
        return self._record(run_search(request)).to_seed_dict()

    def _search_request(
        self, strategy: str, space: SearchSpace, evaluator: Any, *, direction: Direction, scoring: str, cv: str,
        objective: str, seed: int, max_trials: int | None, timeout: float | None = None, n_jobs: int | None = None,
        on_trial: Callable | None = None, should_stop: Any = None, pruning: Any = None,
        resume_from: str | None = None, run_name: str | None = None, on_trial_error: Any = None,
        early_stopping_patience: int | None = None, dask_address: str | None = None, backend: str | None = None,
        split: SplitRecord | None = None, warnings: list[ModelWarning] | None = None,
        searched_data: SearchedData | None = None, halving: Any = None, portfolio: Any = None,
        started_at: float | None = None, budget_is_default: bool = False,
        baseline_fold_scores: list[float] | None = None,
    ) -> SearchRequest:
        """The one request the search loop runs, checked and completed with this tuner's defaults."""
        if strategy not in STRATEGIES and not (portfolio is not None and strategy == "portfolio"):
            raise InvalidRequestError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        max_trials = self._check_max_trials(max_trials)
        if timeout is not None and (not isinstance(timeout, numbers.Real) or timeout <= 0):
            raise InvalidRequestError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if on_trial is not None and not callable(on_trial):
            raise InvalidRequestError(f"on_trial must be a callable, got {on_trial!r}")
        pruner = make_pruner(pruning) if pruning is not None else self.pruning
        if pruner is not None and evaluator.n_folds < 2:
            raise InvalidRequestError("pruning works between folds and needs cv_folds >= 2, got a single evaluation")
        patience = early_stopping_patience or (self.early_stopping_patience if self.enable_early_stopping else None)
        return SearchRequest(
            strategy=strategy, space=space, evaluator=evaluator, direction=direction, scoring=scoring,
            cv_description=cv, objective=objective, seed=seed, max_trials=max_trials,
            max_grid_size=getattr(self.settings, "max_grid_size", DEFAULT_MAX_GRID_SIZE),
            timeout=timeout, patience=patience, min_delta=self.min_delta, pruner=pruner,
            n_jobs=check_n_jobs(n_jobs) if n_jobs is not None else self.n_jobs,
            backend=backend or self.backend, dask_address=dask_address or self.dask_address,
            on_trial_error=_on_trial_error(on_trial_error) if on_trial_error is not None else self.on_trial_error,
            on_trial=on_trial, should_stop=should_stop, tracker=self._tracker(),
            resume_from=resume_from, run_name=run_name, split=split, warnings=list(warnings or []),
            searched_data=searched_data, halving=halving, portfolio=portfolio, started_at=started_at,
            budget_is_default=budget_is_default, baseline_fold_scores=baseline_fold_scores,
            near_perfect_score=getattr(self.settings, "near_perfect_score", DEFAULT_NEAR_PERFECT),
        )

    def _record(self, result: TuningResult) -> TuningResult:
        self.last_result = result
        self.results.append(result)
        return result

    def _tracker(self) -> Any:
        if not self.enable_mlflow:
            return None
        if self.mlflow_tracker is None:
            from mcp_server.mlflow_integration import get_mlflow_tracker

            logger.info("no tracker given: opening the configured MLflow store")
            self.mlflow_tracker = get_mlflow_tracker(settings=self.settings)
        return self.mlflow_tracker

    def _seed(self, seed: Any, resume_from: str | None) -> int:
        """A resumed search reuses its parent's seed (same splits, same random sequence)."""
        if seed is None and resume_from and self._tracker() is not None:
            recorded = self._tracker().get_run(resume_from).params.get("seed", "")
            if recorded.isdigit():
                return int(recorded)
        return _check_seed(seed)

    def _max_cv_folds(self) -> int:
        return getattr(self.settings, "max_cv_folds", MAX_CV_FOLDS)

    def _check_max_trials(self, max_trials: int | None) -> int | None:
        if max_trials is None:
            return None
        if not isinstance(max_trials, numbers.Integral) or isinstance(max_trials, bool) or max_trials < 1:
            raise InvalidRequestError(f"max_trials must be an integer >= 1, got {max_trials!r}")
        limit = getattr(self.settings, "max_trials", None)
        if limit is not None and max_trials > limit:
            raise ResourceLimitError(f"max_trials must be at most {limit} (settings.max_trials), got {max_trials}")
        return int(max_trials)


def _on_trial_error(value: OnTrialError | str) -> OnTrialError:
    try:
        return OnTrialError(value)
    except ValueError:
        raise InvalidRequestError(f"on_trial_error must be 'record' or 'raise', got {value!r}") from None


def _check_seed(seed: Any) -> int:
    if seed is None:
        return secrets.randbelow(2**31 - 1)  # drawn, then recorded in the result and the parent run
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise InvalidRequestError(f"seed must be an integer between 0 and 2**32 - 1, got {seed!r}")
    return int(seed)


def _check_xy(X: Any, y: Any) -> None:
    if X is None or y is None:
        raise InvalidRequestError("cross-validation needs both X and y")
    if len(X) != len(y):
        raise InvalidRequestError(f"X and y must have the same number of rows, got {len(X)} and {len(y)}")


def _task_of(estimator: Any, y: Any, task: str | None) -> str:
    """The task: as given, the estimator object's kind, or inferred from y for a registry name."""
    from sklearn.base import is_classifier

    if task is not None or isinstance(estimator, str):
        from mcp_server import estimators as registry

        return registry.infer_task(y, task=task)
    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise InvalidRequestError(f"estimator must be an allow-listed name or a scikit-learn estimator, got {estimator!r}")
    return "classification" if is_classifier(estimator) else "regression"


def _resolve_estimator(estimator: Any, X: Any, y: Any, *, space: Any, task: str, seed: int):
    """-> (unfitted model, task, space, objective name, X as the model expects it)."""
    if isinstance(estimator, str):
        from mcp_server import estimators as registry

        if space is None:
            space = registry.default_search_space(estimator, task)
        registry.check_params(estimator, task, dict.fromkeys(space))
        registry.check_space_limits(estimator, space)
        return registry.build_model(estimator, task, None, X=X, random_state=seed), task, space, estimator, X
    if space is None:
        raise InvalidRequestError("space is required when estimator is an estimator object")
    return estimator, task, space, type(estimator).__name__, X


def _plan_auto(strategy: str, space: Any, resume_from: str | None, task: str) -> Portfolio:
    check_auto(space=space, strategy=strategy, resume_from=resume_from)
    return plan_portfolio(task, searcher=strategy)


def _portfolio_evaluator(portfolio: Portfolio, data: Any, *, task: str, seed: int, scoring: str,
                         error_score: Any) -> PortfolioEvaluator:
    """One estimator evaluator per family, on the same rows, folds and scorer."""
    from mcp_server import estimators as registry

    scorer = resolve_scorer(scoring)
    evaluators = {}
    for family in portfolio.families:
        model = registry.build_model(family.name, task, None, X=data.X, random_state=seed)
        evaluators[family.name] = EstimatorEvaluator(
            model, X=data.X, y=data.y, splits=data.folds, scorer=scorer, error_score=error_score,
            param_names=resolve_param_names(model, family.space.names))
    return PortfolioEvaluator(evaluators)


def _resolve_scoring(scoring: str | None, task: str, y: Any) -> str:
    from mcp_server import estimators as registry

    if scoring is None:
        return registry.default_scoring(task, y)
    return registry.check_scoring(scoring, task)
