"""TrainingPipeline: named stages run in a fixed order, each execution one MLflow run."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from functools import partial
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.mlflow_integration import NOTE_TAG
from mcp_server.mlflow_integration import compare_runs as compare_run_metadata
from mcp_server.training_pipeline import _mlflow_record as record
from mcp_server.training_pipeline._stages import (
    StageCancelled,
    StageSpec,
    find_feature_frame,
    find_model,
    numeric_metrics,
    run_with_retries,
    summarize,
)
from mcp_server.training_pipeline._types import (
    STAGE_OUTPUT_NAMES,
    PipelineRun,
    PipelineStage,
    PipelineStatus,
    StageResult,
    StageStatus,
)

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)

MAX_HISTORY = 1000
# on_stage(stage_name, index (1-based), total, status) — for progress reporting.
StageCallback = Callable[[str, int, int, str], None]


class TrainingPipeline:
    """Stages (validate → prepare → engineer → train → evaluate → register → deploy) run in that order.

    A stage function receives, by parameter name, any of: ``config``, ``data``, ``run_id``,
    ``tracker``, ``should_stop``, ``pipeline_name`` and the outputs of earlier stages
    (``validation_result``, ``prepared_data``, ``features``, ``trained_model`` — what the training
    stage returned — and ``model`` — the fitted estimator found in it —, ``model_uri``, ``evaluation``/``metrics``, ``registration``, ``deployment``); a function
    taking ``**kwargs`` receives them all. An evaluation stage that returns a dict of numbers
    sets the run's metrics.
    """

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        mlflow_tracker: Tracker | None = None,
        enable_mlflow: bool = True,
        *,
        settings: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidRequestError(f"pipeline name must be a non-empty string of at most 200 characters, got {name!r}")
        if config is not None and not isinstance(config, Mapping):
            raise InvalidRequestError(f"config must be a mapping, got {type(config).__name__}")
        self.name = name
        self.config: dict[str, Any] = copy.deepcopy(dict(config or {}))
        self.enable_mlflow = enable_mlflow
        self._tracker = mlflow_tracker
        self._settings = settings
        self._stages: dict[PipelineStage, StageSpec] = {}
        self._local_history: list[PipelineRun] = []
        self._lock = threading.Lock()
        # run id -> the name and description of the model it logs (per run: executions may overlap)
        self._labels: dict[str, Callable[[], tuple[str, str]] | None] = {}

    # --- building -----------------------------------------------------------------------------
    def add_stage(
        self,
        stage: PipelineStage | str,
        func: Callable[..., Any],
        *,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 2.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> TrainingPipeline:
        """Declare the function of a stage; a failing attempt is retried ``retries`` times,
        waiting ``retry_delay * retry_backoff**n`` seconds. Returns the pipeline (chainable)."""
        kind = PipelineStage.parse(stage)
        if kind in self._stages:
            raise InvalidRequestError(f"stage {kind.value} is already defined in pipeline {self.name!r}")
        self._stages[kind] = StageSpec(kind, func, retries, retry_delay, retry_backoff, tuple(retry_on))
        return self

    @property
    def stages(self) -> list[PipelineStage]:
        return sorted(self._stages, key=lambda s: s.position)

    def get_current_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    def update_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the config used by later executions; returns the new config."""
        self.config.update(copy.deepcopy(dict(changes)))
        return self.get_current_config()

    @property
    def tracker(self) -> Any:
        """The tracker runs are logged to (None when MLflow is disabled); built on first use."""
        if not self.enable_mlflow:
            return None
        if self._tracker is None:
            from mcp_server.mlflow_integration import get_mlflow_tracker
            from mcp_server.settings import Settings

            settings = self._settings or Settings()
            self._tracker = get_mlflow_tracker(settings.experiment_name, settings=settings)
        return self._tracker

    # --- running ------------------------------------------------------------------------------
    def execute(
        self,
        data: Any = None,
        *,
        should_stop: Callable[[], bool] | None = None,
        on_stage: StageCallback | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        model_label: Callable[[], tuple[str, str]] | None = None,
        final_tags: Callable[[PipelineRun], Mapping[str, Any]] | None = None,
    ) -> PipelineRun:
        """Run every stage once; a failed stage fails the run and skips the rest. Never raises
        for a stage's error (it is in the returned run); raises when tracking itself fails.

        ``model_label``: the trained model's name and description when it is logged (default
        ``model``); ``final_tags``: tags written last, over the default description (a new
        ``mlflow.runName`` renames the run), from the ended run."""
        if not self._stages:
            raise InvalidRequestError(f"pipeline {self.name!r} has no stages; add one with add_stage")
        specs = [self._stages[s] for s in self.stages]
        config = self.get_current_config()
        tracker = self.tracker
        started = datetime.now(timezone.utc)
        if tracker is None:
            run = self._new_run(uuid.uuid4().hex, started, config, tracked=False)
            self._run_stages(run, specs, data, None, should_stop, on_stage)
        else:
            tags = dict(tags or {})
            note = str(tags.pop(NOTE_TAG, "")) or None
            all_tags = {**record.start_tags(self.name, note), **tags}
            nested = tracker.active_run_id is not None
            with tracker.start_run(run_name or self.name, tags=all_tags, nested=nested) as run_id:
                run = self._new_run(run_id, started, config, tracked=True)
                params = record.run_params(config)
                if params:
                    tracker.log_params(params, run_id=run_id)
                features = record.features_artifact(config)
                if features is not None:
                    tracker.log_dict(features, "features.json", run_id=run_id)
                self._run_stages(run, specs, data, tracker, should_stop, on_stage, model_label)
                ending = {**record.stages_tag(run.stages), **record.end_tags(run, all_tags[NOTE_TAG])}
                tracker.set_tags({**ending, **(final_tags(run) if final_tags is not None else {})}, run_id=run_id)
                tracker.end_run(record.run_status_for(run.status), run_id=run_id)
        with self._lock:
            self._local_history.append(run)
            del self._local_history[:-MAX_HISTORY]
        logger.info("pipeline %s run %s ended %s", self.name, run.run_id, run.status.value)
        return run

    def _new_run(self, run_id: str, started: datetime, config: dict[str, Any], *, tracked: bool) -> PipelineRun:
        return PipelineRun(
            run_id=run_id,
            pipeline_name=self.name,
            status=PipelineStatus.RUNNING,
            start_time=started,
            config=config,
            stages={s.value: StageResult(stage=s) for s in self.stages},
            tracked=tracked,
        )

    def _run_stages(self, run, specs, data, tracker, should_stop, on_stage, model_label=None) -> None:
        self._labels[run.run_id] = model_label
        try:
            self._run_stages_labelled(run, specs, data, tracker, should_stop, on_stage)
        finally:
            self._labels.pop(run.run_id, None)

    def _run_stages_labelled(self, run, specs, data, tracker, should_stop, on_stage) -> None:
        available: dict[str, Any] = {
            "config": run.config, "data": data, "run_id": run.run_id, "tracker": tracker,
            "mlflow_tracker": tracker, "should_stop": should_stop or (lambda: False),
            "pipeline_name": self.name,
        }
        total = len(specs)
        for index, spec in enumerate(specs, start=1):
            result = run.stages[spec.stage.value]
            if run.status is PipelineStatus.RUNNING and should_stop is not None and should_stop():
                run.status = PipelineStatus.CANCELLED
                run.error = f"cancelled before stage {spec.stage.value}"
            if run.status is not PipelineStatus.RUNNING:
                result.status = StageStatus.SKIPPED
                self._report(on_stage, run, result, index, total, tracker)
                continue
            result.status = StageStatus.RUNNING
            _notify(on_stage, spec.stage.value, index, total, StageStatus.RUNNING.value)
            began = time.perf_counter()
            try:
                output = run_with_retries(spec, available, should_stop, partial(setattr, result, "attempts"))
                self._absorb(run, spec.stage, output, available, tracker)
                result.status = StageStatus.COMPLETED
                result.output_summary = summarize(output)
            except StageCancelled:
                result.status = StageStatus.FAILED
                result.error = "cancelled while waiting to retry"
                run.status = PipelineStatus.CANCELLED
                run.error = f"cancelled during stage {spec.stage.value}"
            except Exception as exc:  # a stage's failure is the run's outcome, not ours to raise
                # A request the caller can fix (a leak stop, a bad column) is the caller's news, not the
                # server's: no traceback, and below the WARNING level that stdio clients show.
                fixable = isinstance(exc, InvalidRequestError)
                logger.log(logging.INFO if fixable else logging.WARNING, "stage %s of %s failed: %s",
                           spec.stage.value, self.name, exc, exc_info=not fixable)
                result.status = StageStatus.FAILED
                result.error = f"{type(exc).__name__}: {exc}"[:2000]
                run.status = PipelineStatus.FAILED
                run.failed_stage = spec.stage.value
                run.error = f"stage {spec.stage.value} failed: {result.error}"
            result.duration_seconds = round(time.perf_counter() - began, 6)
            self._report(on_stage, run, result, index, total, tracker)
        if run.status is PipelineStatus.RUNNING:
            run.status = PipelineStatus.COMPLETED
        run.end_time = datetime.now(timezone.utc)

    def _absorb(self, run: PipelineRun, stage: PipelineStage, output: Any, available: dict, tracker) -> None:
        """Make a stage's output visible to later stages and record what it means for the run."""
        run.outputs[stage.value] = output
        for name in STAGE_OUTPUT_NAMES[stage]:
            available[name] = output
        if stage is PipelineStage.MODEL_TRAINING:
            model = find_model(output)
            if model is not None:
                # trained_model stays what the stage returned (e.g. {"model": ..., ...}); model is the
                # fitted estimator found in it, so both stage styles work.
                available["model"] = model
                if tracker is not None:
                    example = find_feature_frame(available.get("features"), available.get("prepared_data"))
                    label = self._labels.get(run.run_id)
                    name, description = label() if label is not None else ("model", None)
                    run.model_uri = tracker.log_model(model, name, input_example=example, run_id=run.run_id,
                                                      description=description)
                    available["model_uri"] = run.model_uri
        if stage is PipelineStage.MODEL_EVALUATION:
            run.metrics = numeric_metrics(output)
            if tracker is not None and run.metrics:
                self._log_model_metrics(run, tracker)

    @staticmethod
    def _log_model_metrics(run: PipelineRun, tracker: Tracker) -> None:
        """The evaluation's metrics, which are also the logged model's (``models:/m-<id>``): ``test_*``
        measured on the run's ``evaluation`` input, ``cv_*`` on its ``training`` input, if it has them."""
        model_id = (run.model_uri or "").removeprefix("models:/")
        if not model_id.startswith("m-"):
            tracker.log_metrics(run.metrics, run_id=run.run_id)
            return
        inputs = {d.context: d for d in tracker.get_run(run.run_id).datasets}
        groups: dict[str | None, dict[str, float]] = {}
        for name, value in run.metrics.items():
            context = "evaluation" if name.startswith("test_") else "training" if name.startswith("cv_") else None
            groups.setdefault(context if context in inputs else None, {})[name] = value
        for context, metrics in groups.items():
            tracker.log_metrics(metrics, run_id=run.run_id, model_id=model_id,
                                dataset=inputs[context] if context else None)

    def _report(self, on_stage, run: PipelineRun, result: StageResult, index: int, total: int, tracker) -> None:
        run_id = run.run_id
        if tracker is not None and result.status is not StageStatus.SKIPPED:
            tracker.set_tags(record.stages_tag(run.stages), run_id=run_id)
        _notify(on_stage, result.stage.value, index, total, result.status.value)

    # --- reading ------------------------------------------------------------------------------
    def get_run_history(self, limit: int = 10) -> list[PipelineRun]:
        """This pipeline's runs, newest first (read from MLflow when enabled, so any process sees them)."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise InvalidRequestError(f"limit must be between 1 and {MAX_HISTORY}, got {limit!r}")
        tracker = self.tracker
        if tracker is None:
            with self._lock:
                return list(reversed(self._local_history))[:limit]
        found = tracker.search_runs(
            record.history_filter(self.name), max_results=limit, order_by=["attributes.start_time DESC"]
        )
        return [record.run_from_metadata(meta) for meta in found]

    def get_run(self, run_id: str) -> PipelineRun:
        tracker = self.tracker
        if tracker is None:
            return self._local_run(run_id)
        return record.run_from_metadata(tracker.get_run(run_id))

    def compare_runs(self, run_ids: list[str]) -> dict[str, Any]:
        """Metrics side by side (``["metrics"][name]["diff"][run_id]`` is the change from the first run)."""
        if not run_ids or len(run_ids) > 100:
            raise InvalidRequestError(f"run_ids must list between 1 and 100 runs, got {len(run_ids or [])}")
        tracker = self.tracker
        if tracker is not None:
            return tracker.compare_runs(list(run_ids))
        return compare_run_metadata([record.metadata_for_local(self._local_run(r)) for r in run_ids])

    def _local_run(self, run_id: str) -> PipelineRun:
        with self._lock:
            for run in self._local_history:
                if run.run_id == run_id:
                    return run
        raise NotFoundError(f"run {run_id!r} not found in the history of pipeline {self.name!r}")


def _notify(on_stage: StageCallback | None, stage: str, index: int, total: int, status: str) -> None:
    if on_stage is None:
        return
    try:
        on_stage(stage, index, total, status)
    except Exception:  # progress reporting must never break the work it reports on
        logger.warning("on_stage callback failed for stage %s", stage, exc_info=True)
