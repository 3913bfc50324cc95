"""Value types of a pipeline: stage kinds, statuses, per-stage results and the run record."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mcp_server.error_handling import InvalidRequestError


class PipelineStage(str, enum.Enum):
    """The kinds of stage, in the order a pipeline runs them."""

    DATA_VALIDATION = "data_validation"
    DATA_PREPARATION = "data_preparation"
    FEATURE_ENGINEERING = "feature_engineering"
    MODEL_TRAINING = "model_training"
    MODEL_EVALUATION = "model_evaluation"
    MODEL_REGISTRATION = "model_registration"
    MODEL_DEPLOYMENT = "model_deployment"

    @classmethod
    def parse(cls, value: PipelineStage | str) -> PipelineStage:
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for stage in cls:
            if text in (stage.value, stage.name.lower()):
                return stage
        valid = ", ".join(s.value for s in cls)
        raise InvalidRequestError(f"stage must be one of {valid}, got {value!r}")

    @property
    def position(self) -> int:
        return list(PipelineStage).index(self)


# The names under which a stage's output is handed to later stages (the first is the main one).
STAGE_OUTPUT_NAMES: dict[PipelineStage, tuple[str, ...]] = {
    PipelineStage.DATA_VALIDATION: ("validation_result", "validation"),
    PipelineStage.DATA_PREPARATION: ("prepared_data",),
    PipelineStage.FEATURE_ENGINEERING: ("features", "engineered_data"),
    PipelineStage.MODEL_TRAINING: ("trained_model", "model"),
    PipelineStage.MODEL_EVALUATION: ("evaluation", "metrics"),
    PipelineStage.MODEL_REGISTRATION: ("registration", "registered_model"),
    PipelineStage.MODEL_DEPLOYMENT: ("deployment",),
}


class PipelineStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StageStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class StageResult(BaseModel):
    """What one stage did: its status, how long it took, how many attempts, what it returned."""

    stage: PipelineStage
    status: StageStatus = StageStatus.PENDING
    duration_seconds: float = 0.0
    attempts: int = 0
    output_summary: str | None = None
    error: str | None = None


class PipelineRun(BaseModel):
    """One execution of a pipeline. ``run_id`` is the MLflow run id (a local id without MLflow)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    pipeline_name: str
    status: PipelineStatus
    start_time: datetime
    end_time: datetime | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    stages: dict[str, StageResult] = Field(default_factory=dict)
    error: str | None = None
    failed_stage: str | None = None
    model_uri: str | None = None
    tracked: bool = Field(default=False, description="True when the run was logged to MLflow")
    # Raw stage outputs (models, frames): only on the object returned by execute(), never serialized.
    outputs: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @property
    def stage_results(self) -> list[StageResult]:
        return list(self.stages.values())

    def output(self, stage: PipelineStage | str) -> Any:
        """The raw output of ``stage`` in this execution (None if it did not complete)."""
        return self.outputs.get(PipelineStage.parse(stage).value)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
