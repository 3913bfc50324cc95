"""One search, end to end: strategy + evaluator + execution + loop + MLflow layout -> TuningResult.

Both public paths (the seed's train_fn / eval_fn methods and the declarative ``tune``) build a
``SearchRequest`` and call ``run_search``.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import ExecutionError, InvalidRequestError
from mcp_server.evaluation import DEFAULT_NEAR_PERFECT, ModelWarning, SplitRecord, below_baseline_cv, near_perfect
from mcp_server.hyperparameter_tuning._cv import EstimatorEvaluator
from mcp_server.hyperparameter_tuning._loop import LoopOutcome, SearchLoop
from mcp_server.hyperparameter_tuning._mlflow_log import TuningRunLogger
from mcp_server.hyperparameter_tuning._mlflow_resume import load_completed_trials
from mcp_server.hyperparameter_tuning._parallel import execution
from mcp_server.hyperparameter_tuning._portfolio import FAMILY_KEY, Portfolio, PortfolioEvaluator, family_results
from mcp_server.hyperparameter_tuning._pruning import Pruner, pruner_params
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._choose import make_strategy
from mcp_server.hyperparameter_tuning._types import (
    Direction,
    OnTrialError,
    SearchedData,
    StopReason,
    TrialRecord,
    TrialState,
    TuningProgress,
    TuningResult,
    TuningSummary,
)

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)


@dataclass
class SearchRequest:
    strategy: str
    space: SearchSpace
    evaluator: Any
    direction: Direction
    scoring: str
    cv_description: str
    objective: str
    seed: int
    max_trials: int | None
    max_grid_size: int
    timeout: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    pruner: Pruner | None = None
    n_jobs: int = 1
    backend: str = "auto"
    dask_address: str | None = None
    on_trial_error: OnTrialError = OnTrialError.RECORD
    on_trial: Callable[[TrialRecord, TuningProgress], Any] | None = None
    should_stop: Callable[[], bool] | threading.Event | None = None
    tracker: Tracker | None = None  # None: log nothing
    resume_from: str | None = None
    run_name: str | None = None
    split: SplitRecord | None = None  # the holdout kept out of this search
    warnings: list[ModelWarning] = field(default_factory=list)
    near_perfect_score: float = DEFAULT_NEAR_PERFECT
    searched_data: SearchedData | None = None  # recorded as the parent's dataset input
    halving: Any = None  # HalvingOptions, for strategy="halving"
    portfolio: Portfolio | None = None  # estimator="auto": the families searched (the evaluator is a PortfolioEvaluator)
    # The budget (timeout) counts from here (time.monotonic(): the caller's start, data preparation
    # included); None: from run_search's start. The search, its MLflow finish included, ends by then.
    started_at: float | None = None
    budget_is_default: bool = False  # timeout is settings.default_time_budget_seconds, not the caller's
    baseline_fold_scores: list[float] | None = None  # a trivial model on the same folds: the bar to clear


def _stop_check(should_stop: Any) -> Callable[[], bool] | None:
    if should_stop is None:
        return None
    if hasattr(should_stop, "is_set"):
        return should_stop.is_set
    if callable(should_stop):
        return should_stop
    raise InvalidRequestError(f"should_stop must be a callable or a threading.Event, got {should_stop!r}")


def _parent_params(req: SearchRequest, halving: Any = None) -> dict[str, Any]:
    return {
        **({"halving": halving.parent_param()} if halving is not None else {}),
        **({"portfolio": req.portfolio.to_json_string()} if req.portfolio is not None else {}),
        # The folds as the split spec's fields (split.* below, the seed), never the splitter's repr.
        "strategy": req.strategy, "space": req.space.to_json_string(), "cv_folds": req.evaluator.n_folds,
        "scoring": req.scoring, "seed": req.seed, "direction": req.direction.value,
        "objective": req.objective, "max_trials": req.max_trials, "n_jobs": req.n_jobs,
        **pruner_params(req.pruner),
        "early_stopping_patience": req.patience if req.patience is not None else "none",
        **(req.split.spec.as_params() if req.split is not None else {}),
    }


def _parent_name(req: SearchRequest) -> str:
    """What differs first, as pipeline runs name themselves: the role, the estimator, the data."""
    data = req.searched_data
    on = f" {data.name} {data.target}" if data is not None else ""
    return f"search {req.objective}{on} ({req.strategy})"[:250]


def _plan_halving(req: SearchRequest) -> Any:
    from sklearn.base import is_classifier

    from mcp_server.hyperparameter_tuning._cv import is_classification_target
    from mcp_server.hyperparameter_tuning._halving import coerce_halving, plan_halving

    if req.pruner is not None:
        raise InvalidRequestError("halving already stops weak candidates at each rung; use it without pruning")
    estimator = getattr(req.evaluator, "estimator", None)
    y = getattr(req.evaluator, "y", None)
    classification = is_classifier(estimator) if estimator is not None else (
        y is not None and is_classification_target(y))
    return plan_halving(coerce_halving(req.halving), req.evaluator, req.space, seed=req.seed,
                        max_trials=req.max_trials,
                        repeat=req.max_trials is not None or (req.timeout is not None and not req.budget_is_default),
                        classification=classification, max_grid_size=req.max_grid_size)


# Time kept, out of a budget, for the search's MLflow finish (flush the trials, tags, summary and
# history plot): measured 0.3-1.0 s on local sqlite on the loaded 2-core box, once matplotlib is
# imported (docs/tuning.md); never more than 10 % of the budget.
FINISH_RESERVE_SECONDS = 1.0
# Share of the budget a fold running at the deadline may take to end by itself before it is killed.
KILL_GRACE = 0.04
# Candidates a random search bounded only by time draws (its budget ends it long before).
TIMED_RANDOM_CANDIDATES = 500


def search_deadline(req: SearchRequest, now: float) -> float | None:
    """When the loop stops starting (and running) trials: the budget's end, less the finish reserve."""
    if req.timeout is None:
        return None
    reserve = min(FINISH_RESERVE_SECONDS, 0.1 * req.timeout) if req.tracker is not None else 0.0
    return (req.started_at if req.started_at is not None else now) + req.timeout - reserve


def _stop_or_deadline(should_stop: Callable[[], bool] | None, req: SearchRequest,
                      deadline: float | None) -> Callable[[], bool] | None:
    """What a killable executor polls: a cancel, or the deadline passed by KILL_GRACE of the budget.
    At the deadline no fold starts; a fold still running KILL_GRACE later is killed with its worker
    (whose replacement starts cold: 2-8 s), so a fold that ends by itself keeps the warm worker."""
    if deadline is None:
        return should_stop
    kill_at = deadline + KILL_GRACE * req.timeout
    return lambda: (should_stop is not None and should_stop()) or time.monotonic() >= kill_at


def _import_the_plotting_now() -> None:
    """matplotlib takes ~2 s to import on first use: import it while the trials run, not in the
    finish a budget must hold (in a daemon thread: the loop mostly waits on workers)."""
    import sys

    if "matplotlib.figure" not in sys.modules:
        from mcp_server.hyperparameter_tuning import _plots

        threading.Thread(target=_plots.warm_up, name="import-matplotlib", daemon=True).start()


def _ensemble_reserve(req: SearchRequest) -> float:
    """Seconds an auto search keeps, out of its budget, for its ensemble (``_ensemble``)."""
    from mcp_server.hyperparameter_tuning._ensemble import BUDGET_SHARE

    return BUDGET_SHARE * req.timeout if req.portfolio is not None and req.timeout is not None else 0.0


def _add_ensemble(req: SearchRequest, result: TuningResult, outcome: LoopOutcome, deadline: float | None) -> None:
    """estimator='auto': the weighted ensemble of the best trials, if it beats the best one on the folds."""
    if req.portfolio is None or outcome.error is not None or outcome.stop_reason is StopReason.CANCELLED:
        return
    from mcp_server.hyperparameter_tuning._cv import resolve_scorer
    from mcp_server.hyperparameter_tuning._ensemble import build_ensemble

    try:
        result.ensemble = build_ensemble(result.trials, req.evaluator, scorer=resolve_scorer(req.scoring),
                                         sign=req.direction.sign, task=_task(req.evaluator), deadline=deadline,
                                         should_stop=_stop_check(req.should_stop))
    except Exception:  # the search's own winner stands
        logger.exception("the ensemble of the search's best trials could not be built")


def _task(evaluator: PortfolioEvaluator) -> str:
    from sklearn.base import is_classifier

    first = next(iter(evaluator.evaluators.values()))
    return "classification" if is_classifier(first.estimator) else "regression"


def run_search(req: SearchRequest) -> TuningResult:
    full_deadline = search_deadline(req, time.monotonic())
    deadline = None if full_deadline is None else full_deadline - _ensemble_reserve(req)
    if req.tracker is not None and req.timeout is not None:
        _import_the_plotting_now()
    n_candidates = req.max_trials if req.max_trials is not None else (
        TIMED_RANDOM_CANDIDATES if req.timeout is not None and req.strategy == "random" else 0)
    halving = _plan_halving(req) if req.strategy == "halving" else None
    if req.portfolio is not None:
        strategy, fell_back = req.portfolio.strategy(seed=req.seed, deadline=deadline), False
    else:
        strategy, fell_back = make_strategy(
            req.strategy, req.space, n_candidates=n_candidates, seed=req.seed, max_grid_size=req.max_grid_size,
            schedule=halving.schedule if halving is not None else None,
        )
    evaluator = halving.evaluator if halving is not None else req.evaluator
    run_logger = TuningRunLogger(req.tracker, scoring=req.scoring) if req.tracker is not None else None
    previous: list[TrialRecord] = []
    next_number = 0
    if req.resume_from:
        if run_logger is None:
            raise InvalidRequestError("resume_from needs MLflow logging (enable_mlflow=True and a tracker)")
        previous, next_number = load_completed_trials(req.tracker, req.resume_from, req.space)
    parent_run_id = None
    if run_logger is not None:
        parent_run_id = run_logger.start(
            run_name=req.run_name or _parent_name(req),
            params=_parent_params(req, halving), resume_from=req.resume_from, searched_data=req.searched_data,
        )
    try:
        fold_tasks = req.pruner is None and req.evaluator.n_folds > 1
        prefer_processes = fold_tasks and isinstance(req.evaluator, (EstimatorEvaluator, PortfolioEvaluator))
        with execution(n_jobs=req.n_jobs, backend=req.backend, dask_address=req.dask_address,
                       prefer_processes=prefer_processes,
                       should_stop=_stop_or_deadline(_stop_check(req.should_stop), req, deadline)) as ex:
            loop = SearchLoop(
                strategy=strategy, evaluator=evaluator,
                config=req, batch_size=ex.batch_size, runner=ex.runner, stream=ex.stream,
                previous=previous, next_number=next_number,
                # The best score so far goes on the parent as it improves: a run ended by a shutdown
                # (or reaped after a crash) carries it even if the search never reached its finish.
                on_record=(lambda record: run_logger.log_trial(record, best=loop.best_trial())) if run_logger else None,
                on_trial=req.on_trial, should_stop=_stop_check(req.should_stop), deadline=deadline,
            )
            outcome = loop.run()
            backend = ex.description
    except BaseException as exc:
        if run_logger is not None:
            run_logger.abort("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    result = _build_result(req, loop, outcome, parent_run_id=parent_run_id, fell_back=fell_back,
                           backend=backend, n_resumed=len(previous))
    if halving is not None:
        result.summary.halving = halving.parent_param()
    _name_the_estimator(req, result)
    _add_ensemble(req, result, outcome, full_deadline)
    if run_logger is not None:
        status = {StopReason.CANCELLED: "KILLED", StopReason.ERROR: "FAILED"}.get(outcome.stop_reason, "FINISHED")
        if result.best_trial is None and outcome.n_trials_run and outcome.stop_reason is not StopReason.CANCELLED:
            status = "FAILED"
        run_logger.finish(result, status=status)
    if outcome.error is not None:
        raise outcome.error
    if result.best_trial is None and outcome.n_trials_run and outcome.stop_reason is not StopReason.CANCELLED:
        first_error = next((t.error for t in result.trials if t.error), "no trial completed")
        raise ExecutionError(
            f"all {outcome.n_trials_run} trials failed or were pruned; first error: {first_error}"
        )
    return result


def _name_the_estimator(req: SearchRequest, result: TuningResult) -> None:
    """Say which allow-listed estimator ``best_params`` belong to; a portfolio's winner comes out of
    its params (trials keep ``estimator``: their child runs name their family), with each family's part."""
    from mcp_server.estimators import REGISTRY

    if req.portfolio is None:
        result.estimator = req.objective if req.objective in REGISTRY else None
        return
    result.families = family_results(result.trials, req.portfolio.names, req.direction.sign)
    if result.best_params is not None:
        result.estimator = result.best_params[FAMILY_KEY]
        result.best_params = {k: v for k, v in result.best_params.items() if k != FAMILY_KEY}
        result.summary.best_params = dict(result.best_params)


def _build_result(
    req: SearchRequest, loop: SearchLoop, outcome: LoopOutcome, *, parent_run_id: str | None,
    fell_back: bool, backend: str, n_resumed: int,
) -> TuningResult:
    trials = outcome.trials
    best = loop.best_trial()
    complete = [t.score for t in trials if t.state is TrialState.COMPLETE and t.score is not None]
    summary = TuningSummary(
        strategy=req.strategy, seed=req.seed, direction=req.direction, scoring=req.scoring,
        cv=req.cv_description, total_trials=len(trials), n_trials_run=outcome.n_trials_run,
        n_complete=len(complete),
        n_failed=sum(t.state is TrialState.FAILED for t in trials),
        n_pruned=sum(t.state is TrialState.PRUNED for t in trials),
        best_score=best.score if best else None, best_params=dict(best.params) if best else None,
        mean_score=statistics.fmean(complete) if complete else None,
        std_score=statistics.pstdev(complete) if len(complete) > 1 else (0.0 if complete else None),
        stopped_early=outcome.stop_reason is StopReason.EARLY_STOPPING,
        stopped_reason=outcome.stop_reason, elapsed_seconds=round(outcome.elapsed_seconds, 3),
        n_fold_fits=outcome.n_fold_fits, n_fold_fits_saved=outcome.n_fold_fits_saved,
        fell_back_to_random=fell_back, n_jobs=req.n_jobs, backend=backend,
        resumed_from=req.resume_from, n_resumed_trials=n_resumed,
    )
    if summary.stopped_early:
        logger.info("search stopped early after %d trials without improvement (%d trials run)",
                    req.patience, outcome.n_trials_run)
    measured_on = f"cross-validation ({req.cv_description})"
    return TuningResult(
        best_params=summary.best_params, best_score=summary.best_score, best_trial=best,
        trials=trials, summary=summary, seed=req.seed, parent_run_id=parent_run_id, split=req.split,
        warnings=[*req.warnings, *near_perfect(req.scoring, summary.best_score, req.near_perfect_score,
                                               measured_on=measured_on),
                  *below_baseline_cv(req.scoring, list(best.fold_scores) if best else [], req.baseline_fold_scores,
                                     higher_is_better=req.direction is Direction.MAXIMIZE)],
        baseline_score=statistics.fmean(req.baseline_fold_scores) if req.baseline_fold_scores else None,
    )
