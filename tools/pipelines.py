"""run_pipeline: validate → split → train → evaluate → register → promote, as a server-side job."""

from typing import Any, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import AliasChoices, BaseModel, Field

from mcp_server import rbac
from mcp_server.evaluation import LeakCheck, ModelWarning, SplitRecord, SplitSpec
from mcp_server.training_pipeline import PromotionDecision, StandardPipelineRequest, run_standard_pipeline
from tools._decorators import CREATES, ml_tool, register_tools
from tools._preflight import check_pipeline_request
from tools._state import AppState
from tools.data import DatasetName, catalog, default_target
from tools.experiments import ParamValue
from tools.jobs import JobView, StartWaitSeconds, start_job
from tools.tuning import ColumnList, EstimatorName, ParamName


class PipelineRequest(BaseModel):
    model_config = {"protected_namespaces": (), "extra": "forbid"}

    dataset: DatasetName
    target: str | None = Field(
        default=None, min_length=1, max_length=200, description="Column to predict; built-ins: 'target'"
    )
    features: ColumnList | None = Field(default=None, description="Feature columns (default: all others)")
    drop: ColumnList = Field(
        default_factory=list, validation_alias=AliasChoices("drop", "drop_columns"),
        description="Columns never used as features (ids, names, dates, leaks)",
    )
    estimator: EstimatorName = "random_forest"
    params: dict[ParamName, ParamValue] = Field(
        default_factory=dict, max_length=50, description="Hyperparameters, e.g. the best_params of a tuning job"
    )
    task: Literal["classification", "regression"] | None = Field(default=None, description="Default: inferred")
    drop_duplicates: bool = Field(default=True, description="Drop repeated rows before the split")
    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Holdout (test) rows and CV folds, e.g. {'kind': 'group', 'column': 'player_name'}; "
        "use the split of the tuning job whose params you train, so the test rows are ones it never saw",
    )
    cv_folds: int | None = Field(default=5, ge=2, le=20, description="CV on the training part, shown beside the test score")
    leak_check: LeakCheck = Field(
        default="stop", description="stop: identifier, date and leaking feature columns stop the run; warn: go on, flagged"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the estimator")
    schema_name: str | None = Field(default=None, min_length=1, max_length=100, description="Validation schema")
    model_name: str | None = Field(
        default=None, min_length=1, max_length=100, description="Registered model name (default: <dataset>-<target>)"
    )
    primary_metric: str | None = Field(
        default=None, max_length=64, description="Decides promotion; default roc_auc / accuracy / rmse by task"
    )
    promote: bool = Field(default=True, description="Give the new version the 'champion' alias if it wins and is not flagged")
    experiment_name: str | None = Field(default=None, min_length=1, max_length=200)
    run_name: str | None = Field(default=None, min_length=1, max_length=200)


class StageView(BaseModel):
    stage: str
    status: str
    duration_seconds: float
    error: str | None = None


class PipelineOutcome(BaseModel):
    model_config = {"protected_namespaces": ()}

    run_id: str
    status: Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    error: str | None = None
    failed_stage: str | None = None
    task: str
    primary_metric: str
    metrics: dict[str, float] = Field(description="Test metrics (holdout) and cv_<metric>_mean/_std (training part)")
    warnings: list[ModelWarning] = Field(default_factory=list, description="Why not to trust the score as it stands")
    flagged: bool = Field(description="True when there are warnings: the model is registered but not promoted")
    split: SplitRecord | None = None
    stages: list[StageView]
    model_name: str
    model_version: int | None = None
    model_uri: str | None = None
    promotion: PromotionDecision | None = None
    validation_passed: bool | None = None
    validation_summary: dict[str, int] | None = None
    n_train: int | None = None
    n_test: int | None = None
    duration_seconds: float | None = None
    experiment_name: str


class PipelineJob(JobView):
    result: PipelineOutcome | None = None


def outcome_of(result: Any, experiment_name: str) -> dict[str, Any]:
    validation = result.validation or {}
    return PipelineOutcome(
        run_id=result.run_id,
        status=result.status.value,
        error=result.error,
        failed_stage=result.failed_stage,
        task=result.task,
        primary_metric=result.primary_metric,
        metrics=result.metrics,
        warnings=result.warnings,
        flagged=result.flagged,
        split=result.split,
        stages=[
            StageView(stage=s.stage.value, status=s.status.value, duration_seconds=round(s.duration_seconds, 3), error=s.error)
            for s in result.stages
        ],
        model_name=result.model_name,
        model_version=result.model_version,
        model_uri=result.model_uri,
        promotion=result.promotion,
        validation_passed=validation.get("passed"),
        validation_summary=validation.get("summary"),
        n_train=result.n_train,
        n_test=result.n_test,
        duration_seconds=result.duration_seconds,
        experiment_name=experiment_name,
    ).model_dump(mode="json")


def standard_request(app: AppState, request: PipelineRequest) -> StandardPipelineRequest:
    """The domain request: the tool's fields, with the target defaulted for built-in data sets."""
    fields = request.model_dump(exclude={"experiment_name", "target"})
    return StandardPipelineRequest(**fields, target=default_target(app, request.dataset, request.target))


def pipeline_work(app: AppState, request: PipelineRequest):
    def work(job) -> dict[str, Any]:
        job.report(0, None, f"loading {request.dataset}")
        experiment = request.experiment_name or app.settings.experiment_name

        def on_stage(stage: str, index: int, total: int, status: str) -> None:
            job.report(index, total, f"stage {index}/{total} {stage}: {status.lower()}")

        result = run_standard_pipeline(
            standard_request(app, request),
            settings=app.settings,
            tracker=app.tracker(experiment),
            catalog=catalog(app),
            should_stop=job.cancel_event.is_set,
            on_stage=on_stage,
        )
        if result.warnings:
            codes = ", ".join(dict.fromkeys(w.code for w in result.warnings))
            job.report(len(result.stages), len(result.stages), f"done: {result.status.value}; flagged: {codes}")
        return outcome_of(result, experiment)

    return work


def register(server: MCPServer, app: AppState) -> None:
    @ml_tool(permission=rbac.Permission.EXECUTE, annotations=CREATES)
    async def run_pipeline(
        request: PipelineRequest,
        ctx: Context,
        wait_seconds: StartWaitSeconds = None,
    ) -> PipelineJob:
        """Train and evaluate a model on a held-out split, register it, and promote it to 'champion' if it beats the current one.

        Every stage is recorded in one MLflow run. Returns the metrics and the promotion decision, or a job id to poll.
        """
        await anyio.to_thread.run_sync(lambda: check_pipeline_request(app, request))
        return PipelineJob(**await start_job(app, "pipeline", pipeline_work(app, request), request, wait_seconds, ctx))

    register_tools(server, run_pipeline)
