"""tune_hyperparameters: cross-validated search as a server-side job with progress per trial.

The request is the domain's ``TuneRequest``; ``plan_search`` checks it against the data before a
job is queued (a call that would fail fails here, naming the field), and the job runs that plan.
"""

import threading
from typing import Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_server import rbac
from mcp_server.evaluation import ModelWarning, SplitRecord
from mcp_server.hyperparameter_tuning import EnsembleResult, FamilyResult, SearchPlan, TuneRequest, TuningResult, plan_search
from mcp_server.jobs import JobContext
from mcp_server.logged_values import logged_score
from mcp_server.training_pipeline import SEARCH_REQUEST_FILE
from tools.app_state import AppState, state_of
from tools.blocking import run_stoppable
from tools.fields import StartWaitSeconds
from tools.jobs import JobView, start_job
from tools.registration import CREATES, ml_tool

TOP_TRIALS = 5


class TrialView(BaseModel):
    number: int
    state: str
    score: float | None = None
    std: float | None = None
    params: dict[str, Any]
    run_id: str | None = None
    rung: int | None = Field(default=None, description="halving: the rung this trial ran at (0 = cheapest)")
    resource: int | None = Field(default=None, description="halving: its resource (rows per fold, trees, iterations, %)")


class TuningOutcome(BaseModel):
    """What a finished search tells the caller: the best params, how they were measured, the top trials."""

    best_params: dict[str, Any] | None
    best_score: float | None
    estimator: str | None = Field(
        default=None, description="The estimator best_params belong to (for auto: the winning family); "
        "run_pipeline takes this estimator with these params")
    families: list[FamilyResult] = Field(
        default_factory=list, description="auto: every family tried, its trials, best CV score and seconds")
    ensemble: EnsembleResult | None = Field(
        default=None, description="auto: a weighted ensemble of the best trials that beat the best one on the same "
        "folds (members, weights, CV scores); run_pipeline(from_search=...) then trains it")
    scoring: str
    strategy: str
    cv: str
    seed: int
    n_trials: int
    n_complete: int
    n_failed: int
    n_pruned: int
    stopped_reason: str
    elapsed_seconds: float
    parent_run_id: str | None
    experiment_name: str
    top_trials: list[TrialView]
    split: SplitRecord | None = None
    warnings: list[ModelWarning] = Field(default_factory=list)
    flagged: bool

    @classmethod
    def of(cls, result: TuningResult, experiment_name: str) -> "TuningOutcome":
        summary = result.summary
        return cls(
            best_params=result.best_params, best_score=result.best_score, estimator=result.estimator,
            families=result.families, ensemble=result.ensemble, scoring=summary.scoring,
            strategy=summary.strategy, cv=summary.cv, seed=result.seed, n_trials=summary.total_trials,
            n_complete=summary.n_complete, n_failed=summary.n_failed, n_pruned=summary.n_pruned,
            stopped_reason=summary.stopped_reason.value, elapsed_seconds=round(summary.elapsed_seconds, 3),
            parent_run_id=result.parent_run_id, experiment_name=experiment_name, split=result.split,
            warnings=result.warnings, flagged=result.flagged,
            top_trials=[TrialView(number=t.number, state=t.state.value, score=t.score, std=t.std, params=t.params,
                                  run_id=t.run_id, rung=t.rung, resource=t.resource) for t in result.top(TOP_TRIALS)],
        )


def plan(app: AppState, request: TuneRequest, stop: threading.Event | None = None) -> tuple[SearchPlan, Any, Any]:
    """(plan, X, y): the request checked against its data (blocking; the catalog caches the data)."""
    X, y = app.catalog.training_data(request.dataset, request.target, request.features, request.drop,
                                     keep=request.split.column, stop=stop)
    tracker = app.tracker(request.experiment_name) if request.resume_from else None
    return plan_search(request, X, y, settings=app.settings, tracker=tracker), X, y


def tuning_work(app: AppState, search: SearchPlan, X: Any, y: Any):
    """The job body: run the planned search with progress and the cooperative stop signal."""
    request = search.request

    def work(job: JobContext) -> dict[str, Any]:
        from mcp_server.hyperparameter_tuning import HyperparameterTuner

        experiment = request.experiment_name or app.settings.experiment_name
        # Isolated trials: cancel, timeout and shutdown kill the fit in flight instead of waiting for it.
        tuner = HyperparameterTuner(mlflow_tracker=app.tracker(experiment), settings=app.settings,
                                    backend="process" if app.settings.isolate_trials else "auto")
        result = tuner.tune(
            X=X, y=y, **search.tune_arguments(), should_stop=job.cancel_event,
            on_trial=lambda _trial, progress: job.report(progress.n_trials_done, progress.max_trials, progress.message()),
            dataset_source=app.catalog.source(request.dataset),
        )
        if result.parent_run_id:  # what run_pipeline(from_search=…) reads back: the data, split and folds searched
            app.tracker(experiment).log_dict(request.model_dump(mode="json"), SEARCH_REQUEST_FILE,
                                             run_id=result.parent_run_id)
        if result.warnings:
            codes = ", ".join(dict.fromkeys(w.code for w in result.warnings))
            name, sign = logged_score(result.summary.scoring)
            job.report(result.summary.total_trials, request.max_trials,
                       f"done, best {name} {sign * result.best_score:.4g}; flagged: {codes}")
        return TuningOutcome.of(result, experiment).model_dump(mode="json")

    return work


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=CREATES)
async def tune_hyperparameters(request: TuneRequest, ctx: Context, wait_seconds: StartWaitSeconds = None) -> JobView:
    """Find the best model and hyperparameters by cross-validation on a data set, every trial logged to MLflow.

    Returns the winner and its params when done within wait_seconds, else a job id for get_job.
    """
    app = state_of(ctx)
    resume = request.resume_from
    if resume is not None:
        app.claim_resume(resume)  # two resumes of one search would both run its remaining trials
    try:
        search, X, y = await run_stoppable(lambda stop: plan(app, request, stop))
    except BaseException:
        if resume is not None:
            app.release_resume(resume)
        raise
    return await start_job(app, "tune", tuning_work(app, search, X, y), request, wait_seconds, ctx,
                           on_queued=(lambda: app.release_resume(resume)) if resume else None)


TOOLS = (tune_hyperparameters,)
