"""How a pipeline execution is written to MLflow, and how it is read back from any process.

Layout of one run (names in ``docs/tracking.md``):
- params: the pipeline config, nested keys flattened with '.'; the estimator's hyperparameters
  (``config["params"]``) under their own names (``max_depth``, not ``params.max_depth``); a feature
  list as ``n_features`` plus the artifact ``features.json``; unset (None) values left out.
- metrics: what the evaluation stage returned, nothing else (stage timings are not metrics).
- tags: ``mlflow.note.content`` (one line: what the run is, then how it ended) and bookkeeping
  under ``nba_mcp.``: ``kind`` = pipeline, ``pipeline`` (its name, for the history),
  ``stages`` (JSON: status, seconds, attempts and error of each stage), ``model_uri``, ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp_server.logged_values import parse_logged
from mcp_server.mlflow_integration import NOTE_TAG, RunMetadata, RunStatus
from mcp_server.training_pipeline._types import (
    PipelineRun,
    PipelineStage,
    PipelineStatus,
    StageResult,
    StageStatus,
)

KIND_TAG = "nba_mcp.kind"
PIPELINE_KIND = "pipeline"
NAME_TAG = "nba_mcp.pipeline"
STAGES_TAG = "nba_mcp.stages"
ERROR_TAG = "nba_mcp.error"
MODEL_URI_TAG = "nba_mcp.model_uri"
SOURCE_TAG = "mlflow.source.name"
LIBRARY_SOURCE = "mcp_server.training_pipeline"
HYPERPARAMETERS_KEY = "params"  # config key whose entries are logged under their own names
FEATURES_KEY = "features"
MAX_STAGE_ERROR_CHARS = 1000
# Runs written by earlier releases, read back by the history.
_OLD_NAME_TAG, _OLD_STATUS_TAG, _OLD_CONFIG_TAG = "pipeline.name", "pipeline.status", "pipeline.config_json"
_OLD_MODEL_URI_TAG, _OLD_STAGE_PREFIX = "pipeline.model_uri", "stage."

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


def run_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The params of a run: the config flattened without its unset (None) entries, hyperparameters
    under their own names (``max_depth=None`` is a value; a name that is also a config key keeps its
    ``params.`` prefix), a feature list as its count."""
    rest = {k: v for k, v in config.items() if k not in (HYPERPARAMETERS_KEY, FEATURES_KEY)}
    params = {k: v for k, v in flatten_config(rest).items() if v is not None}
    hyper = config.get(HYPERPARAMETERS_KEY)
    if isinstance(hyper, Mapping):
        for name, value in flatten_config(hyper).items():
            params[name if name not in params else f"{HYPERPARAMETERS_KEY}.{name}"] = value
    elif hyper is not None:
        params[HYPERPARAMETERS_KEY] = hyper
    features = config.get(FEATURES_KEY)
    if isinstance(features, (list, tuple)):
        params["n_features"] = len(features)
    elif features is not None:
        params[FEATURES_KEY] = features
    return params


def features_artifact(config: Mapping[str, Any]) -> list[str] | None:
    features = config.get(FEATURES_KEY)
    return [str(f) for f in features] if isinstance(features, (list, tuple)) else None


def start_tags(name: str, note: str | None = None) -> dict[str, str]:
    return {KIND_TAG: PIPELINE_KIND, NAME_TAG: name, SOURCE_TAG: LIBRARY_SOURCE,
            NOTE_TAG: note or f"Pipeline {name}."}


def stages_tag(stages: Mapping[str, StageResult]) -> dict[str, str]:
    """The one bookkeeping tag holding every stage's outcome (JSON), rewritten after each stage."""
    value = {}
    for name, result in stages.items():
        entry: dict[str, Any] = {"status": result.status.value, "seconds": round(result.duration_seconds, 3),
                                 "attempts": result.attempts}
        if result.error:
            entry["error"] = result.error[:MAX_STAGE_ERROR_CHARS]
        value[name] = entry
    return {STAGES_TAG: json.dumps(value, separators=(",", ":"))}


def end_tags(run: PipelineRun, note: str) -> dict[str, str]:
    tags = {NOTE_TAG: f"{note} {outcome_sentence(run)}"[:5000]}
    if run.error:
        tags[ERROR_TAG] = run.error
    if run.model_uri:
        tags[MODEL_URI_TAG] = run.model_uri
    return tags


def outcome_sentence(run: PipelineRun) -> str:
    if run.status is PipelineStatus.COMPLETED:
        shown = sorted(run.metrics, key=lambda k: (not k.startswith("test_"), k))[:4]
        scores = ", ".join(f"{k} {run.metrics[k]:.4g}" for k in shown)
        return f"Completed{': ' + scores if scores else ''}."
    if run.status is PipelineStatus.CANCELLED:
        return f"Cancelled ({run.error or 'stopped'})."
    return f"Failed: {(run.error or 'no error recorded').splitlines()[0][:500]}"


def _decoded(value: str) -> Any:
    """A param as MLflow stored it (text) back to a typed value where it reads as one."""
    return parse_logged(value)


def _unflattened(params: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in params.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                node, leaf = config, key
                break
            node = child
        node[leaf] = _decoded(value)
    return config


def _stages(meta: RunMetadata) -> dict[str, StageResult]:
    tags = meta.tags
    stages: dict[str, StageResult] = {}
    recorded = json.loads(tags[STAGES_TAG]) if STAGES_TAG in tags else {}
    for stage in PipelineStage:
        entry = recorded.get(stage.value)
        if entry is not None:
            stages[stage.value] = StageResult(
                stage=stage, status=StageStatus(entry["status"]), duration_seconds=entry.get("seconds", 0.0),
                attempts=int(entry.get("attempts", 0)), error=entry.get("error"),
            )
            continue
        prefix = f"{_OLD_STAGE_PREFIX}{stage.value}."  # a run of an earlier release
        status = tags.get(f"{prefix}status")
        if status is not None:
            stages[stage.value] = StageResult(
                stage=stage, status=StageStatus(status),
                duration_seconds=meta.metrics.get(f"{prefix}duration_seconds", 0.0),
                attempts=int(meta.metrics.get(f"{prefix}attempts", 0)),
                output_summary=tags.get(f"{prefix}summary"), error=tags.get(f"{prefix}error"),
            )
    return stages


def run_from_metadata(meta: RunMetadata) -> PipelineRun:
    """Rebuild a PipelineRun from what MLflow stored (works in any process). Its config is the
    logged params, typed again (a feature list reads back as ``n_features``)."""
    tags = meta.tags
    stages = _stages(meta)
    config = json.loads(tags[_OLD_CONFIG_TAG]) if _OLD_CONFIG_TAG in tags else _unflattened(meta.params)
    status = _PIPELINE_STATUS_FOR[meta.status]
    old_status = tags.get(_OLD_STATUS_TAG)
    if old_status and meta.status is not RunStatus.RUNNING:
        status = PipelineStatus(old_status)
    failed = next((name for name, s in stages.items() if s.status is StageStatus.FAILED), None)
    error = tags.get(ERROR_TAG) or tags.get("pipeline.error") or tags.get("error")
    return PipelineRun(
        run_id=meta.run_id,
        pipeline_name=tags.get(NAME_TAG) or tags.get(_OLD_NAME_TAG) or meta.run_name or "",
        status=status,
        start_time=meta.start_time,
        end_time=meta.end_time,
        config=config,
        metrics={k: v for k, v in meta.metrics.items() if not k.startswith(_OLD_STAGE_PREFIX)},
        stages=stages,
        error=error,
        failed_stage=failed if status is PipelineStatus.FAILED else None,
        model_uri=tags.get(MODEL_URI_TAG) or tags.get(_OLD_MODEL_URI_TAG),
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
        params={k: str(v) for k, v in run_params(run.config).items()},
        metrics=dict(run.metrics),
    )
