"""Data tools: list_datasets, describe_dataset, validate_data."""

from typing import Annotated, Literal

import anyio
from mcp.server import MCPServer
from pydantic import BaseModel, ConfigDict, Field

from mcp_server import rbac
from tools._decorators import READ_ONLY, ml_tool, register_tools
from tools._state import AppState

DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="A name from list_datasets, e.g. 'nba_logreg' or 'sklearn:breast_cancer'",
    ),
]
TargetColumn = Annotated[
    str | None,
    Field(min_length=1, max_length=200, description="The column to predict (built-ins: 'target')"),
]


class DatasetEntry(BaseModel):
    name: str
    source: Literal["file", "sklearn"]
    format: str
    size_bytes: int | None = None


class DatasetList(BaseModel):
    datasets: list[DatasetEntry]


# Views of the domain's pydantic models, declared here because the domain modules import pandas,
# which a server answering tools/list must not load (the schemas are built at registration).
class ColumnView(BaseModel):
    name: str
    dtype: str
    missing: int
    n_unique: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    top_values: dict[str, int] | None = Field(default=None, description="At most 5, most frequent first")


class TargetView(BaseModel):
    column: str
    task: Literal["classification", "regression"]
    n_classes: int | None = None
    class_counts: dict[str, int] | None = Field(default=None, description="At most 20, most frequent first")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    median: float | None = None


class DatasetDescriptionView(BaseModel):
    name: str
    n_rows: int
    n_columns: int
    columns: list[ColumnView]
    omitted_columns: int = Field(default=0, description="Columns past the limit, not summarized")
    target: TargetView | None = None
    duplicate_rows: int


def catalog(app: AppState):
    from mcp_server.datasets import DatasetCatalog

    return app.service("catalog", lambda: DatasetCatalog(app.settings))


def describe(app: AppState, name: str, target: str | None = None):
    """The domain's DatasetDescription of ``name`` (blocking: call from a worker thread)."""
    return catalog(app).describe(name, target)


class IssueView(BaseModel):
    column: str | None = None
    rule: str
    severity: Literal["error", "warning", "info"]
    count: int
    example_rows: list[int | str]
    message: str


class ValidationReport(BaseModel):
    dataset_name: str
    schema_name: str | None = None
    passed: bool = Field(description="False when any error (or, with fail_on_warnings, any warning) was found")
    n_rows: int
    n_columns: int
    summary: dict[str, int] = Field(description="Issue counts per severity")
    issues: list[IssueView]


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: DatasetName
    target: str | None = Field(
        default=None, min_length=1, max_length=200, description="Target column: enables label checks"
    )
    schema_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="A schema from config/schemas, e.g. 'player_stats' (nba_logreg) or 'player_seasons'",
    )
    fail_on_warnings: bool = False


def default_target(app: AppState, dataset: str, target: str | None) -> str:
    """The target column: as given, or 'target' for the built-in sklearn data sets."""
    if target:
        return target
    from mcp_server.datasets import TARGET_COLUMN
    from mcp_server.error_handling import InvalidRequestError

    if catalog(app)._builtin_name(dataset) is not None:  # noqa: SLF001
        return TARGET_COLUMN
    raise InvalidRequestError(f"target is required for the file data set {dataset!r}; name the column to predict")


def load_training_data(app: AppState, dataset: str, target: str | None, features=None, drop=None):
    """(X, y) for training (blocking: call from a worker thread or a job)."""
    from mcp_server.datasets import load_xy

    frame = catalog(app).load(dataset)
    return load_xy(frame, default_target(app, dataset, target), features, drop)


def inferred_schema(app: AppState, name: str) -> dict:
    from mcp_server.data_validation_pipeline import infer_schema

    frame = catalog(app).load(name)
    target = "target" if catalog(app)._builtin_name(name) is not None else None  # noqa: SLF001
    return infer_schema(frame, target, name=name).model_dump(mode="json", exclude_none=True)


def validate(app: AppState, request: ValidateRequest) -> ValidationReport:
    from mcp_server.data_validation_pipeline import DataValidationPipeline

    frame = catalog(app).load(request.dataset)
    pipeline = DataValidationPipeline({"fail_on_warnings": request.fail_on_warnings})
    result = pipeline.validate(frame, request.dataset, schema=request.schema_name, target=request.target)
    return ValidationReport.model_validate(result.model_dump(mode="json"))


def register(server: MCPServer, app: AppState) -> None:
    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def list_datasets() -> DatasetList:
        """List the data sets you can train on: files in the configured data folders and sklearn built-ins."""
        infos = await anyio.to_thread.run_sync(lambda: catalog(app).list())
        return DatasetList(
            datasets=[
                DatasetEntry(name=i.name, source=i.source, format=i.format, size_bytes=i.size_bytes)
                for i in infos
            ]
        )

    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def describe_dataset(name: DatasetName, target: TargetColumn = None) -> DatasetDescriptionView:
        """Summarize a data set: rows, columns with types and ranges, missing values, and the target's task."""
        description = await anyio.to_thread.run_sync(lambda: describe(app, name, target))
        return DatasetDescriptionView.model_validate(description.model_dump())

    @ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
    async def validate_data(request: ValidateRequest) -> ValidationReport:
        """Check a data set before training: schema, types, ranges, missing values, duplicates, label conflicts.

        Errors mean the data cannot be trained on as declared; warnings and info are worth reporting.
        """
        return await anyio.to_thread.run_sync(lambda: validate(app, request))

    register_tools(server, list_datasets, describe_dataset, validate_data)
