"""Data tools: list_datasets, describe_dataset, validate_data."""

from typing import Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, ConfigDict, Field

from mcp_server import rbac
from mcp_server.data_validation_pipeline import DataValidationPipeline, ValidationResult
from mcp_server.datasets import DatasetDescription
from tools.app_state import state_of
from tools.fields import DatasetName, TargetColumn
from tools.registration import READ_ONLY, ml_tool


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
    target: TargetColumn = None
    schema_name: str | None = Field(
        default=None, min_length=1, max_length=100, description="A packaged schema, e.g. 'player_stats'"
    )
    fail_on_warnings: bool = False


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def list_datasets(ctx: Context) -> DatasetList:
    """List the data sets you can train on: the built-in NBA data (nba:raptor), files in the data folders and sklearn built-ins."""
    infos = await anyio.to_thread.run_sync(state_of(ctx).catalog.list)
    return DatasetList(datasets=[
        DatasetEntry(name=i.name, source=i.source, format=i.format, size_bytes=i.size_bytes, description=i.description)
        for i in infos
    ])


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def describe_dataset(name: DatasetName, ctx: Context, target: TargetColumn = None) -> DatasetDescription:
    """Summarize a data set: rows, columns with types and ranges, the target's task, and columns to drop or split by."""
    return await anyio.to_thread.run_sync(lambda: state_of(ctx).catalog.describe(name, target))


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def validate_data(request: ValidateRequest, ctx: Context) -> ValidationResult:
    """Check a data set before training: schema, types, missing values, duplicates, identifier and date columns, and (with a target) target leaks.

    Errors mean the data cannot be trained on as declared; suggested_drop lists the columns to leave out.
    """

    def validate() -> ValidationResult:
        frame = state_of(ctx).catalog.load(request.dataset)
        pipeline = DataValidationPipeline({"fail_on_warnings": request.fail_on_warnings})
        return pipeline.validate(frame, request.dataset, schema=request.schema_name, target=request.target)

    return await anyio.to_thread.run_sync(validate)


TOOLS = (list_datasets, describe_dataset, validate_data)
