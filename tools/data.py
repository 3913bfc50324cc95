"""Data tools: list_datasets, describe_dataset, validate_data."""

from typing import Annotated, Literal

import anyio
from mcp.server import MCPServer
from pydantic import BaseModel, ConfigDict, Field

from mcp_server import rbac
from mcp_server.data_validation_pipeline import DataValidationPipeline, ValidationResult, infer_schema
from mcp_server.datasets import DatasetCatalog, DatasetDescription, load_xy
from mcp_server.error_handling import InvalidRequestError
from tools._decorators import READ_ONLY, ml_tool, register_tools
from tools._state import AppState

DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="A name from list_datasets, e.g. 'nba:raptor', 'nba_logreg' or 'sklearn:breast_cancer'",
    ),
]
TargetColumn = Annotated[
    str | None,
    Field(min_length=1, max_length=200, description="The column to predict (built-ins: 'target')"),
]


class DatasetEntry(BaseModel):
    name: str
    source: Literal["file", "packaged", "sklearn"]
    format: str
    size_bytes: int | None = None
    description: str | None = None


class DatasetList(BaseModel):
    datasets: list[DatasetEntry]


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: DatasetName
    target: str | None = Field(
        default=None, min_length=1, max_length=200, description="Target column: enables label and leak checks"
    )
    schema_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="A schema from config/schemas, e.g. 'player_stats' (nba_logreg) or 'player_seasons'",
    )
    fail_on_warnings: bool = False


def catalog(app: AppState) -> DatasetCatalog:
    return app.service("catalog", lambda: DatasetCatalog(app.settings))


def default_target(app: AppState, dataset: str, target: str | None) -> str:
    """The target column: as given, or 'target' for the built-in sklearn data sets."""
    target = target or catalog(app).builtin_target(dataset)
    if target is None:
        raise InvalidRequestError(
            f"target is required for the data set {dataset!r}; name the column to predict"
        )
    return target


def load_training_data(app: AppState, dataset: str, target: str | None, features=None, drop=None, *, keep=None):
    """(X, y) for training (blocking: call from a worker thread or a job). ``keep``: a column X
    holds even if ``features``/``drop`` leave it out (the split column: it decides folds only)."""
    frame = catalog(app).load(dataset)
    X, y = load_xy(frame, default_target(app, dataset, target), features, drop)
    if keep is not None and keep not in X.columns and keep in frame.columns:
        X = X.assign(**{keep: frame.loc[X.index, keep]})
    return X, y


def inferred_schema(app: AppState, name: str) -> dict:
    frame = catalog(app).load(name)
    schema = infer_schema(frame, catalog(app).builtin_target(name), name=name)
    return schema.model_dump(mode="json", exclude_none=True)


def validate(app: AppState, request: ValidateRequest) -> ValidationResult:
    frame = catalog(app).load(request.dataset)
    pipeline = DataValidationPipeline({"fail_on_warnings": request.fail_on_warnings})
    return pipeline.validate(frame, request.dataset, schema=request.schema_name, target=request.target)


def register(server: MCPServer, app: AppState) -> None:
    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def list_datasets() -> DatasetList:
        """List the data sets you can train on: the built-in NBA data (nba:raptor), files in the data folders and sklearn built-ins."""
        infos = await anyio.to_thread.run_sync(lambda: catalog(app).list())
        return DatasetList(
            datasets=[
                DatasetEntry(name=i.name, source=i.source, format=i.format, size_bytes=i.size_bytes,
                             description=i.description)
                for i in infos
            ]
        )

    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def describe_dataset(name: DatasetName, target: TargetColumn = None) -> DatasetDescription:
        """Summarize a data set: rows, columns with types and ranges, the target's task, and columns to drop or split by."""
        return await anyio.to_thread.run_sync(lambda: catalog(app).describe(name, target))

    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def validate_data(request: ValidateRequest) -> ValidationResult:
        """Check a data set before training: schema, types, missing values, duplicates, identifier and date columns, and (with a target) target leaks.

        Errors mean the data cannot be trained on as declared; suggested_drop lists the columns to leave out.
        """
        return await anyio.to_thread.run_sync(lambda: validate(app, request))

    register_tools(server, list_datasets, describe_dataset, validate_data)
