"""Model registry tools: register_model, promote_model, predict."""

from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from pydantic import BaseModel, Field

from mcp_server import rbac, training_pipeline
from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation import RowWarning
from mcp_server.training_pipeline import (
    MODEL_URI_TAG,
    PRIMARY_METRIC_TAG,
    PromotionDecision,
)
from tools._decorators import CREATES, DESTRUCTIVE, READ_ONLY, ml_tool, register_tools
from tools._state import AppState
from tools.experiments import RunId

ModelName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", max_length=100, description="Registered model name"),
]
Alias = Annotated[
    str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", max_length=64, description="Model alias, e.g. 'champion'")
]
# NaN and infinities are not JSON: send null for a missing value.
CellValue = Annotated[str, Field(max_length=10_000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
ColumnName = Annotated[str, Field(min_length=1, max_length=200)]
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


def register(server: MCPServer, app: AppState) -> None:
    @ml_tool(permission=rbac.Permission.WRITE, annotations=CREATES)
    async def register_model(run_id: RunId, model_name: ModelName) -> RegisteredVersion:
        """Register the model logged by a pipeline run as a new version of a named model."""

        def register_version() -> RegisteredVersion:
            tracker = app.tracker()
            run = tracker.get_run(run_id)
            model_uri = run.tags.get(MODEL_URI_TAG)
            if not model_uri:
                raise InvalidRequestError(
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
    async def promote_model(request: PromoteRequest) -> PromotionDecision:
        """Give a model version an alias (default 'champion') if it beats the current holder on the primary metric.

        A flagged version (its run has warnings) moves only with force=true and a reason, both recorded.
        """

        def promote() -> PromotionDecision:
            return training_pipeline.promote_model(
                app.tracker(), request.model_name, request.version, alias=request.alias,
                force=request.force, primary_metric=request.primary_metric, reason=request.reason,
            )

        return await anyio.to_thread.run_sync(promote)

    @ml_tool(permission=rbac.Permission.EXECUTE, annotations=READ_ONLY)
    async def predict(
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

        def score() -> Predictions:
            tracker = app.tracker()
            values = training_pipeline.predict(tracker, model_name, alias_or_version, rows)
            probs = training_pipeline.predict_proba(tracker, model_name, alias_or_version, rows) if probabilities else None
            warnings = training_pipeline.prediction_warnings(tracker, model_name, alias_or_version, rows)
            return Predictions(model_name=model_name, model_ref=alias_or_version, predictions=values,
                               probabilities=probs, row_warnings=warnings)

        return await anyio.to_thread.run_sync(score)

    register_tools(server, register_model, promote_model, predict)
