"""run_pipeline: validate → split → train → evaluate → register → promote, as a server-side job.

The request is the domain's ``StandardPipelineRequest``; ``plan_pipeline`` checks it against the
data before a job is queued, and the job runs that plan.
"""

import threading
from typing import Any, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_server import rbac
from mcp_server.data_validation_pipeline import DataValidationPipeline
from mcp_server.evaluation import ModelWarning, SplitRecord
from mcp_server.jobs import JobFailedError
from mcp_server.training_pipeline import (
    BaselineScore,
    PipelinePlan,
    PipelineResult,
    PipelineStatus,
    PromotionDecision,
    StandardPipelineRequest,
    plan_pipeline,
    request_from_search,
    run_standard_pipeline,
)
from mcp_server.error_handling import FailedPreconditionError
from tools.app_state import AppState, state_of
from tools.blocking import run_stoppable
from tools.fields import StartWaitSeconds
from tools.jobs import JobView, start_job
from tools.registration import CREATES, ml_tool


class StageView(BaseModel):
    stage: str
    status: str
    duration_seconds: float
    error: str | None = None


class PipelineOutcome(BaseModel):
    """What a pipeline run tells the caller: how the model scored on which rows, and what became of it."""

    model_config = {"protected_namespaces": ()}

    run_id: str
    status: Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    error: str | None = None
    failed_stage: str | None = None
    task: str
    primary_metric: str
    metrics: dict[str, float] = Field(description="Test metrics (holdout) and cv_<metric>_mean/_std (training part)")
    warnings: list[ModelWarning] = Field(default_factory=list)
    flagged: bool
    split: SplitRecord | None = None
    baseline: BaselineScore | None = None
    duplicates_dropped: int | None = None
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

    @classmethod
    def of(cls, result: PipelineResult, experiment_name: str) -> "PipelineOutcome":
        validation = result.validation or {}
        return cls(
            **result.model_dump(include={"run_id", "error", "failed_stage", "task", "primary_metric", "metrics",
                                         "split", "baseline", "duplicates_dropped", "model_name", "model_version",
                                         "model_uri", "promotion",
                                         "n_train", "n_test", "duration_seconds"}),
            status=result.status.value, warnings=result.warnings, flagged=result.flagged,
            stages=[StageView(stage=s.stage.value, status=s.status.value, duration_seconds=round(s.duration_seconds, 3),
                              error=s.error) for s in result.stages],
            validation_passed=validation.get("passed"), validation_summary=validation.get("summary"),
            experiment_name=experiment_name,
        )


def plan(app: AppState, request: StandardPipelineRequest,
         stop: threading.Event | None = None) -> tuple[StandardPipelineRequest, PipelinePlan]:
    """The request with its target settled (and, with from_search, the search's data and winner),
    and its plan checked against the data (blocking)."""
    if request.from_search:
        parent = search_run_id(app, request.from_search)
        tracker = app.tracker(request.experiment_name or app.settings.experiment_name)
        request = request_from_search(request.model_copy(update={"from_search": parent}), tracker)
    frame = app.catalog.load(request.dataset, stop=stop)  # the data set first: a bad name is the first thing to say
    request = request.model_copy(update={"target": app.catalog.target_for(request.dataset, request.target)})
    return request, plan_pipeline(request, frame, validator=DataValidationPipeline.for_settings(app.settings),
                                  settings=app.settings)


def search_run_id(app: AppState, reference: str) -> str:
    """A tuning job id (12 hex digits, while this server remembers the job) or a parent run id."""
    if len(reference) != 12:
        return reference
    snapshot = app.jobs.get(reference)  # unknown: NotFoundError naming the id
    result = snapshot.result if isinstance(snapshot.result, dict) else {}
    if snapshot.kind != "tune" or not result.get("parent_run_id"):
        raise FailedPreconditionError(f"from_search job {reference!r} is a {snapshot.kind} job in state "
                                  f"{snapshot.state.value}; name a finished tuning job or its parent_run_id")
    return result["parent_run_id"]


def pipeline_work(app: AppState, request: StandardPipelineRequest, checked: PipelinePlan):
    def work(job) -> dict[str, Any]:
        experiment = request.experiment_name or app.settings.experiment_name

        def on_stage(stage: str, index: int, total: int, status: str) -> None:
            job.report(index, total, f"stage {index}/{total} {stage}: {status.lower()}")

        result = run_standard_pipeline(
            request, settings=app.settings, tracker=app.tracker(experiment), catalog=app.catalog,
            should_stop=job.cancel_event.is_set, on_stage=on_stage, plan=checked,
        )
        outcome = PipelineOutcome.of(result, experiment).model_dump(mode="json")
        if result.status is PipelineStatus.FAILED:  # the job did not do its job: its state says so
            raise JobFailedError(f"the pipeline stopped: {result.error}", result=outcome)
        if result.warnings:
            codes = ", ".join(dict.fromkeys(w.code for w in result.warnings))
            job.report(len(result.stages), len(result.stages), f"done: {result.status.value}; flagged: {codes}")
        return outcome

    return work


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=CREATES)
async def run_pipeline(request: StandardPipelineRequest, ctx: Context, wait_seconds: StartWaitSeconds = None) -> JobView:
    """Train on a held-out split, register, and make it 'champion' if it beats the current one beyond noise.

    One MLflow run; returns metrics and the promotion, or a job id. Stopped by data checks: FAILED, fix in error.
    """
    app = state_of(ctx)
    request, checked = await run_stoppable(lambda stop: plan(app, request, stop))
    return await start_job(app, "pipeline", pipeline_work(app, request, checked), request, wait_seconds, ctx)


TOOLS = (run_pipeline,)
