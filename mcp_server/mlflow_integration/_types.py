"""Value types of the tracker: run status, run metadata, metric points."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from typing import Literal

from pydantic import BaseModel, Field

from ..error_handling import InvalidRequestError


class RunStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @classmethod
    def parse(cls, value: RunStatus | str) -> RunStatus:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise InvalidRequestError(f"status must be one of {valid}, got {value!r}") from None


class MetricPoint(BaseModel):
    step: int
    value: float
    timestamp: int = Field(description="milliseconds since the epoch")


class DatasetSource(BaseModel):
    """Where a data set comes from, for MLflow's dataset inputs: a URL, a name in the server's data
    folders (never an absolute path), or the code that builds it; with its attribution if any."""

    kind: Literal["url", "local", "code"]
    location: str
    attribution: str | None = None


class DatasetRef(BaseModel):
    """A data set recorded as a run input."""

    name: str
    digest: str
    context: str | None = None
    source: str | None = None


class RunMetadata(BaseModel):
    run_id: str
    run_name: str | None = None
    experiment_id: str
    status: RunStatus
    start_time: datetime | None = None
    end_time: datetime | None = None
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    parent_run_id: str | None = None
    artifact_uri: str | None = None
    datasets: list[DatasetRef] = Field(default_factory=list, description="The run's dataset inputs")

    @property
    def duration_seconds(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @classmethod
    def from_mlflow(cls, run) -> RunMetadata:  # run: mlflow.entities.Run
        info, data = run.info, run.data
        tags = dict(data.tags)
        return cls(
            run_id=info.run_id,
            run_name=info.run_name,
            experiment_id=info.experiment_id,
            status=RunStatus.parse(info.status),
            start_time=_from_ms(info.start_time),
            end_time=_from_ms(info.end_time),
            params=dict(data.params),
            metrics=dict(data.metrics),
            tags={k: v for k, v in tags.items() if k != "mlflow.runName"},
            parent_run_id=tags.get("mlflow.parentRunId"),
            artifact_uri=info.artifact_uri,
            datasets=_dataset_refs(run),
        )


def _dataset_refs(run) -> list[DatasetRef]:
    inputs = getattr(run, "inputs", None)
    refs = []
    for item in getattr(inputs, "dataset_inputs", None) or []:
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
        refs.append(DatasetRef(name=item.dataset.name, digest=item.dataset.digest, context=context,
                               source=item.dataset.source))
    return refs


def now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
