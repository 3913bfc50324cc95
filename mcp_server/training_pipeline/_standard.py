"""The standard pipeline built from declarative arguments (what the MCP ``run_pipeline`` tool calls).

validate (the data, and a leak screen of the features: identifiers, dates and target leaks stop
the run unless ``leak_check='warn'``) → split (the ``SplitSpec`` holdout: the same test rows a
tuning search with the same spec kept out) → train (allow-listed estimator in a preprocessing
Pipeline) → evaluate (test metrics, cross-validated ``cv_<metric>_mean``/``_std`` on the training
part, a PNG, warnings) → register → deploy (champion alias only if the new version is not
flagged and beats the current champion on the primary metric; the comparison is recorded either
way). Request mistakes (unknown dataset, column, estimator, hyperparameter, schema, metric, split;
a dataset path leaving the data folders) raise before any run is created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_server.error_handling import InvalidRequestError
from mcp_server.field_aliases import accepting_aliases
from mcp_server.hyperparameter_tuning import ColumnList, EnsembleMember, EstimatorName, ParamName
from mcp_server.evaluation import (
    DEFAULT_NEAR_PERFECT,
    LeakCheck,
    ModelWarning,
    SplitRecord,
    SplitSpec,
    check_split,
    check_target,
)
from mcp_server.training_pipeline._evaluation import default_primary_metric, metric_names
from mcp_server.training_pipeline._from_search import request_from_search
from mcp_server.training_pipeline._noise import BaselineScore
from mcp_server.training_pipeline._pipeline import StageCallback, TrainingPipeline
from mcp_server.mlflow_integration import NOTE_TAG
from mcp_server.training_pipeline._registry import PromotionDecision, check_model_name
from mcp_server.training_pipeline._standard_stages import standard_stages
from mcp_server.training_pipeline import _run_labels as labels
from mcp_server.training_pipeline._types import PipelineRun, PipelineStage, PipelineStatus, StageResult

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker


ENSEMBLE = "ensemble"  # the estimator of a request that trains a weighted ensemble (its members say which)
MAX_ENSEMBLE_MEMBERS = 10

# Bounded like the tuning request, and like MLflow's own limit on a param value (6000 characters).
ParamValue = Annotated[str, Field(max_length=6000)] | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None


class StandardPipelineRequest(BaseModel):
    """What to train, on which data, and how to judge it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    from_search: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{12}([0-9a-f]{20})?$", max_length=32,
        description="A tuning job id or parent_run_id: train its winner on its data and split")
    dataset: str | None = Field(default=None, min_length=1, max_length=200, description="A name from list_datasets")
    target: str | None = Field(default=None, min_length=1, max_length=200, description="Column to predict")
    features: ColumnList | None = Field(default=None, description="Default: all but target and drop")
    drop: ColumnList = Field(
        default_factory=list, validation_alias=accepting_aliases("drop"),
        description="Columns never used as features (ids, names, dates, leaks)",
    )
    estimator: EstimatorName | Literal["ensemble"] = Field(
        default="random_forest", description="An allow-listed estimator, or 'ensemble' with ensemble members")
    params: dict[ParamName, ParamValue] = Field(
        default_factory=dict, max_length=50, description="Hyperparameters, e.g. a tuning job's best_params")
    ensemble: list[EnsembleMember] | None = Field(
        default=None, min_length=2, max_length=MAX_ENSEMBLE_MEMBERS,
        description="estimator='ensemble': its members; from_search fills it")
    task: Literal["classification", "regression"] | None = Field(default=None, description="Default: inferred")
    drop_duplicates: bool = Field(
        default=True, description="Drop rows repeated in every column")
    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Holdout and folds: the tuning job's split tests on rows it never saw")
    cv_folds: int | None = Field(default=5, ge=2, le=20, description="CV on the training part, beside the test score")
    leak_check: LeakCheck = Field(default="stop", description="stop: leaking columns stop the run; warn: flag")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the estimator (the split has its own)")
    schema_name: str | None = Field(
        default=None, min_length=1, max_length=100, validation_alias=accepting_aliases("schema_name"),
        description="Validation schema")
    model_name: str | None = Field(default=None, min_length=1, max_length=100, description="Default: <dataset>-<target>")
    primary_metric: str | None = Field(default=None, max_length=64, description="Decides promotion; default per task")
    promote: bool = Field(default=True, description="Make the new version champion if it wins and is not flagged")
    experiment_name: str | None = Field(default=None, min_length=1, max_length=200)
    run_name: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _data_named(self) -> StandardPipelineRequest:
        if self.dataset is None and self.from_search is None:
            raise ValueError("dataset is required (or from_search, which brings the search's data set)")
        if (self.estimator == ENSEMBLE) != (self.ensemble is not None):
            raise ValueError("estimator='ensemble' and ensemble members go together: give both or neither")
        if self.ensemble is not None and self.params:
            raise ValueError("an ensemble's hyperparameters are its members' params; leave params empty")
        return self


class PipelineResult(BaseModel):
    """Outcome of a standard pipeline run."""

    model_config = ConfigDict(protected_namespaces=())

    run_id: str
    pipeline_name: str
    status: PipelineStatus
    error: str | None = None
    failed_stage: str | None = None
    task: Literal["classification", "regression"]
    primary_metric: str
    metrics: dict[str, float] = Field(default_factory=dict, description="Test metrics, and cv_<metric>_mean / _std")
    warnings: list[ModelWarning] = Field(default_factory=list, description="Why not to trust the score as it stands")
    split: SplitRecord | None = None
    baseline: BaselineScore | None = Field(default=None, description="A trivial model on the same rows")
    duplicates_dropped: int | None = Field(default=None, description="Full-row duplicates left out of train and test")
    stages: list[StageResult] = Field(default_factory=list)
    model_name: str
    model_version: int | None = None
    model_uri: str | None = None
    promotion: PromotionDecision | None = None
    validation: dict[str, Any] | None = Field(default=None, description="Validation summary and issues")
    n_train: int | None = None
    n_test: int | None = None
    duration_seconds: float | None = None
    artifacts: list[str] = Field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.warnings)


class PipelinePlan(BaseModel):
    """A request checked against the data: everything the stages need, nothing left to guess."""

    model_config = ConfigDict(protected_namespaces=())

    target: str
    features: list[str]
    task: Literal["classification", "regression"]
    params: dict[str, Any]
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Every hyperparameter the model is built with: params over the defaults"
    )
    primary_metric: str
    model_name: str


def run_standard_pipeline(
    request: StandardPipelineRequest,
    *,
    settings: Any,
    tracker: Tracker,
    catalog: Any = None,
    validator: Any = None,
    should_stop: Callable[[], bool] | None = None,
    on_stage: StageCallback | None = None,
    plan: PipelinePlan | None = None,
) -> PipelineResult:
    """Run validate → split → train → evaluate → register → deploy as one MLflow run.

    ``plan``: the ``plan_pipeline`` of this request, when the caller checked it already."""
    from mcp_server.data_validation_pipeline import DataValidationPipeline
    from mcp_server.datasets import DatasetCatalog

    catalog = catalog or DatasetCatalog(settings)
    validator = validator or DataValidationPipeline.for_settings(settings)
    if request.from_search and plan is None:
        request = request_from_search(request, tracker)
    frame = catalog.load(request.dataset)  # refuses names that leave the data folders (cached)
    if plan is None:
        request = request.model_copy(update={"target": catalog.target_for(request.dataset, request.target)})
        plan = plan_pipeline(request, frame, validator=validator, settings=settings)
    request = request.model_copy(update={"target": plan.target})
    captured: dict[str, Any] = {}
    pipeline = TrainingPipeline(plan.model_name, _config(request, plan), tracker, enable_mlflow=True, settings=settings)
    near = getattr(settings, "near_perfect_score", DEFAULT_NEAR_PERFECT)
    isolate = bool(getattr(settings, "isolate_trials", False))  # fits in workers that cancel can kill
    stages = standard_stages(request, plan, validator, captured, near_perfect_score=near,
                             source=catalog.source(request.dataset), isolate=isolate, settings=settings)
    for stage, func in stages.items():
        pipeline.add_stage(stage, func)
    note = _note(request, plan)

    def label_model() -> tuple[str, str]:
        warned = captured.get("warnings", [])
        return labels.model_label(labels.run_role(request, warnings=warned), request, plan.task, warned)

    def final_tags(ended: PipelineRun) -> dict[str, str]:
        warned = captured.get("warnings", []) if ended.status is PipelineStatus.COMPLETED else []
        description, whole = labels.outcome_description(
            ended, primary=plan.primary_metric, note=note, warnings=warned, promotion=captured.get("promotion"))
        if whole is not None:
            tracker.log_text(whole, labels.STOPPED_ARTIFACT, run_id=ended.run_id)
        tags = {NOTE_TAG: labels.cut_at_word(description, 5000)}
        if not request.run_name:  # the role is known at the end (stopped, forced): the name says it
            tags["mlflow.runName"] = labels.run_name(labels.run_role(request, warnings=warned, status=ended.status),
                                                     request)
        return tags

    run = pipeline.execute(
        frame,
        should_stop=should_stop,
        on_stage=on_stage,
        run_name=request.run_name or labels.run_name(labels.run_role(request), request),
        tags={NOTE_TAG: note},
        model_label=label_model,
        final_tags=final_tags,
    )
    prepared = run.output(PipelineStage.DATA_PREPARATION) or {}
    registration = run.output(PipelineStage.MODEL_REGISTRATION) or {}
    validation = captured.get("validation")
    return PipelineResult(
        run_id=run.run_id,
        pipeline_name=run.pipeline_name,
        status=run.status,
        error=run.error,
        failed_stage=run.failed_stage,
        task=plan.task,
        primary_metric=plan.primary_metric,
        metrics=run.metrics,
        warnings=captured.get("warnings", []),
        split=captured.get("split"),
        baseline=captured.get("baseline"),
        duplicates_dropped=prepared.get("duplicates_dropped"),
        stages=run.stage_results,
        model_name=plan.model_name,
        model_version=registration.get("version"),
        model_uri=run.model_uri,
        promotion=captured.get("promotion"),
        validation=validation.model_dump(mode="json") if validation is not None else None,
        n_train=len(prepared["y_train"]) if "y_train" in prepared else None,
        n_test=len(prepared["y_test"]) if "y_test" in prepared else None,
        duration_seconds=run.duration_seconds,
        artifacts=pipeline.tracker.list_artifacts(run.run_id),
    )


def plan_pipeline(
    request: StandardPipelineRequest, frame: Any, *, validator: Any = None, settings: Any = None
) -> PipelinePlan:
    """Check ``request`` (its target set) against the data set ``frame`` and settle features, task,
    params, primary metric and model name; raises ``InvalidRequestError`` naming the field on any
    mistake. ``validator`` (a ``DataValidationPipeline``) checks that a named schema exists; ``settings``
    bound the target's classes."""
    from mcp_server.estimators import check_params, get_estimator_spec, infer_task
    from mcp_server.threads import threads_per_fit

    if request.target is None:
        raise InvalidRequestError("target is required: name the column to predict")
    if request.dataset is None:
        raise InvalidRequestError("dataset is required (or from_search, which brings the search's)")

    columns = [str(c) for c in frame.columns]
    _require_columns("target", [request.target], columns)
    _require_columns("drop", request.drop, columns)
    if not request.split.has_holdout:
        raise InvalidRequestError("split.test_size must be > 0 for a pipeline: its model is judged on the holdout")
    check_split(request.split, frame, target=request.target, n_folds=request.cv_folds)
    if request.features is not None:
        _require_columns("features", request.features, columns)
        features = list(dict.fromkeys(request.features))
        if request.split.column in features:
            raise InvalidRequestError(
                f"features must not include the split column {request.split.column!r}: it only decides the folds"
            )
    else:
        features = [c for c in columns if c not in (request.target, request.split.column) and c not in request.drop]
    features = [c for c in features if c not in request.drop]
    if request.target in features:
        raise InvalidRequestError(f"features must not include the target {request.target!r}")
    if not features:
        raise InvalidRequestError("no feature columns left after removing the target, the split column and drop")
    y = frame[request.target].dropna()
    if y.empty:
        raise InvalidRequestError(f"target {request.target!r} has no values")
    task = infer_task(y, task=request.task)
    check_target(frame[request.target], task=task, settings=settings)
    # A fit's threads: its job's share of the server's cores (the JobManager's rule); None: this process's.
    max_threads = (threads_per_fit(settings.cores, concurrent_jobs=settings.max_concurrent_jobs)
                   if settings is not None else None)
    if request.ensemble is not None:
        for member in request.ensemble:  # unknown or unsuitable estimators and params: raise now
            get_estimator_spec(member.estimator).estimator_class(task)
            check_params(member.estimator, task, member.params, max_threads=max_threads)
        params: dict[str, Any] = {}
    else:
        get_estimator_spec(request.estimator).estimator_class(task)  # unknown or unsuitable: raise
        params = check_params(request.estimator, task, request.params, max_threads=max_threads)
    n_classes = int(y.nunique()) if task == "classification" else 0
    if task == "classification":
        counts = y.value_counts()
        if n_classes < 2:
            raise InvalidRequestError(f"target {request.target!r} has a single class; classification needs at least 2")
        if counts.min() < 2:
            raise InvalidRequestError(
                f"target {request.target!r} class {counts.idxmin()!r} has {counts.min()} row; "
                "a stratified split needs at least 2 rows per class"
            )
    valid = metric_names(task)
    primary = request.primary_metric or default_primary_metric(task, n_classes)
    if primary not in valid:
        raise InvalidRequestError(f"primary_metric for {task} must be one of {', '.join(valid)}, got {primary!r}")
    model_name = check_model_name(request.model_name or _default_model_name(request.dataset, request.target))
    if request.schema_name is not None and validator is not None:
        validator.load_schema(request.schema_name)  # unknown schema: the caller's mistake, raise now
    return PipelinePlan(target=request.target, features=features, task=task, params=params, primary_metric=primary,
                        model_name=model_name, hyperparameters=(
                            {} if request.ensemble is not None else effective_hyperparameters(request.estimator, task, params)))


# Constructor arguments that change how a fit runs, not what it learns (the seed is its own param).
_NOT_HYPERPARAMETERS = ("n_jobs", "verbose", "random_state", "warm_start")


def effective_hyperparameters(estimator: str, task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The estimator's hyperparameters as the model gets them: ``params`` over the allow-list's
    defaults over scikit-learn's. Logged under their own names on every pipeline run, so a baseline
    and a tuned run show the same columns."""
    from mcp_server.estimators import get_estimator_spec

    spec = get_estimator_spec(estimator)
    defaults = spec.estimator_class(task)().get_params(deep=False)
    merged = {**defaults, **spec.default_params, **params}
    return {k: merged[k] for k in sorted(merged)
            if k in params or (k not in _NOT_HYPERPARAMETERS and _plain(merged[k]))}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _note(request: StandardPipelineRequest, plan: PipelinePlan) -> str:
    split = request.split
    how = f"split by {split.column}" if split.column else f"{split.kind} split"
    if request.ensemble is not None:
        tuned = ", weighted ensemble of " + ", ".join(f"{m.estimator} {m.weight:.2f}" for m in request.ensemble)
    else:
        tuned = f", hyperparameters {', '.join(f'{k}={v}' for k, v in plan.params.items())}" if plan.params else ", default hyperparameters"
    return (f"{request.estimator} {plan.task} of {request.target} on {request.dataset} ({len(plan.features)} features, "
            f"{how}, holdout {split.test_size:g}{tuned}); primary metric {plan.primary_metric}.")


def _require_columns(field: str, wanted: list[str], columns: list[str]) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        shown = ", ".join(columns[:50]) + (" …" if len(columns) > 50 else "")
        raise InvalidRequestError(f"{field} names unknown columns: {', '.join(map(repr, missing))}; valid columns: {shown}")


def _default_model_name(dataset: str, target: str) -> str:
    """``<dataset>-<target>`` with the whole data set name: a dot inside a name is part of it
    (``nba.games.stats``), only a file format's suffix (``games.csv``) is left out."""
    from mcp_server.datasets import FILE_FORMATS

    stem = dataset.removeprefix("sklearn:").rsplit("/", 1)[-1]
    suffix = stem[stem.rfind("."):].lower() if "." in stem else ""
    stem = stem[: -len(suffix)] if suffix in FILE_FORMATS else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}-{target}").strip("_.-")[:100] or "model"


def _config(request: StandardPipelineRequest, plan: PipelinePlan) -> dict[str, Any]:
    return {
        "dataset": request.dataset, "target": request.target, "features": plan.features,
        "drop": request.drop, "drop_duplicates": request.drop_duplicates, "estimator": request.estimator,
        "params": plan.hyperparameters or plan.params, "task": plan.task, "split": request.split.model_dump(), "cv_folds": request.cv_folds,
        "leak_check": request.leak_check, "seed": request.seed,
        "schema": request.schema_name, "model_name": plan.model_name,
        "primary_metric": plan.primary_metric, "promote": request.promote,
        **({"ensemble": json.dumps([m.model_dump(include={"estimator", "params", "weight"}) for m in request.ensemble],
                                   sort_keys=True)} if request.ensemble is not None else {}),
    }
