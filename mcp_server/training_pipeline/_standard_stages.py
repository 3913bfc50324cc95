"""The six stage functions of the standard pipeline, closed over one checked request and plan.

What each stage leaves in ``captured`` (read back by ``run_standard_pipeline``): ``validation``,
``split`` (the SplitRecord), ``warnings`` (ModelWarnings gathered on the way) and ``promotion``.
"""

from __future__ import annotations

import time
from functools import partial

from typing import TYPE_CHECKING, Any

from mcp_server import operator_metrics
from mcp_server.error_handling import ExecutionError
from mcp_server.evaluation import (
    apply_leak_check,
    attach_profile,
    cv_test_gap,
    entity_columns,
    entity_overlap,
    evaluation_tags,
    DUPLICATE_SHARE,
    TEST_DIGEST_TAG,
    ModelWarning,
    below_baseline_holdout,
    holdout_rows,
    holdout_warnings,
    is_bounded_score,
    leak_errors,
    near_perfect,
    record_evaluation,
    target_warnings,
)
from mcp_server.mlflow_integration import lower_is_better
from mcp_server.training_pipeline._evaluation import cross_validate_metric, holdout_figure, model_outputs
from mcp_server.training_pipeline._evidence import Evidence, paired_with_holder
from mcp_server.training_pipeline._importance import leaning_columns
from mcp_server.training_pipeline._noise import CHANCE, BaselineScore, baseline_outputs, bootstrap_stderr, paired_gain
from mcp_server.training_pipeline._registry import PRIMARY_METRIC_TAG, decide_promotion
from mcp_server.training_pipeline._types import PipelineStage

if TYPE_CHECKING:
    from mcp_server.training_pipeline._standard import PipelinePlan, StandardPipelineRequest

MAX_LISTED_ISSUES = 5


def fit_model(model: Any, X: Any, y: Any) -> Any:
    return model.fit(X, y)


def drop_duplicate_records(train: Any, test: Any) -> tuple[Any, Any, int]:
    """(train, test, rows dropped) without full-row duplicates of the original data: every column
    counts, so two games with the same coarse features are two rows. Within each side the first copy
    stays; a test row repeating a training record in full leaves the holdout (it would be scored on
    memory). Training rows never leave because of the holdout, so it cannot change what is learnt."""
    import pandas as pd

    kept_train = train[~train.duplicated(keep="first")]
    seen = set(pd.util.hash_pandas_object(kept_train, index=False))
    repeats = test.duplicated(keep="first") | pd.util.hash_pandas_object(test, index=False).isin(seen)
    kept_test = test[~repeats.to_numpy()]
    return kept_train, kept_test, len(train) + len(test) - len(kept_train) - len(kept_test)


def _stoppable(isolate: bool, should_stop: Any, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, in a worker process that cancel and timeouts kill when ``isolate`` (the server).

    Either way its fits (one at a time) get the job's whole share of native threads (rule 19)."""
    from mcp_server.threads import current_share, limit_threads

    if not isolate:
        with limit_threads(current_share()):
            return fn(*args)
    from mcp_server.hyperparameter_tuning import ExecutionInterrupted, run_stoppable
    from mcp_server.training_pipeline._stages import StageCancelled

    try:
        return run_stoppable(fn, *args, should_stop=should_stop, threads=current_share())
    except ExecutionInterrupted:
        raise StageCancelled() from None


def standard_stages(
    request: StandardPipelineRequest, plan: PipelinePlan, validator: Any, captured: dict[str, Any], *,
    near_perfect_score: float, source: Any, isolate: bool = False, settings: Any = None,
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
        if request.drop_duplicates:
            train, test, duplicates = drop_duplicate_records(train, test)
            share = duplicates / max(1, len(rows))
            if share > DUPLICATE_SHARE:
                warnings.append(ModelWarning(
                    code="duplicate_rows",
                    message=f"{duplicates} of the {len(rows)} labelled rows ({share:.0%}) repeat another row in every "
                            "column and were dropped before training and testing: check how the file was built; "
                            "drop_duplicates=false keeps them"))
        used = [*plan.features, target]
        tracker.log_dataset(train[used], name=request.dataset, source=source, context="training", targets=target,
                            run_id=run_id)
        tracker.log_dataset(test[used], name=f"{request.dataset} (holdout)", source=source, context="evaluation",
                            targets=target, run_id=run_id)
        captured["test_rows"] = test  # every column: the champion may use other features than this model
        warnings.extend(holdout_warnings(record, test[target], plan.task))
        warnings.extend(entity_overlap(data, record, entity_columns(data, exclude={target})))
        return {"X_train": train[plan.features], "X_test": test[plan.features],
                "y_train": train[target], "y_test": test[target],
                "split_train": train[spec.column] if spec.column else None,
                "rows_without_target": int(len(data) - len(rows)), "duplicates_dropped": int(duplicates)}

    def train(prepared_data, should_stop):
        from mcp_server.estimators import build_ensemble_model, build_model

        if request.ensemble is not None:  # one model: the members' pipelines, weighted
            model = build_ensemble_model([(m.estimator, m.params, m.weight) for m in request.ensemble], plan.task,
                                         X=prepared_data["X_train"], random_state=request.seed)
        else:
            model = build_model(request.estimator, plan.task, plan.params, X=prepared_data["X_train"],
                                random_state=request.seed)
        started = time.perf_counter()
        model = _stoppable(isolate, should_stop, fit_model, model, prepared_data["X_train"], prepared_data["y_train"])
        operator_metrics.fit_observed("ensemble" if request.ensemble is not None else request.estimator,
                                      time.perf_counter() - started)
        return attach_profile(model, prepared_data["X_train"])

    def evaluate(trained_model, prepared_data, tracker, run_id, should_stop):
        X_test, y_test = prepared_data["X_test"], prepared_data["y_test"]
        outputs = model_outputs(trained_model, X_test, y_test, plan.task)
        captured["outputs"] = outputs  # the deploy stage compares the champion on these very rows
        holdout_scores = outputs.metrics()
        metrics = dict(holdout_scores)
        plot = "confusion_matrix.png" if plan.task == "classification" else "residuals.png"
        tracker.log_figure(holdout_figure(outputs), plot, run_id=run_id)
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
        holdout = f"the holdout ({len(y_test)} rows)"
        bounded = [m for m in (metric, *metrics) if is_bounded_score(m) and not m.startswith("cv_")]
        for name in dict.fromkeys(bounded):  # one warning: the first bounded metric past the bar
            found = near_perfect(name, metrics[name], near_perfect_score, measured_on=holdout)
            if found:
                warnings.extend(w.model_copy(update={"columns": leaning_columns(trained_model, X_test, y_test)})
                                for w in found)
                break
        warnings.extend(cv_test_gap(metric, cv_mean, cv_std, metrics[metric],
                                               lower_is_better=lower_is_better(metric)))
        warnings.extend(target_warnings(prepared_data["y_train"], plan.task, metric))
        baseline = compare_with_baseline(outputs, prepared_data, metric)
        captured["baseline"] = baseline
        if not baseline.beaten:
            warnings.extend(below_baseline_holdout(
                metric, holdout_scores[metric], baseline.score, baseline.gain_low, baseline.gain_high,
                rows=baseline.rows, baseline_name=baseline.model, chance=baseline.chance))
        warnings.extend(holdout_reuse(tracker, run_id))
        record_evaluation(tracker, run_id, split=captured.get("split"), warnings=warnings)
        # Holdout scores as test_<metric>, beside cv_<metric>_mean / _std (docs/tracking.md); the
        # trivial model's as trivial_test_<metric> (sorted after the model's own in the UI), the noise of
        # the primary one as its stderr.
        stderr = bootstrap_stderr(outputs, metric, seed=request.seed)
        return {**{f"test_{k}": v for k, v in holdout_scores.items()},
                **({f"test_{metric}_stderr": stderr} if stderr is not None else {}),
                f"trivial_test_{metric}": baseline.score,
                **{k: v for k, v in metrics.items() if k.startswith("cv_")}}

    def compare_with_baseline(outputs, prepared_data, metric) -> BaselineScore:
        name, trivial = baseline_outputs(prepared_data["X_train"], prepared_data["y_train"],
                                         prepared_data["X_test"], prepared_data["y_test"], plan.task)
        higher = not lower_is_better(metric)
        gain = paired_gain(outputs, trivial, metric, higher_is_better=higher, seed=request.seed)
        score, chance = outputs.metric(metric), CHANCE.get(metric)
        above_chance = chance is None or score is None or score >= chance
        return BaselineScore(
            metric=metric, model=name, score=trivial.metric(metric), chance=chance, rows=len(outputs.y),
            gain=gain.gain if gain else None, gain_low=gain.low if gain else None,
            gain_high=gain.high if gain else None, beaten=bool(gain and gain.significant and above_chance))

    def holdout_reuse(tracker, run_id):
        """Count the runs of this model name judged on this very holdout (same test-row digest)."""
        split = captured.get("split")
        limit = getattr(settings, "holdout_reuse_limit", None)
        if split is None or not limit:
            return []
        # Runs before this one (its own digest tag is written after this check), in every experiment.
        found = tracker.search_runs(f"params.model_name = '{plan.model_name}' and "
                                    f"tags.`{TEST_DIGEST_TAG}` = '{split.test_digest}'", max_results=limit + 1)
        uses = len(found) + 1
        if uses <= limit:
            return []
        return [ModelWarning(
            code="holdout_reused",
            message=f"{uses} runs of {plan.model_name!r} were judged on this same holdout (limit {limit}): picking "
                    "among them on it fits its noise, so its score of the winner is optimistic; draw a fresh "
                    "holdout (another split.seed) to measure the chosen model")]

    def register(model_uri, evaluation, tracker, run_id):
        metric = f"test_{plan.primary_metric}"
        flags = ", ".join(dict.fromkeys(w.code for w in warnings)) or "none"
        split = captured.get("split")
        version = tracker.register_model(
            model_uri, plan.model_name, run_id=run_id,
            tags={PRIMARY_METRIC_TAG: plan.primary_metric, metric: evaluation[metric], "estimator": request.estimator,
                  "dataset": request.dataset, **evaluation_tags(split, warnings)},
            # The registry table cuts descriptions: a flag comes first, where it is seen.
            description=((f"FLAGGED ({flags}): " if warnings else "") + f"{metric} {evaluation[metric]:.4g}, "
                         f"{request.estimator}; holdout: {split.description if split else 'unknown'}; from run {run_id}."),
            model_description=(f"Predicts {target} ({plan.task}) from {request.dataset}. Each version is a "
                               f"pipeline run's model (its description says which and how it scored); the "
                               f"'champion' alias marks the best unflagged one on {plan.primary_metric}."),
        )
        return {"model_name": plan.model_name, "version": version}

    def deploy(registration, evaluation, tracker, run_id):
        metric = plan.primary_metric
        higher = not lower_is_better(metric)

        def paired(holder):  # the champion scored on this run's very holdout rows
            return paired_with_holder(tracker, plan.model_name, holder, captured["outputs"], captured["test_rows"],
                                      target, metric, higher_is_better=higher, seed=request.seed)

        decision = decide_promotion(
            tracker, plan.model_name, registration["version"], primary_metric=metric,
            new_metric=evaluation[f"test_{metric}"], promote=request.promote,
            flags=[w.code for w in warnings], evidence=Evidence.of_metrics(evaluation, metric), paired=paired,
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
