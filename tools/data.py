"""Data tools: list_datasets, describe_dataset, validate_data."""

from typing import Annotated, Literal

import anyio
from mcp.server import MCPServer
from pydantic import BaseModel, Field

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
    class_counts: dict[str, int] | None = None
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
    target: TargetView | None = None
    duplicate_rows: int


def catalog(app: AppState):
    from mcp_server.datasets import DatasetCatalog

    return app.service("catalog", lambda: DatasetCatalog(app.settings))


def describe(app: AppState, name: str, target: str | None = None):
    """The domain's DatasetDescription of ``name`` (blocking: call from a worker thread)."""
    return catalog(app).describe(name, target)


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

    register_tools(server, list_datasets, describe_dataset)
