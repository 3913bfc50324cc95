"""Data tools: list_datasets, describe_dataset, validate_data."""

import threading
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from mcp_server import rbac
from mcp_server.data_validation_pipeline import DataValidationPipeline, ValidationResult
from mcp_server.datasets import DatasetDescription, date_columns, job_features
from mcp_server.field_aliases import accepting_aliases
from mcp_server.evaluation import SplitSpec, check_split, coerce_split
from tools.app_state import state_of
from tools.blocking import run_stoppable
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


# Column names, bounded; each must be a column of the data set (job_features says which are not).
Columns = Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=1000)]


class ValidateRequest(BaseModel):
    # With features, drop or split: exactly the columns a job with the same arguments trains on. The
    # split is checked as a SplitSpec (coerce_split) but not inlined in the schema, and empty lists
    # mean "not given": tools/list stays within its 24,000 characters.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    dataset: DatasetName
    target: TargetColumn = None
    schema_name: str | None = Field(
        default=None, min_length=1, max_length=100, validation_alias=accepting_aliases("schema_name"),
        description="A packaged schema, e.g. 'player_stats'")
    features: Columns = Field(default_factory=list)
    drop: Columns = Field(default_factory=list, validation_alias=accepting_aliases("drop"))
    split: dict[str, Any] = Field(
        default_factory=dict, max_length=5, description="e.g. {'kind': 'group', 'column': 'team'}")
    fail_on_warnings: bool = False

    @property
    def for_job(self) -> bool:
        """Features, drop or split given: check what a job would train on, not the whole table."""
        return bool(self.features or self.drop or self.split)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def list_datasets(ctx: Context) -> DatasetList:
    """List the data sets you can train on: the built-in NBA data (nba:raptor), files in the data folders and sklearn built-ins."""
    infos = await anyio.to_thread.run_sync(state_of(ctx).catalog.list)
    return DatasetList(datasets=[
        DatasetEntry(name=i.name, source=i.source, format=i.format, size_bytes=i.size_bytes, description=i.description)
        for i in infos
    ])


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def describe_dataset(
    # `dataset`, as in every tool that names a data set; `name` (this tool's first name) still works.
    dataset: Annotated[DatasetName, Field(validation_alias=AliasChoices("dataset", "name"))],
    ctx: Context,
    target: TargetColumn = None,
) -> DatasetDescription:
    """Summarize a data set: rows, columns with types and ranges, the target's task, and columns to drop or split by."""
    return await run_stoppable(lambda stop: state_of(ctx).catalog.describe(dataset, target, stop=stop))


def date_columns_of(app: Any, dataset: str) -> list[str]:
    """The date columns of ``dataset`` (a time split's candidates); [] when it cannot be read."""
    try:
        return date_columns(app.catalog.load(dataset))
    except Exception:  # noqa: BLE001 - only a hint in an error message: an unreadable data set gives none
        return []


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def validate_data(request: ValidateRequest, ctx: Context) -> ValidationResult:
    """Check a data set before training: schema, types, missing values, duplicates, identifier and date columns, and (with a target) target leaks.

    Given a job's features, drop and split, checks just the columns it trains on; suggested_drop lists what to leave out.
    """

    def validate(stop: threading.Event) -> ValidationResult:
        app = state_of(ctx)
        frame = app.catalog.load(request.dataset, stop=stop)
        settings = app.settings
        pipeline = DataValidationPipeline({"fail_on_warnings": request.fail_on_warnings,
                                           "leak_threshold": settings.leak_threshold,
                                           "leak_screen_rows": settings.leak_screen_rows})
        target, features = request.target, None
        if request.for_job:  # the job's columns: identifiers, dates, entities and leaks among them are errors
            target = app.catalog.target_for(request.dataset, request.target)
            split = coerce_split(request.split or None) or SplitSpec()
            features = job_features(frame, target, request.features or None, request.drop,
                                    split_column=split.column)
            check_split(split, frame, target=target, n_folds=None)
        return pipeline.validate(frame, request.dataset, schema=request.schema_name, target=target,
                                 features=features)

    return await run_stoppable(validate)


TOOLS = (list_datasets, describe_dataset, validate_data)
