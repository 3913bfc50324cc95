"""tune_hyperparameters: cross-validated search as a server-side job with progress per trial."""

from typing import Annotated, Any, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel, ConfigDict, Field

from mcp_server import rbac
from mcp_server.estimators import REGISTRY
from mcp_server.evaluation import LeakCheck, ModelWarning, SplitRecord, SplitSpec
from mcp_server.jobs import JobContext
from tools._decorators import CREATES, ml_tool, register_tools
from tools._preflight import check_tune_request
from tools._state import AppState
from tools.data import DatasetName, catalog, load_training_data
from tools.jobs import JobView, StartWaitSeconds, start_job

EstimatorName = Literal[tuple(REGISTRY)]  # the allow-list: the schema shows the choices
ColumnList = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=1000)]
ParamName = Annotated[str, Field(min_length=1, max_length=100)]
# Every request model refuses unknown fields: a misspelt option must not be silently ignored.
STRICT = ConfigDict(extra="forbid")


# Hyperparameter ranges beyond these are nonsense, and unbounded numbers reach numpy's samplers.
MAX_ABS_BOUND = 10**12


class IntParam(BaseModel):
    model_config = STRICT
    type: Literal["int"]
    low: int = Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)
    high: int = Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)
    log: bool = Field(default=False, description="Sample on a log scale (low must be > 0)")


class FloatParam(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["float"]
    low: float = Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)
    high: float = Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)
    log: bool = Field(default=False, description="Sample on a log scale (low must be > 0)")


class CategoricalParam(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["categorical"]
    choices: list[Annotated[str, Field(max_length=200)] | int | float | bool | None] = Field(
        min_length=1, max_length=100
    )


ParamSpec = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class TuneRequest(BaseModel):
    model_config = STRICT
    dataset: DatasetName
    target: str | None = Field(
        default=None, min_length=1, max_length=200, description="Column to predict; built-in data sets use 'target'"
    )
    features: ColumnList | None = Field(default=None, description="Feature columns (default: all others)")
    drop: ColumnList | None = Field(default=None, description="Columns to leave out (ids, names, leaks)")
    estimator: EstimatorName = "random_forest"
    strategy: Literal["grid", "random", "bayesian", "halving"] = Field(
        default="random",
        description="halving: successive halving, cheap rungs first (fewer trees, iterations or training rows), "
        "the best 1/factor promoted to the next rung; grid candidates when every range is a list, else random",
    )
    space: dict[ParamName, ParamSpec] | None = Field(
        default=None,
        max_length=30,
        description="Hyperparameter -> range, e.g. {'max_depth': {'type': 'int', 'low': 2, 'high': 12}}; "
        "default: the estimator's own search space",
    )
    cv_folds: int = Field(default=5, ge=2, le=20, description="Cross-validation folds")
    scoring: str | None = Field(
        default=None, max_length=64, description="sklearn scorer, e.g. roc_auc, f1, r2 (default: per task)"
    )
    max_trials: int = Field(
        default=20, ge=1, le=500, description="Budget: at most this many trials (halving: every rung's trials count)"
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=86_400, description="Budget: wall time")
    early_stopping_patience: int | None = Field(
        default=None, ge=1, le=500, description="Stop after this many trials without improvement"
    )
    pruning: Literal["none", "median", "best_margin"] = Field(
        default="none", description="Stop hopeless trials between folds"
    )
    factor: float = Field(
        default=3, gt=1, le=10, description="halving only: each rung keeps the best 1/factor of its candidates "
        "and gives them factor times more resource"
    )
    min_resource: int | None = Field(
        default=None, ge=1, le=10**7, description="halving only: resource of the first rung (training rows per "
        "fold, trees, iterations, or percent of a searched n_estimators); default: chosen per estimator"
    )
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Default: drawn and recorded")
    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Holdout kept out of the search and folds of the rest, e.g. {'kind': 'group', 'column': "
        "'player_name'} or {'kind': 'time', 'column': 'Date'}; run_pipeline with the same split tests on that holdout",
    )
    leak_check: LeakCheck = Field(
        default="stop", description="stop: identifier, date and leaking feature columns stop the job; warn: go on, flagged"
    )
    experiment_name: str | None = Field(default=None, min_length=1, max_length=200)
    run_name: str | None = Field(default=None, min_length=1, max_length=200)
    resume_from: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        max_length=32,
        description="Continue an ended search (its parent_run_id) without re-running its completed "
        "trials; use the same dataset, estimator, strategy, space, cv_folds, scoring and experiment_name",
    )

    def space_spec(self) -> dict[str, dict[str, Any]] | None:
        """The space as plain dicts (what SearchSpace and the tuner take); None: the estimator's default."""
        return {name: spec.model_dump() for name, spec in self.space.items()} if self.space else None


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
    best_params: dict[str, Any] | None
    best_score: float | None
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
    top_trials: list[TrialView] = Field(description="The best trials, best first (at most 5)")
    split: SplitRecord | None = Field(default=None, description="The holdout kept out of the search")
    warnings: list[ModelWarning] = Field(default_factory=list, description="Why not to trust the best score as it is")
    flagged: bool = Field(description="True when there are warnings: a model trained from these params is not promoted by itself")


class TuningJob(JobView):
    result: TuningOutcome | None = None


def outcome_of(result: Any, experiment_name: str) -> dict[str, Any]:
    summary = result.summary
    return TuningOutcome(
        best_params=result.best_params,
        best_score=result.best_score,
        scoring=summary.scoring,
        strategy=summary.strategy,
        cv=summary.cv,
        seed=result.seed,
        n_trials=summary.total_trials,
        n_complete=summary.n_complete,
        n_failed=summary.n_failed,
        n_pruned=summary.n_pruned,
        stopped_reason=summary.stopped_reason.value,
        elapsed_seconds=round(summary.elapsed_seconds, 3),
        parent_run_id=result.parent_run_id,
        experiment_name=experiment_name,
        split=result.split,
        warnings=result.warnings,
        flagged=result.flagged,
        top_trials=[
            TrialView(
                number=t.number, state=t.state.value, score=t.score, std=t.std, params=t.params, run_id=t.run_id,
                rung=t.rung, resource=t.resource,
            )
            for t in result.top(5)
        ],
    ).model_dump(mode="json")


def tuning_work(app: AppState, request: TuneRequest):
    """The job body: load data, run the search with progress and the cooperative stop signal."""

    def work(job: JobContext) -> dict[str, Any]:
        from mcp_server.hyperparameter_tuning import HyperparameterTuner

        job.report(0, request.max_trials, f"loading {request.dataset}")
        X, y = load_training_data(app, request.dataset, request.target, request.features, request.drop,
                                  keep=request.split.column)
        experiment = request.experiment_name or app.settings.experiment_name
        # Isolated trials: cancel, timeout and shutdown kill the fit in flight instead of waiting for it.
        tuner = HyperparameterTuner(mlflow_tracker=app.tracker(experiment), settings=app.settings,
                                    backend="process" if app.settings.isolate_trials else "auto")

        def on_trial(_trial: Any, progress: Any) -> None:
            job.report(progress.n_trials_done, progress.max_trials, progress.message())

        result = tuner.tune(
            estimator=request.estimator,
            X=X,
            y=y,
            space=request.space_spec(),
            strategy=request.strategy,
            scoring=request.scoring,
            cv_folds=request.cv_folds,
            max_trials=request.max_trials,
            timeout=request.timeout_seconds,
            seed=request.seed,
            on_trial=on_trial,
            should_stop=job.cancel_event,
            pruning=None if request.pruning == "none" else request.pruning,
            early_stopping_patience=request.early_stopping_patience,
            run_name=request.run_name,
            resume_from=request.resume_from,
            split=request.split,
            leak_check=request.leak_check,
            dataset=request.dataset,
            dataset_source=catalog(app).source(request.dataset),
            halving={"factor": request.factor, "min_resource": request.min_resource}
            if request.strategy == "halving" else None,
        )
        if result.warnings:
            codes = ", ".join(dict.fromkeys(w.code for w in result.warnings))
            job.report(result.summary.total_trials, request.max_trials,
                       f"done, best {result.summary.scoring} {result.best_score}; flagged: {codes}")
        return outcome_of(result, experiment)

    return work


def register(server: MCPServer, app: AppState) -> None:
    @ml_tool(permission=rbac.Permission.EXECUTE, annotations=CREATES)
    async def tune_hyperparameters(
        request: TuneRequest,
        ctx: Context,
        wait_seconds: StartWaitSeconds = None,
    ) -> TuningJob:
        """Search an estimator's hyperparameters by cross-validation on a data set, logging every trial to MLflow.

        Returns the best params and score when done within wait_seconds, else a job id to poll with get_job.
        """
        resume = request.resume_from
        if resume is not None:
            app.claim_resume(resume)  # two resumes of one search would both run its remaining trials
        try:
            await anyio.to_thread.run_sync(lambda: check_tune_request(app, request))
        except BaseException:
            if resume is not None:
                app.release_resume(resume)
            raise
        return TuningJob(**await start_job(app, "tune", tuning_work(app, request), request, wait_seconds, ctx,
                                           on_queued=(lambda: app.release_resume(resume)) if resume else None))

    register_tools(server, tune_hyperparameters)

