"""Argument types shared by the tools: one definition each, so every tool bounds a name the same way."""

from typing import Annotated

from pydantic import Field

DatasetName = Annotated[
    str,
    Field(min_length=1, max_length=200, description="A name from list_datasets, e.g. 'nba:raptor' or 'sklearn:iris'"),
]
TargetColumn = Annotated[
    str | None, Field(min_length=1, max_length=200, description="The column to predict (built-ins: 'target')"),
]
ExperimentName = Annotated[str, Field(min_length=1, max_length=200, description="MLflow experiment name")]
RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", max_length=32, description="An MLflow run id")]
ModelName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", max_length=100, description="Registered model name"),
]
Alias = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", max_length=64, description="e.g. 'champion'")]
# Bounded like MLflow's own limits: a key of 250 characters, a param value of 6000, a tag of 8000.
KeyName = Annotated[str, Field(min_length=1, max_length=250)]
# NaN and infinities are not JSON: a caller sends null for a missing value.
ParamValue = Annotated[str, Field(max_length=6000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
TagValue = Annotated[str, Field(max_length=8000)]
CellValue = Annotated[str, Field(max_length=10_000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
ColumnName = Annotated[str, Field(min_length=1, max_length=200)]
JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="A job id")]

# An MCP client commonly gives up on a request after 60 s: a wait ends well before that.
MAX_WAIT_SECONDS = 50
WaitSeconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS, description="Wait up to this long for the job (s)")]
StartWaitSeconds = Annotated[
    float | None,
    Field(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for the result (default 40); then poll get_job"),
]
