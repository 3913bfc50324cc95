"""MLflow layout of a search (real sqlite store and mock mode), KILLED on cancel, and resume."""

from __future__ import annotations

import json

import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.hyperparameter_tuning import HyperparameterTuner, TrialState
from mcp_server.mlflow_integration import MLflowExperimentTracker, RunStatus, get_mlflow_tracker

X, Y = make_classification(n_samples=120, n_features=5, random_state=3)
SPACE = {"max_depth": [2, 4], "min_samples_leaf": [1, 3]}


@pytest.fixture(scope="module")
def sqlite_tracker(tmp_path_factory):
    path = tmp_path_factory.mktemp("tuning-mlflow") / "m.db"
    tracker = MLflowExperimentTracker("tuning", tracking_uri=f"sqlite:///{path}")
    yield tracker
    tracker.close()


@pytest.fixture(params=["sqlite", "mock"])
def tracker(request, sqlite_tracker):
    if request.param == "sqlite":
        return sqlite_tracker
    return get_mlflow_tracker(experiment_name="tuning-mock", mock_mode=True)


def _children(tracker, parent_run_id):
    return tracker.search_runs(f"tags.mlflow.parentRunId = '{parent_run_id}'", 100)


def test_parent_and_child_run_layout(tracker):
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    result = tuner.tune(estimator=RandomForestClassifier(n_estimators=4, random_state=0), X=X, y=Y, space=SPACE,
                        strategy="grid", scoring="roc_auc", cv_folds=3, seed=7)
    parent = tracker.get_run(result.parent_run_id)
    assert parent.status is RunStatus.FINISHED
    assert parent.params["strategy"] == "grid" and parent.params["scoring"] == "roc_auc" and parent.params["seed"] == "7"
    assert json.loads(parent.params["space"]) == {
        "max_depth": {"type": "categorical", "choices": [2, 4]},
        "min_samples_leaf": {"type": "categorical", "choices": [1, 3]},
    }
    # The folds as spec fields, the pruner as its name: no object repr among the params.
    assert parent.params["cv_folds"] == "3" and parent.params["pruning"] == "none" and "cv" not in parent.params
    assert parent.params["estimator"] == "RandomForestClassifier" and "objective" not in parent.params
    assert parent.metrics["best_cv_roc_auc"] == pytest.approx(result.best_score)
    # The optimization curve: best-so-far at every trial (step = trial number), never worse later.
    curve = sorted(tracker.get_metric_history(result.parent_run_id, "best_cv_roc_auc"), key=lambda p: p.step)
    assert [p.step for p in curve] == [t.number for t in sorted(result.trials, key=lambda t: t.number)]
    assert [p.value for p in curve] == sorted(p.value for p in curve) and curve[-1].value == pytest.approx(result.best_score)
    # The parent's mean is over trials: it never shares a name with a trial's mean over folds.
    assert "cv_roc_auc_mean" not in parent.metrics and "trials_cv_roc_auc_mean" in parent.metrics
    assert {k: parent.tags[f"best_{k}"] for k in result.best_params} == {k: str(v) for k, v in result.best_params.items()}
    # Counters and timings are bookkeeping: one JSON tag, not metrics (charts).
    counters = json.loads(parent.tags["nba_mcp.search"])
    assert counters["n_trials"] == 4 and counters["stopped_reason"] == "exhausted" and counters["elapsed_seconds"] > 0
    assert not {"n_trials", "n_complete", "n_failed", "n_pruned", "elapsed_seconds"} & set(parent.metrics)
    assert {"optimization_history.png", "summary.json"} <= set(tracker.list_artifacts(result.parent_run_id))

    children = {run.run_id: run for run in _children(tracker, result.parent_run_id)}
    assert set(children) == {t.run_id for t in result.trials}
    for trial in result.trials:
        child = children[trial.run_id]
        assert child.parent_run_id == result.parent_run_id and child.status is RunStatus.FINISHED
        context = {k: parent.params[k] for k in ("estimator", "dataset", "target") if k in parent.params}
        assert child.params == {**context, **{k: str(v) for k, v in trial.params.items()}}
        assert child.params["estimator"] == "RandomForestClassifier"
        assert child.metrics["cv_roc_auc_mean"] == pytest.approx(trial.score)
        assert child.metrics["cv_roc_auc_std"] == pytest.approx(trial.std)
        assert "roc_auc" not in child.metrics  # a CV mean is never logged under a holdout's name
        assert child.metrics["folds_done"] == 3 and "duration_seconds" not in child.metrics  # the run's own
        assert child.run_name == f"trial-{trial.number:03d} RandomForestClassifier"
        assert child.tags["nba_mcp.trial_state"] == "COMPLETE" and child.tags["nba_mcp.trial_number"] == str(trial.number)
        assert child.tags["mlflow.note.content"].startswith(f"Trial {trial.number} of ")
        history = tracker.get_metric_history(trial.run_id, "cv_roc_auc_fold")
        assert [p.step for p in history] == [0, 1, 2]
        assert [p.value for p in history] == pytest.approx(trial.fold_scores)


def test_failed_trial_child_is_failed_with_its_error(tracker):
    def train_fn(params):
        if params["a"] == 1:
            raise ValueError("cannot train a=1")
        return params

    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    tuner.grid_search({"a": [0, 1]}, train_fn, lambda m: 0.5)
    failed = next(t for t in tuner.last_result.trials if t.state is TrialState.FAILED)
    child = tracker.get_run(failed.run_id)
    assert child.status is RunStatus.FAILED and child.tags["error"] == "ValueError: cannot train a=1"


def test_cancelled_search_ends_its_parent_killed(tracker):
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    tuner.grid_search({"a": [0, 1, 2, 3]}, lambda p: p, lambda m: 0.1, on_trial=lambda trial, progress: trial.number < 1)
    result = tuner.last_result
    assert len(result.trials) == 2
    assert tracker.get_run(result.parent_run_id).status is RunStatus.KILLED


def test_enable_mlflow_false_logs_nothing(tracker):
    before = len(tracker.search_runs("", 1000))
    tuner = HyperparameterTuner(mlflow_tracker=tracker, enable_mlflow=False)
    tuner.grid_search({"a": [0, 1]}, lambda p: p, lambda m: 0.1)
    assert tuner.last_result.parent_run_id is None and all(t.run_id is None for t in tuner.last_result.trials)
    assert len(tracker.search_runs("", 1000)) == before


@pytest.mark.parametrize(
    ("strategy", "space", "budget"),
    [
        ("grid", {"a": list(range(6))}, {}),
        ("random", {"a": (0.0, 1.0), "b": [1, 2, 3]}, {"n_iter": 6, "random_state": 5}),
        ("bayesian", {"a": (0.0, 1.0), "b": [1, 2, 3]}, {"n_calls": 6, "random_state": 5}),
    ],
)
def test_resume_continues_without_rerunning_completed_trials(tracker, strategy, space, budget):
    def run(tuner, calls, **kwargs):
        method = {"grid": tuner.grid_search, "random": tuner.random_search, "bayesian": tuner.bayesian_optimization}[strategy]
        return method(space, train_fn=lambda p: calls.append(p) or p, eval_fn=_score, **budget, **kwargs)

    first_calls, resumed_calls, full_calls = [], [], []
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    run(tuner, first_calls, on_trial=lambda trial, progress: progress.n_trials_done < 3)  # cancelled after 3
    parent = tuner.last_result.parent_run_id
    assert tracker.get_run(parent).status is RunStatus.KILLED

    best = run(tuner, resumed_calls, resume_from=parent)
    result = tuner.last_result
    assert result.parent_run_id == parent and result.summary.n_resumed_trials == 3
    assert len(resumed_calls) == 3 and not any(p in first_calls for p in resumed_calls)
    assert sorted(t.number for t in result.trials) == list(range(6))
    assert tracker.get_run(parent).status is RunStatus.FINISHED
    assert len(_children(tracker, parent)) == 6

    if strategy != "bayesian":  # grid / random: the same trials as one uninterrupted search
        run(HyperparameterTuner(enable_mlflow=False), full_calls)
        assert first_calls + resumed_calls == full_calls
        assert best["params"] == max(full_calls, key=lambda p: _score(p))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_halving_resume_after_cancel_runs_the_same_trials_as_one_search(tracker, n_jobs):
    space = {"max_depth": [1, 2, 3, 4, 6, 8], "min_samples_leaf": [1, 4, 8]}

    def run(tuner, **kwargs):
        return tuner.tune(estimator=RandomForestClassifier(n_estimators=9, random_state=0), X=X, y=Y, space=space,
                          strategy="halving", scoring="roc_auc", cv_folds=3, seed=2, n_jobs=n_jobs,
                          halving={"min_resource": 3}, **kwargs)

    full = run(HyperparameterTuner(enable_mlflow=False))
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    first = run(tuner, on_trial=lambda trial, progress: progress.n_trials_done < 19)  # inside the second rung
    parent = first.parent_run_id
    assert tracker.get_run(parent).status is RunStatus.KILLED and first.summary.stopped_reason.value == "cancelled"
    resumed = run(tuner, resume_from=parent)
    assert resumed.summary.n_resumed_trials == len(first.trials)
    key = [(t.rung, t.resource, t.params, t.fold_scores) for t in full.trials]
    assert [(t.rung, t.resource, t.params, t.fold_scores) for t in resumed.trials] == key
    assert resumed.best_params == full.best_params and resumed.best_trial.rung == full.best_trial.rung
    children = _children(tracker, parent)
    assert len(children) == len(full.trials)
    assert {(c.tags["nba_mcp.rung"], c.metrics["resource"]) for c in children} == {(str(t.rung), t.resource) for t in full.trials}


def _score(params):
    return float(params["a"]) + 0.01 * params.get("b", 0)


def test_resume_refuses_a_different_search(tracker):
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    tuner.grid_search({"a": [0, 1]}, lambda p: p, lambda m: 0.1)
    parent = tuner.last_result.parent_run_id
    with pytest.raises(InvalidRequestError, match="ran with space="):
        tuner.grid_search({"a": [0, 1, 2]}, lambda p: p, lambda m: 0.1, resume_from=parent)
    with pytest.raises(InvalidRequestError, match="is not the parent run of a tuning search"):
        tuner.grid_search({"a": [0, 1]}, lambda p: p, lambda m: 0.1,
                          resume_from=tuner.last_result.trials[0].run_id)


def test_resume_from_unknown_run_is_not_found(sqlite_tracker):
    with pytest.raises(NotFoundError):
        HyperparameterTuner(mlflow_tracker=sqlite_tracker).grid_search(
            {"a": [0]}, lambda p: p, lambda m: 0.1, resume_from="0" * 32
        )


def test_resume_needs_mlflow():
    with pytest.raises(InvalidRequestError, match="resume_from needs MLflow logging"):
        HyperparameterTuner(enable_mlflow=False).grid_search({"a": [0]}, lambda p: p, lambda m: 0.1, resume_from="abc")


def test_pruned_trial_is_visibly_pruned_and_resumes_as_pruned(tracker):
    from mcp_server.hyperparameter_tuning import MedianPruner
    from tests.test_tuning_loop import _fold_id_eval, _fold_marked_X

    folds = {0: [0.9, 0.9, 0.9], 1: [0.8, 0.8, 0.8], 2: [0.7, 0.7, 0.7], 3: [0.95, 0.95, 0.95], 4: [0.6, 0.6, 0.6]}

    def search(tuner, **kwargs):
        tuner.grid_search({"a": list(range(5))}, lambda params, X, y: params, _fold_id_eval(folds), cv_folds=3,
                          X=_fold_marked_X(), y=[0.0] * 30, task="regression", seed=0, **kwargs)
        return tuner.last_result

    result = search(HyperparameterTuner(mlflow_tracker=tracker, pruning=MedianPruner(n_startup_trials=2)))
    scoring = tracker.get_run(result.parent_run_id).params["scoring"]
    pruned = [t for t in result.trials if t.state is TrialState.PRUNED]
    assert pruned
    for trial in pruned:
        child = tracker.get_run(trial.run_id)
        assert child.run_name.startswith(f"trial-{trial.number:03d} ") and child.run_name.endswith(" pruned") and child.tags["nba_mcp.trial_state"] == "PRUNED"
        # Its partial score has its own name: it never sorts among full cross-validated means.
        assert f"cv_{scoring}_mean" not in child.metrics and f"cv_{scoring}_std" not in child.metrics
        assert child.metrics[f"partial_cv_{scoring}_mean"] == pytest.approx(trial.score)
        assert child.metrics["folds_done"] == len(trial.fold_scores) < 3
        assert "pruned after" in child.tags["mlflow.note.content"]
    complete = next(t for t in result.trials if t.state is TrialState.COMPLETE)
    assert tracker.get_run(complete.run_id).metrics["folds_done"] == 3

    resumed = search(HyperparameterTuner(mlflow_tracker=tracker, pruning=MedianPruner(n_startup_trials=2)),
                     resume_from=result.parent_run_id)
    assert resumed.summary.n_resumed_trials == len(result.trials)
    assert [(t.state, t.score, t.fold_scores) for t in resumed.trials] == [
        (t.state, pytest.approx(t.score), pytest.approx(t.fold_scores)) for t in result.trials]


def test_error_scores_are_logged_positive_under_the_pipelines_name_and_resume_with_their_sign(tracker):
    """scikit-learn's neg_root_mean_squared_error is logged as cv_rmse_* (the error itself, as pipeline
    runs log it), and a resumed search reads it back as the scorer's own (negative) value."""
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    Xr, yr = make_regression(n_samples=90, n_features=4, noise=5.0, random_state=0)
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    kwargs = dict(estimator=Ridge(), X=Xr, y=yr, space={"alpha": [0.1, 10.0, 1000.0]}, strategy="grid",
                  scoring="neg_root_mean_squared_error", cv_folds=3, seed=0)
    result = tuner.tune(**kwargs, max_trials=2)
    parent = tracker.get_run(result.parent_run_id)
    assert parent.metrics["best_cv_rmse"] > 0 and parent.metrics["best_cv_rmse"] == pytest.approx(-result.best_score)
    for trial in result.trials:
        child = tracker.get_run(trial.run_id)
        assert child.metrics["cv_rmse_mean"] > 0 and child.metrics["cv_rmse_mean"] == pytest.approx(-trial.score)
        assert not [k for k in child.metrics if "neg_" in k]
        folds = tracker.get_metric_history(trial.run_id, "cv_rmse_fold")
        assert [p.value for p in sorted(folds, key=lambda p: p.step)] == pytest.approx([-s for s in trial.fold_scores])
    assert not [k for k in parent.metrics if "neg_" in k]
    resumed = HyperparameterTuner(mlflow_tracker=tracker).tune(**kwargs, resume_from=result.parent_run_id)
    by_number = {t.number: t for t in resumed.trials}
    for trial in result.trials:  # the earlier trials, read back from the store with the scorer's sign
        assert trial.score < 0 and by_number[trial.number].score == pytest.approx(trial.score)
    assert resumed.best_score == pytest.approx(max(t.score for t in resumed.trials if t.score is not None))
