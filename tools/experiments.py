"""Experiment and run tools: start_experiment, list_experiments, search_runs, get_run, compare_runs."""

import base64
import io
from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, ConfigDict, Field

from mcp_server import rbac
from mcp_server.error_handling import FailedPreconditionError, InvalidRequestError, NotFoundError
from tools.app_state import AppState, state_of
from tools.fields import ExperimentName, KeyName, ParamValue, RunId, TagValue
from tools.identity import shown_path
from tools.registration import READ_ONLY, UPDATES, ml_tool

STRICT = ConfigDict(extra="forbid")


class EndedRun(BaseModel):
    run_id: str
    status: str
    previous_owner: str | None = Field(default=None, description="host:pid:instance of the process that opened it")


class ExperimentInfo(BaseModel):
    experiment_id: str
    name: str
    lifecycle_stage: str | None = None
    artifact_location: str | None = None


class StartedExperiment(ExperimentInfo):
    created: bool = Field(description="True if the experiment did not exist before this call")
    run_id: str | None = Field(default=None, description="The run recorded with the given params/tags")


class ExperimentList(BaseModel):
    experiments: list[ExperimentInfo]


class RunSummary(BaseModel):
    run_id: str
    run_name: str | None = None
    experiment_id: str
    status: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    parent_run_id: str | None = None
    params: dict[str, str]
    metrics: dict[str, float]


class RunsPage(BaseModel):
    runs: list[RunSummary]
    next_page_token: str | None = Field(default=None, description="Pass it back as page_token for more")


class MetricPointView(BaseModel):
    step: int
    value: float


class MetricHistory(BaseModel):
    points: list[MetricPointView]
    total_points: int
    offset: int


class RunDetail(RunSummary):
    tags: dict[str, str]
    artifact_uri: str | None = None
    duration_seconds: float | None = None
    metric_history: dict[str, MetricHistory] = Field(
        description="Per metric, a page of its logged values by step"
    )


class MetricComparison(BaseModel):
    values: dict[str, float | None] = Field(description="run_id -> value")
    diff: dict[str, float | None] = Field(description="run_id -> value minus the first run's value")
    best_run: str | None
    higher_is_better: bool


class RunComparison(BaseModel):
    runs: list[dict[str, Any]]
    metrics: dict[str, MetricComparison]
    params_differ: dict[str, dict[str, str | None]] = Field(description="param -> run_id -> value")
    params_same: dict[str, str | None]


class StartExperimentRequest(BaseModel):
    model_config = STRICT
    name: ExperimentName
    run_name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Also record a run (e.g. a plan or baseline notes)"
    )
    params: dict[KeyName, ParamValue] | None = Field(default=None, max_length=100)
    tags: dict[KeyName, TagValue] | None = Field(default=None, max_length=50)


class SearchRunsRequest(BaseModel):
    model_config = STRICT
    experiment_name: ExperimentName | None = Field(default=None, description="Default: the server's experiment")
    filter_string: str = Field(
        default="",
        max_length=1000,
        description="MLflow filter, e.g. \"metrics.roc_auc > 0.7 and params.estimator = 'svm'\" (no OR)",
    )
    order_by: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=3, description="e.g. ['metrics.roc_auc DESC']"
    )
    max_results: int = Field(default=10, ge=1, le=100)
    page_token: str | None = Field(
        default=None, max_length=2000, pattern=r"^[A-Za-z0-9+/=_-]*$",
        description="The next_page_token of the previous page (base64)",
    )


def summary_of(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "run_name": run.run_name,
        "experiment_id": run.experiment_id,
        "status": run.status.value,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "parent_run_id": run.parent_run_id,
        "params": run.params,
        "metrics": run.metrics,
    }


def experiment_names(app: AppState) -> set[str]:
    return {e["name"] for e in app.tracker().list_experiments(max_results=1000)}


def comparison_chart(comparison: dict[str, Any], names: dict[str, str]) -> bytes:
    """A PNG bar chart: one group per metric, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(comparison["metrics"])[:12]
    run_ids = [r["run_id"] for r in comparison["runs"]]
    figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * len(run_ids) / 2), 4), dpi=100)
    width = 0.8 / max(len(run_ids), 1)
    for i, run_id in enumerate(run_ids):
        values = [comparison["metrics"][m]["values"].get(run_id) or 0.0 for m in metrics]
        axis.bar([x + i * width for x in range(len(metrics))], values, width, label=names.get(run_id) or run_id[:8])
    axis.set_xticks([x + width * (len(run_ids) - 1) / 2 for x in range(len(metrics))], metrics, rotation=30, ha="right")
    axis.legend(fontsize="small")
    axis.set_title("Run comparison")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=UPDATES)
async def start_experiment(ctx: Context, request: StartExperimentRequest) -> StartedExperiment:
    """Create an MLflow experiment, or reuse it if it exists; optionally record a run with params and tags."""
    app = state_of(ctx)

    def start() -> StartedExperiment:
        existed = request.name in experiment_names(app)
        tracker = app.tracker(request.name)
        run_id = None
        if request.run_name:
            run_id = tracker.record_run(
                run_name=request.run_name, params=request.params or {}, metrics={}, tags=request.tags
            )
        info = next(e for e in tracker.list_experiments(max_results=1000) if e["name"] == request.name)
        return StartedExperiment(
            experiment_id=info["experiment_id"],
            name=info["name"],
            lifecycle_stage=info["lifecycle_stage"],
            artifact_location=shown_path(info["artifact_location"]),
            created=not existed,
            run_id=run_id,
        )

    return await anyio.to_thread.run_sync(start)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def list_experiments(
    ctx: Context,
    max_results: Annotated[int, Field(ge=1, le=100, description="At most this many")] = 20,
) -> ExperimentList:
    """List MLflow experiments."""
    app = state_of(ctx)
    experiments = await anyio.to_thread.run_sync(lambda: app.tracker().list_experiments(max_results=max_results))
    return ExperimentList(experiments=[
        ExperimentInfo(**{k: e[k] for k in ExperimentInfo.model_fields} | {"artifact_location": shown_path(e["artifact_location"])})
        for e in experiments
    ])


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def search_runs(ctx: Context, request: SearchRunsRequest) -> RunsPage:
    """Find runs of an experiment with an MLflow filter and ordering, one page at a time."""
    app = state_of(ctx)

    def search() -> RunsPage:
        if request.experiment_name is not None and request.experiment_name not in experiment_names(app):
            # A read must never create: app.tracker(name) would create a missing experiment.
            raise NotFoundError(
                f"experiment_name {request.experiment_name!r} does not name an experiment; "
                "list_experiments shows them"
            )
        tracker = app.tracker(request.experiment_name)
        try:
            runs, token = tracker.search_runs_page(
                request.filter_string, request.max_results, request.order_by, page_token=request.page_token
            )
        except InvalidRequestError as exc:
            # MLflow's messages do not say which argument they are about.
            raise InvalidRequestError(
                f"MLflow rejected filter_string, order_by or page_token: {exc}"
            ) from None
        return RunsPage(runs=[RunSummary(**summary_of(r)) for r in runs], next_page_token=token or None)

    return await anyio.to_thread.run_sync(search)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def get_run(
    ctx: Context,
    run_id: RunId,
    history_limit: Annotated[int, Field(ge=0, le=1000, description="Metric values per metric to return")] = 20,
    history_offset: Annotated[
        int, Field(ge=0, le=10_000_000, description="Skip this many values per metric (paging)")
    ] = 0,
) -> RunDetail:
    """Get one run: status, params, metrics, tags and a page of each metric's history."""
    app = state_of(ctx)

    def read() -> RunDetail:
        tracker = app.tracker()
        run = tracker.get_run(run_id)
        history = {}
        for key in sorted(run.metrics) if history_limit else []:
            points = tracker.get_metric_history(run_id, key)
            page = points[history_offset : history_offset + history_limit]
            history[key] = MetricHistory(
                points=[MetricPointView(step=p.step, value=p.value) for p in page],
                total_points=len(points),
                offset=history_offset,
            )
        return RunDetail(
            **summary_of(run),
            tags=run.tags,
            artifact_uri=shown_path(run.artifact_uri),
            duration_seconds=run.duration_seconds,
            metric_history=history,
        )

    return await anyio.to_thread.run_sync(read)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def compare_runs(
    ctx: Context,
    run_ids: Annotated[list[RunId], Field(min_length=2, max_length=10, description="Runs to compare, baseline first")],
    chart: Annotated[bool, Field(description="Also return a PNG bar chart of the metrics")] = False,
    include_bookkeeping: Annotated[bool, Field(description="Also stage timings, counts and durations")] = False,
) -> CallToolResult:
    """Compare runs side by side: model metrics with differences from the first run and the best run, and the params that differ."""
    app = state_of(ctx)
    if len(set(run_ids)) != len(run_ids):
        raise InvalidRequestError(f"run_ids must be distinct, got {run_ids}")

    def compare() -> tuple[dict[str, Any], dict[str, str]]:
        tracker = app.tracker()
        comparison = tracker.compare_runs(list(run_ids), include_bookkeeping=include_bookkeeping)
        return comparison, {r["run_id"]: r["run_name"] for r in comparison["runs"]}

    comparison, names = await anyio.to_thread.run_sync(compare)
    structured = RunComparison.model_validate(comparison)
    content: list[Any] = [TextContent(type="text", text=structured.model_dump_json())]
    if chart:
        png = await anyio.to_thread.run_sync(lambda: comparison_chart(comparison, names))
        content.append(ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png"))
    return CallToolResult(content=content)


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=UPDATES)
async def end_run(
    ctx: Context,
    run_id: RunId,
    reason: Annotated[str, Field(min_length=1, max_length=300, description="Why, recorded on the run")] = "stuck",
) -> EndedRun:
    """End a run left RUNNING by a server that died or hung, as KILLED, so its search can be resumed.

    A run of a job of this server is refused: cancel that job instead.
    """
    app = state_of(ctx)
    principal = rbac.current_principal()

    def end() -> EndedRun:
        from mcp_server.mlflow_integration import OWNER_TAG, owner

        tracker = app.tracker()
        run = tracker.get_run(run_id)
        if run.status.value != "RUNNING":
            raise FailedPreconditionError(f"run {run_id} is {run.status.value}; only a RUNNING run can be ended")
        if run.tags.get(OWNER_TAG) == owner():
            raise FailedPreconditionError(
                f"run {run_id} belongs to a job of this server: cancel that job (list_jobs, cancel_job) instead"
            )
        who = principal.id if principal else "unknown"
        tracker.kill_run(run_id, f"ended by {who} with end_run: {reason}")
        return EndedRun(run_id=run_id, status="KILLED", previous_owner=run.tags.get(OWNER_TAG))

    return await anyio.to_thread.run_sync(end)


TOOLS = (start_experiment, list_experiments, search_runs, get_run, compare_runs, end_run)
