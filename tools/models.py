"""Model registry tools: list_models, register_model, promote_model, predict."""

from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_server import rbac, training_pipeline
from mcp_server.error_handling import FailedPreconditionError
from mcp_server.evaluation import RowWarning
from mcp_server.training_pipeline import (
    MODEL_URI_TAG,
    PRIMARY_METRIC_TAG,
    PromotionDecision,
)
from tools.app_state import state_of
from tools.fields import Alias, CellValue, ColumnName, ModelName, RunId
from tools.registration import CREATES, DESTRUCTIVE, READ_ONLY, ml_tool

MAX_ROWS = 1000
MAX_COLUMNS = 2000


class RegisteredVersion(BaseModel):
    model_config = {"protected_namespaces": ()}

    model_name: str
    version: int
    run_id: str
    model_uri: str
    primary_metric: str | None = None
    primary_metric_value: float | None = None


class Predictions(BaseModel):
    model_config = {"protected_namespaces": ()}

    model_name: str
    model_ref: str = Field(description="The alias or version that was used")
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(
        default=None, description="Per row, class label -> probability (classifiers, when asked)"
    )
    row_warnings: list[RowWarning] = Field(
        default_factory=list, description="Rows outside what the model saw in training: scored, but guesses"
    )


class VersionView(BaseModel):
    version: int
    aliases: list[str]
    run_id: str | None = None
    metrics: dict[str, float] = Field(description="The version's run's model metrics")
    warnings: list[str] = Field(default_factory=list, description="Warning codes of its run: not promoted by itself")


class ModelView(BaseModel):
    name: str
    versions: list[VersionView]


class ModelList(BaseModel):
    models: list[ModelView]


class PromoteRequest(BaseModel):
    model_config = {"protected_namespaces": (), "extra": "forbid"}

    model_name: ModelName
    version: int = Field(ge=1, le=10**9, description="The version to promote")
    alias: Alias = "champion"
    force: bool = Field(default=False, description="Move the alias even if the version is not better or is flagged")
    reason: str | None = Field(
        default=None, min_length=1, max_length=1000,
        description="Required to force a flagged version: why its warnings do not apply (recorded)",
    )
    primary_metric: str | None = Field(
        default=None, max_length=64, description="Default: the metric recorded when the version was registered"
    )


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def list_models(
    ctx: Context, max_results: Annotated[int, Field(ge=1, le=100, description="At most this many models")] = 20,
) -> ModelList:
    """List registered models with their versions, aliases, each version's metrics and any warnings."""
    app = state_of(ctx)

    def read() -> ModelList:
        from mcp_server.evaluation import flag_codes
        from mcp_server.mlflow_integration import is_bookkeeping

        tracker = app.tracker()
        models = []
        for model in tracker.list_models(max_results):
            versions = []
            for v in model["versions"]:
                run = tracker.get_run(v["run_id"]) if v.get("run_id") else None
                versions.append(VersionView(
                    version=v["version"], aliases=v["aliases"], run_id=v.get("run_id"),
                    metrics={k: m for k, m in (run.metrics if run else {}).items() if not is_bookkeeping(k)},
                    warnings=flag_codes(run.tags) if run is not None else [],
                ))
            models.append(ModelView(name=model["name"], versions=versions))
        return ModelList(models=models)

    return await anyio.to_thread.run_sync(read)


@ml_tool(permission=rbac.Permission.WRITE, annotations=CREATES)
async def register_model(ctx: Context, run_id: RunId, model_name: ModelName) -> RegisteredVersion:
    """Register the model logged by a pipeline run as a new version of a named model."""
    app = state_of(ctx)

    def register_version() -> RegisteredVersion:
        tracker = app.tracker()
        run = tracker.get_run(run_id)
        model_uri = run.tags.get(MODEL_URI_TAG)
        if not model_uri:
            raise FailedPreconditionError(
                f"run_id {run_id!r} has no logged model (no {MODEL_URI_TAG} tag); train one with run_pipeline"
            )
        metric, value = training_pipeline.registration_metric(run)
        tags = {PRIMARY_METRIC_TAG: metric, f"test_{metric}": value} if metric and value is not None else {}
        version = tracker.register_model(model_uri, model_name, run_id=run_id, tags=tags)
        return RegisteredVersion(
            model_name=model_name, version=version, run_id=run_id, model_uri=model_uri,
            primary_metric=metric, primary_metric_value=value,
        )

    return await anyio.to_thread.run_sync(register_version)


@ml_tool(permission=rbac.Permission.WRITE, annotations=DESTRUCTIVE)
async def promote_model(ctx: Context, request: PromoteRequest) -> PromotionDecision:
    """Give a model version an alias (default 'champion') if it beats the holder beyond the holdout's noise.

    A flagged version moves only with force=true and a reason, both recorded.
    """
    app = state_of(ctx)

    def promote() -> PromotionDecision:
        return training_pipeline.promote_model(
            app.tracker(), request.model_name, request.version, alias=request.alias,
            force=request.force, primary_metric=request.primary_metric, reason=request.reason,
        )

    return await anyio.to_thread.run_sync(promote)


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=READ_ONLY)
async def predict(
    ctx: Context,
    model_name: ModelName,
    rows: Annotated[
        list[Annotated[dict[ColumnName, CellValue], Field(max_length=MAX_COLUMNS)]],
        Field(min_length=1, max_length=MAX_ROWS, description="Feature rows: column name -> value"),
    ],
    alias_or_version: Annotated[
        str,
        Field(
            pattern=r"^([A-Za-z][A-Za-z0-9_-]{0,63}|[1-9][0-9]{0,8})$",
            max_length=64,
            description="'champion' or a version number",
        ),
    ] = "champion",
    probabilities: Annotated[bool, Field(description="Also return class probabilities")] = False,
) -> Predictions:
    """Predict with a registered model (by alias or version) for the given feature rows."""
    app = state_of(ctx)

    def score() -> Predictions:
        tracker = app.tracker()
        values = training_pipeline.predict(tracker, model_name, alias_or_version, rows)
        probs = training_pipeline.predict_proba(tracker, model_name, alias_or_version, rows) if probabilities else None
        warnings = training_pipeline.prediction_warnings(tracker, model_name, alias_or_version, rows)
        return Predictions(model_name=model_name, model_ref=alias_or_version, predictions=values,
                           probabilities=probs, row_warnings=warnings)

    return await anyio.to_thread.run_sync(score)


TOOLS = (list_models, register_model, promote_model, predict)
