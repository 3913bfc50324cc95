"""How a pipeline execution is written to MLflow, and how it is read back from any process.

Layout of one run:
- params: the pipeline config, nested keys flattened with '.'
- tags: ``pipeline.name``, ``pipeline.status``, ``pipeline.failed_stage``, ``pipeline.error``,
  ``pipeline.config_json`` (the config as typed JSON), ``pipeline.model_uri``,
  ``stage.<stage>.status`` / ``.summary`` / ``.error``
- metrics: the evaluation metrics, ``stage.<stage>.duration_seconds`` and ``stage.<stage>.attempts``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp_server.mlflow_integration import RunMetadata, RunStatus
from mcp_server.training_pipeline._types import (
    PipelineRun,
    PipelineStage,
    PipelineStatus,
    StageResult,
    StageStatus,
)

NAME_TAG = "pipeline.name"
STATUS_TAG = "pipeline.status"
ERROR_TAG = "pipeline.error"
FAILED_STAGE_TAG = "pipeline.failed_stage"
CONFIG_TAG = "pipeline.config_json"
MODEL_URI_TAG = "pipeline.model_uri"
STAGE_PREFIX = "stage."
MAX_CONFIG_TAG_CHARS = 5000

_RUN_STATUS_FOR = {
    PipelineStatus.COMPLETED: RunStatus.FINISHED,
    PipelineStatus.FAILED: RunStatus.FAILED,
    PipelineStatus.CANCELLED: RunStatus.KILLED,
}
_PIPELINE_STATUS_FOR = {
    RunStatus.FINISHED: PipelineStatus.COMPLETED,
    RunStatus.FAILED: PipelineStatus.FAILED,
    RunStatus.KILLED: PipelineStatus.CANCELLED,
    RunStatus.RUNNING: PipelineStatus.RUNNING,
}


def run_status_for(status: PipelineStatus) -> RunStatus:
    return _RUN_STATUS_FOR[status]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):  # an empty mapping adds no params
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def start_tags(name: str, config: Mapping[str, Any], stages: list[PipelineStage]) -> dict[str, str]:
    tags = {NAME_TAG: name, STATUS_TAG: PipelineStatus.RUNNING.value,
            "pipeline.stages": ",".join(s.value for s in stages)}
    config_json = json.dumps(config, default=str, sort_keys=True)
    if len(config_json) <= MAX_CONFIG_TAG_CHARS:
        tags[CONFIG_TAG] = config_json
    return tags


def stage_tags(result: StageResult) -> dict[str, str]:
    prefix = f"{STAGE_PREFIX}{result.stage.value}."
    tags = {f"{prefix}status": result.status.value}
    if result.output_summary:
        tags[f"{prefix}summary"] = result.output_summary
    if result.error:
        tags[f"{prefix}error"] = result.error
    return tags


def stage_metrics(result: StageResult) -> dict[str, float]:
    prefix = f"{STAGE_PREFIX}{result.stage.value}."
    return {f"{prefix}duration_seconds": result.duration_seconds, f"{prefix}attempts": float(result.attempts)}


def end_tags(run: PipelineRun) -> dict[str, str]:
    tags = {STATUS_TAG: run.status.value}
    if run.error:
        tags[ERROR_TAG] = run.error
    if run.failed_stage:
        tags[FAILED_STAGE_TAG] = run.failed_stage
    if run.model_uri:
        tags[MODEL_URI_TAG] = run.model_uri
    return tags


def run_from_metadata(meta: RunMetadata) -> PipelineRun:
    """Rebuild a PipelineRun from what MLflow stored (works in any process)."""
    tags = meta.tags
    stages: dict[str, StageResult] = {}
    for stage in PipelineStage:
        prefix = f"{STAGE_PREFIX}{stage.value}."
        status = tags.get(f"{prefix}status")
        if status is None:
            continue
        stages[stage.value] = StageResult(
            stage=stage,
            status=StageStatus(status),
            duration_seconds=meta.metrics.get(f"{prefix}duration_seconds", 0.0),
            attempts=int(meta.metrics.get(f"{prefix}attempts", 0)),
            output_summary=tags.get(f"{prefix}summary"),
            error=tags.get(f"{prefix}error"),
        )
    if CONFIG_TAG in tags:
        config = json.loads(tags[CONFIG_TAG])
    else:
        config = dict(meta.params)
    status_tag = tags.get(STATUS_TAG)
    status = _PIPELINE_STATUS_FOR[meta.status]
    if status_tag and meta.status is not RunStatus.RUNNING:
        status = PipelineStatus(status_tag)
    return PipelineRun(
        run_id=meta.run_id,
        pipeline_name=tags.get(NAME_TAG, meta.run_name or ""),
        status=status,
        start_time=meta.start_time,
        end_time=meta.end_time,
        config=config,
        metrics={k: v for k, v in meta.metrics.items() if not k.startswith(STAGE_PREFIX)},
        stages=stages,
        error=tags.get(ERROR_TAG) or tags.get("error"),
        failed_stage=tags.get(FAILED_STAGE_TAG),
        model_uri=tags.get(MODEL_URI_TAG),
        tracked=True,
    )


def history_filter(name: str) -> str:
    return f"tags.`{NAME_TAG}` = '{_quote(name)}'"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def metadata_for_local(run: PipelineRun) -> RunMetadata:
    """An untracked run in the tracker's RunMetadata shape, so one compare function serves both."""
    return RunMetadata(
        run_id=run.run_id,
        run_name=run.pipeline_name,
        experiment_id="",
        status=run_status_for(run.status) if run.status in _RUN_STATUS_FOR else RunStatus.RUNNING,
        start_time=run.start_time,
        end_time=run.end_time,
        params={k: str(v) for k, v in flatten_config(run.config).items()},
        metrics=dict(run.metrics),
    )
