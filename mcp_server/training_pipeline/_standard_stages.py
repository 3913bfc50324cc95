"""The six stage functions of the standard pipeline, closed over one checked request and plan.

What each stage leaves in ``captured`` (read back by ``run_standard_pipeline``): ``validation``,
``split`` (the SplitRecord), ``warnings`` (ModelWarnings gathered on the way) and ``promotion``.
"""

from __future__ import annotations

from functools import partial

from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import ExecutionError
from mcp_server.evaluation import (
    apply_leak_check,
    attach_profile,
    cv_test_gap,
    entity_columns,
    entity_overlap,
    evaluation_tags,
    holdout_rows,
    holdout_warnings,
    is_bounded_score,
    leak_errors,
    near_perfect,
    record_evaluation,
    target_warnings,
)
from mcp_server.mlflow_integration import lower_is_better
from mcp_server.training_pipeline._evaluation import cross_validate_metric, evaluate_model
from mcp_server.training_pipeline._registry import PRIMARY_METRIC_TAG, decide_promotion
from mcp_server.training_pipeline._types import PipelineStage

if TYPE_CHECKING:
    from mcp_server.training_pipeline._standard import PipelinePlan, StandardPipelineRequest

MAX_LISTED_ISSUES = 5


def fit_model(model: Any, X: Any, y: Any) -> Any:
    return model.fit(X, y)


def _stoppable(isolate: bool, should_stop: Any, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, in a worker process that cancel and timeouts kill when ``isolate`` (the server)."""
    if not isolate:
        return fn(*args)
    from mcp_server.hyperparameter_tuning import ExecutionInterrupted, run_stoppable
    from mcp_server.training_pipeline._stages import StageCancelled

    try:
        return run_stoppable(fn, *args, should_stop=should_stop)
    except ExecutionInterrupted:
        raise StageCancelled() from None


def standard_stages(
    request: StandardPipelineRequest, plan: PipelinePlan, validator: Any, captured: dict[str, Any], *,
    near_perfect_score: float, source: Any, isolate: bool = False,
) -> dict[PipelineStage, Any]:
    spec, target = request.split, request.target
    captured["warnings"] = warnings = []

    def validate(data, tracker, run_id):
        # The whole table against the schema; identifiers, dates and leaks among the features as errors.
        result = validator.validate(data, request.dataset, schema=request.schema_name, target=target,
                                    features=plan.features)
        captured["validation"] = result
        tracker.log_dict(result.model_dump(mode="json"), "validation.json", run_id=run_id)
        leaks = leak_errors(result)
        other = [i for i in (result.errors or result.warnings) if i not in leaks] if not result.passed else []
        if other:  # warnings fail only under fail_on_warnings
            shown = "; ".join(f"{i.rule}({i.column}): {i.message}" for i in other[:MAX_LISTED_ISSUES])
            raise ExecutionError(f"data validation failed with {len(other)} finding(s): {shown}")
        warnings.extend(apply_leak_check(leaks, request.leak_check))
        return result

    def prepare(data, tracker, run_id):
        import pandas as pd

        rows = data[data[target].notna()]
        classification = plan.task == "classification"
        record = holdout_rows(rows, rows[target], spec, classification=classification)
        captured["split"] = record
        train, test = rows.loc[record.train_rows], rows.loc[record.test_rows]
        duplicates = 0
        if request.drop_duplicates:  # a row repeated in train and test would be scored on memory
            keys = [*plan.features, target]
            deduped_test = test.drop_duplicates(subset=keys)
            seen = set(pd.util.hash_pandas_object(deduped_test[keys], index=False))
            deduped_train = train.drop_duplicates(subset=keys)
            deduped_train = deduped_train[~pd.util.hash_pandas_object(deduped_train[keys], index=False).isin(seen)]
            duplicates = len(train) + len(test) - len(deduped_train) - len(deduped_test)
            train, test = deduped_train, deduped_test
        used = [*plan.features, target]
        tracker.log_dataset(train[used], name=request.dataset, source=source, context="training", targets=target,
                            run_id=run_id)
        tracker.log_dataset(test[used], name=f"{request.dataset} (holdout)", source=source, context="evaluation",
                            targets=target, run_id=run_id)
        warnings.extend(holdout_warnings(record, test[target], plan.task))
        warnings.extend(entity_overlap(data, record, entity_columns(data, exclude={target})))
        return {"X_train": train[plan.features], "X_test": test[plan.features],
                "y_train": train[target], "y_test": test[target],
                "split_train": train[spec.column] if spec.column else None,
                "rows_without_target": int(len(data) - len(rows)), "duplicates_dropped": int(duplicates)}

    def train(prepared_data, should_stop):
        from mcp_server.estimators import build_model

        model = build_model(request.estimator, plan.task, plan.params, X=prepared_data["X_train"],
                            random_state=request.seed)
        model = _stoppable(isolate, should_stop, fit_model, model, prepared_data["X_train"], prepared_data["y_train"])
        return attach_profile(model, prepared_data["X_train"])

    def evaluate(trained_model, prepared_data, tracker, run_id, should_stop):
        holdout_scores, figure = evaluate_model(trained_model, prepared_data["X_test"], prepared_data["y_test"], plan.task)
        metrics = dict(holdout_scores)
        plot = "confusion_matrix.png" if plan.task == "classification" else "residuals.png"
        tracker.log_figure(figure, plot, run_id=run_id)
        metric = plan.primary_metric
        if metric not in metrics:
            raise ExecutionError(
                f"primary metric {metric!r} could not be computed for {request.estimator}; "
                f"computed: {', '.join(metrics)}"
            )
        cv_mean = cv_std = None
        if request.cv_folds:
            cv_mean, cv_std = _stoppable(isolate, should_stop, partial(
                cross_validate_metric, spec=spec, n_folds=request.cv_folds, seed=request.seed, task=plan.task,
                metric=metric), trained_model, prepared_data["X_train"], prepared_data["y_train"],
                prepared_data["split_train"])
            metrics |= {f"cv_{metric}_mean": cv_mean, f"cv_{metric}_std": cv_std}
        holdout = f"the holdout ({len(prepared_data['y_test'])} rows)"
        bounded = [m for m in (metric, *metrics) if is_bounded_score(m) and not m.startswith("cv_")]
        for name in dict.fromkeys(bounded):  # one warning: the first bounded metric past the bar
            found = near_perfect(name, metrics[name], near_perfect_score, measured_on=holdout)
            if found:
                warnings.extend(found)
                break
        warnings.extend(cv_test_gap(metric, cv_mean, cv_std, metrics[metric],
                                               lower_is_better=lower_is_better(metric)))
        warnings.extend(target_warnings(prepared_data["y_train"], plan.task, metric))
        record_evaluation(tracker, run_id, split=captured.get("split"), warnings=warnings)
        # Holdout scores as test_<metric>, beside cv_<metric>_mean / _std (docs/tracking.md).
        return {**{f"test_{k}": v for k, v in holdout_scores.items()},
                **{k: v for k, v in metrics.items() if k.startswith("cv_")}}

    def register(model_uri, evaluation, tracker, run_id):
        metric = f"test_{plan.primary_metric}"
        flags = ", ".join(dict.fromkeys(w.code for w in warnings)) or "none"
        split = captured.get("split")
        version = tracker.register_model(
            model_uri, plan.model_name, run_id=run_id,
            tags={PRIMARY_METRIC_TAG: plan.primary_metric, metric: evaluation[metric], "estimator": request.estimator,
                  "dataset": request.dataset, **evaluation_tags(split, warnings)},
            description=(f"{metric} {evaluation[metric]:.4g}, {request.estimator}, warnings: {flags}; holdout: "
                         f"{split.description if split else 'unknown'}; from run {run_id}."),
            model_description=(f"Predicts {target} ({plan.task}) from {request.dataset}. Each version is a "
                               f"pipeline run's model (its description says which and how it scored); the "
                               f"'champion' alias marks the best unflagged one on {plan.primary_metric}."),
        )
        return {"model_name": plan.model_name, "version": version}

    def deploy(registration, evaluation, tracker, run_id):
        decision = decide_promotion(
            tracker, plan.model_name, registration["version"], primary_metric=plan.primary_metric,
            new_metric=evaluation[f"test_{plan.primary_metric}"], promote=request.promote,
            flags=[w.code for w in warnings],
        )
        captured["promotion"] = decision
        tracker.set_tags(decision.as_tags(), run_id=run_id)
        return {"promoted": decision.promoted, "reason": decision.reason}

    return {
        PipelineStage.DATA_VALIDATION: validate,
        PipelineStage.DATA_PREPARATION: prepare,
        PipelineStage.MODEL_TRAINING: train,
        PipelineStage.MODEL_EVALUATION: evaluate,
        PipelineStage.MODEL_REGISTRATION: register,
        PipelineStage.MODEL_DEPLOYMENT: deploy,
    }
