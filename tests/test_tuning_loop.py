"""The search loop: early stopping, pruning, failure policy, progress callback, cancellation and
parallel execution (identical results to sequential)."""

from __future__ import annotations

import threading
import time

import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mcp_server.error_handling import ExecutionError, InvalidRequestError
from mcp_server.hyperparameter_tuning import (
    BayesianStrategy,
    BestMarginPruner,
    HyperparameterTuner,
    MedianPruner,
    NoiseAwarePruner,
    SearchCancelled,
    SearchSpace,
    StopReason,
    TrialState,
)

X, Y = make_classification(n_samples=150, n_features=6, random_state=1)
SMALL_RF = RandomForestClassifier(n_estimators=5, random_state=0)


def _objective(scores):
    """Holdout objective returning scores[a] for params {"a": a}."""
    return (lambda p: p), (lambda m: scores[m["a"]])


@pytest.mark.parametrize(
    ("strategy", "space", "options"),
    [
        ("grid", {"a": list(range(10))}, {}),
        ("random", {"a": list(range(10))}, {"n_iter": 10, "random_state": 0}),
        ("bayesian", {"a": list(range(10))}, {"n_calls": 10, "random_state": 0}),
    ],
)
def test_early_stopping_after_patience_trials_without_improvement(strategy, space, options):
    tuner = HyperparameterTuner(enable_mlflow=False, enable_early_stopping=True, early_stopping_patience=3)
    run = {"grid": tuner.grid_search, "random": tuner.random_search, "bayesian": tuner.bayesian_optimization}[strategy]
    run(space, train_fn=lambda p: p, eval_fn=lambda m: 1.0, **options)  # constant: only the first trial improves
    summary = tuner.get_tuning_summary()
    assert summary["stopped_early"] is True and summary["stopped_reason"] == "early_stopping"
    assert summary["n_trials_run"] == 1 + 3


def test_min_delta_ignores_tiny_improvements():
    scores = [0.5, 0.501, 0.502, 0.503, 0.9, 0.95]
    tuner = HyperparameterTuner(enable_mlflow=False, enable_early_stopping=True, early_stopping_patience=3, min_delta=0.01)
    best = tuner.grid_search({"a": list(range(6))}, *_objective(scores))
    assert tuner.get_tuning_summary()["n_trials_run"] == 4
    assert best["params"] == {"a": 3}  # still the best seen, though it did not reset the patience


@pytest.mark.parametrize(
    "pruner", [MedianPruner(n_startup_trials=2), BestMarginPruner(margin=0.0), NoiseAwarePruner(n_startup_trials=2)]
)
def test_pruning_saves_fold_fits_and_records_pruned_trials(pruner):
    # Candidates worse on every fold than the earlier ones get pruned after their first fold.
    folds = {0: [0.9, 0.9, 0.9], 1: [0.8, 0.8, 0.8], 2: [0.7, 0.7, 0.7], 3: [0.95, 0.95, 0.95], 4: [0.6, 0.6, 0.6]}
    tuner = HyperparameterTuner(enable_mlflow=False, pruning=pruner)
    best = tuner.grid_search({"a": list(range(5))}, lambda params, X, y: params, _fold_id_eval(folds), cv_folds=3,
                             X=_fold_marked_X(), y=[0.0] * 30, task="regression", seed=0)
    result = tuner.last_result
    states = {t.params["a"]: t.state for t in result.trials}
    assert states[3] is TrialState.COMPLETE and best["params"] == {"a": 3}
    assert TrialState.PRUNED in states.values()
    assert result.summary.n_fold_fits_saved > 0
    assert result.summary.n_fold_fits + result.summary.n_fold_fits_saved == 5 * 3
    pruned = [t for t in result.trials if t.state is TrialState.PRUNED]
    assert all(len(t.fold_scores) < 3 and t.score is not None for t in pruned)
    assert result.best_trial.state is TrialState.COMPLETE


def _fold_marked_X():
    return [[float(i)] for i in range(30)]


def _fold_id_eval(folds):
    # The fold index is recovered from which rows are in the validation set (KFold, seed 0).
    from sklearn.model_selection import KFold

    fold_of = {}
    for k, (_, val) in enumerate(KFold(3, shuffle=True, random_state=0).split(_fold_marked_X())):
        fold_of[int(val[0])] = k

    def eval_fn(model, X_val, y_val):
        return folds[model["a"]][fold_of[int(X_val[0][0])]]

    return eval_fn


def test_failed_trials_are_recorded_never_best_and_the_search_goes_on():
    def train_fn(params):
        if params["a"] in (1, 3):
            raise RuntimeError(f"boom {params['a']}")
        return params

    tuner = HyperparameterTuner(enable_mlflow=False)
    best = tuner.grid_search({"a": [0, 1, 2, 3]}, train_fn, lambda m: float(m["a"]))
    result = tuner.last_result
    assert [t.state for t in result.trials] == [TrialState.COMPLETE, TrialState.FAILED, TrialState.COMPLETE, TrialState.FAILED]
    assert result.trials[1].error == "RuntimeError: boom 1" and result.trials[1].score is None
    assert best["params"] == {"a": 2} and result.summary.n_failed == 2


def test_on_trial_error_raise_reraises_after_recording():
    tuner = HyperparameterTuner(enable_mlflow=False, on_trial_error="raise")
    with pytest.raises(ZeroDivisionError):
        tuner.grid_search({"a": [1, 0, 2]}, lambda p: p, lambda m: 1 / m["a"])


def test_all_trials_failing_is_an_execution_error():
    with pytest.raises(ExecutionError, match="all 2 trials failed.*ValueError: bad"):
        HyperparameterTuner(enable_mlflow=False).grid_search({"a": [1, 2]}, lambda p: p, _raise(ValueError("bad")))


def test_non_finite_scores_fail_the_trial():
    tuner = HyperparameterTuner(enable_mlflow=False)
    best = tuner.grid_search({"a": [0, 1]}, lambda p: p, lambda m: float("nan") if m["a"] else 0.5)
    assert best["params"] == {"a": 0} and tuner.last_result.trials[1].state is TrialState.FAILED


def _raise(exc):
    def fn(*_):
        raise exc

    return fn


def test_bayesian_is_told_the_worst_seen_score_for_failures():
    strategy = BayesianStrategy(SearchSpace({"x": (0.0, 1.0)}), n_candidates=10, seed=0)
    first, second, third = strategy.ask(3)
    strategy.tell(first, 0.2)
    strategy.tell(second, 0.7)
    strategy.tell(third, None)
    # skopt minimizes: the failed point is told -0.2 (the worst score seen), not inf.
    assert strategy._optimizer.yi == [-0.2, -0.7, -0.2]


def test_on_trial_reports_progress_and_can_stop_the_search():
    messages = []

    def on_trial(trial, progress):
        messages.append(progress.message())
        return progress.n_trials_done < 3

    tuner = HyperparameterTuner(enable_mlflow=False)
    tuner.random_search({"a": list(range(10))}, n_iter=8, train_fn=lambda p: p, eval_fn=lambda m: m["a"] / 10,
                        random_state=0, on_trial=on_trial, scoring="roc_auc")
    assert len(messages) == 3 and messages[0].startswith("trial 1/8, best roc_auc ")
    assert tuner.get_tuning_summary()["stopped_reason"] == StopReason.CANCELLED.value



def test_progress_reads_an_error_scorer_as_the_error_under_its_logged_name():
    from mcp_server.hyperparameter_tuning._types import TuningProgress

    progress = TuningProgress(n_trials_done=3, max_trials=None, best_score=-1.7312, best_params={},
                              scoring="neg_root_mean_squared_error", elapsed_seconds=1.0)
    assert progress.message() == "trial 3, best rmse 1.731"  # what MLflow shows as best_cv_rmse

SEARCHES = {
    "grid": lambda tuner, **hooks: tuner.grid_search({"a": list(range(6))}, lambda p: p, lambda m: 0.1 * m["a"], **hooks),
    "halving": lambda tuner, **hooks: tuner.tune(
        estimator=SMALL_RF, X=X, y=Y, space={"max_depth": [2, 3, 4], "min_samples_leaf": [1, 5]},
        strategy="halving", scoring="roc_auc", cv_folds=3, seed=0, **hooks),
}


@pytest.mark.parametrize("search", sorted(SEARCHES))
@pytest.mark.parametrize("mechanism", ["event", "callable", "exception"])
def test_cooperative_cancellation_after_the_current_trial(search, mechanism):
    event = threading.Event()
    seen = []

    def on_trial(trial, progress):
        seen.append(trial.number)
        if trial.number == 1:
            if mechanism == "exception":
                raise SearchCancelled()
            event.set()

    should_stop = {"event": event, "callable": event.is_set, "exception": None}[mechanism]
    tuner = HyperparameterTuner(enable_mlflow=False)
    SEARCHES[search](tuner, on_trial=on_trial, should_stop=should_stop)
    assert seen == [0, 1]
    assert tuner.get_tuning_summary()["stopped_reason"] == "cancelled"


@pytest.mark.parametrize("backend", ["threading", "loky"])
@pytest.mark.parametrize(("strategy", "space"), [("grid", {"max_depth": [2, 3, 4], "min_samples_leaf": [1, 5]}),
                                                 ("random", {"max_depth": (2, 8), "min_samples_leaf": (1, 10)}),
                                                 ("halving", {"max_depth": (2, 8), "min_samples_leaf": (1, 10)})])
def test_parallel_results_equal_sequential(backend, strategy, space):
    def run(n_jobs):
        tuner = HyperparameterTuner(enable_mlflow=False, backend=backend)
        return tuner.tune(estimator=SMALL_RF, X=X, y=Y, space=space, strategy=strategy, scoring="roc_auc",
                          cv_folds=3, max_trials=6, seed=4, n_jobs=n_jobs)

    sequential, parallel = run(1), run(2)
    assert [(t.params, t.fold_scores) for t in parallel.trials] == [(t.params, t.fold_scores) for t in sequential.trials]
    assert parallel.best_params == sequential.best_params
    assert parallel.summary.backend == f"joblib-{backend}(n_jobs=2)"


def test_bayesian_asks_batches_of_n_jobs_points():
    tuner = HyperparameterTuner(enable_mlflow=False)
    result = tuner.tune(estimator=SMALL_RF, X=X, y=Y, space={"max_depth": (2, 8), "min_samples_leaf": (1, 10)},
                        strategy="bayesian", scoring="roc_auc", cv_folds=3, max_trials=6, seed=0, n_jobs=3)
    assert len(result.trials) == 6 and result.summary.backend.endswith("(n_jobs=3)")
    assert len({tuple(t.params.items()) for t in result.trials}) == 6


@pytest.mark.parametrize(
    ("path", "pruning", "expected"),
    [("estimator", None, "joblib-loky(n_jobs=2)"), ("estimator", "median", "joblib-threading(n_jobs=2)"),
     ("callables", None, "joblib-threading(n_jobs=2)")],
)
def test_auto_backend_uses_processes_only_for_sklearn_fold_fits(path, pruning, expected):
    tuner = HyperparameterTuner(enable_mlflow=False, n_jobs=2)
    if path == "estimator":
        result = tuner.tune(estimator=SMALL_RF, X=X, y=Y, space={"max_depth": [2, 3]}, strategy="grid",
                            scoring="roc_auc", cv_folds=3, seed=0, pruning=pruning)
    else:
        tuner.grid_search({"a": [1, 2]}, lambda p, X, y: p, lambda m, X, y: 0.5, cv_folds=3, X=X, y=Y)
        result = tuner.last_result
    assert result.summary.backend == expected


def test_unknown_backend_is_refused():
    with pytest.raises(InvalidRequestError, match="backend must be one of auto, threading, loky, process, got 'dask'"):
        HyperparameterTuner(enable_mlflow=False, backend="dask")


# --- rolling dispatch (grid / random, no pruning, n_jobs > 1) ---------------------------------------------------


@pytest.mark.parametrize("cv_folds", [None, 3])
def test_rolling_dispatch_keeps_workers_busy_while_a_slow_trial_runs(cv_folds):
    # Batch-by-batch dispatch would hold candidate 2 until the slow candidate 0 (batched with 1) ended.
    ended = {}
    lock = threading.Lock()

    def work(params):
        time.sleep(0.6 if params["a"] == 0 else 0.01)
        with lock:
            ended[params["a"]] = time.monotonic()
        return params

    train_fn = (lambda p: work(p)) if cv_folds is None else (lambda p, X, y: work(p))
    eval_fn = (lambda m: m["a"] / 10) if cv_folds is None else (lambda m, X, y: m["a"] / 10)
    data = {} if cv_folds is None else {"X": X[:30], "y": Y[:30]}
    tuner = HyperparameterTuner(enable_mlflow=False, n_jobs=2, backend="threading")
    best = tuner.grid_search({"a": list(range(6))}, train_fn, eval_fn, cv_folds=cv_folds, **data)
    assert all(ended[a] < ended[0] for a in range(1, 6)), ended
    assert [t.params["a"] for t in tuner.last_result.trials] == list(range(6))  # recorded in candidate order
    assert best["params"] == {"a": 5}


def _slow_first_eval(scores, fail_at=None):
    """Holdout eval_fn: earlier candidates take longer, so parallel results arrive out of order."""

    def eval_fn(model):
        a = model["a"]
        time.sleep(0.02 * (len(scores) - a))
        if a == fail_at:
            raise ValueError(f"bad candidate {a}")
        return scores[a]

    return eval_fn


_SCORES = [0.5, 0.6, 0.55, 0.58, 0.9, 0.7, 0.65, 0.95]


@pytest.mark.parametrize(
    ("options", "stop_at_trial", "expected_reason"),
    [
        ({"enable_early_stopping": True, "early_stopping_patience": 2}, None, "early_stopping"),
        ({}, 2, "cancelled"),  # on_trial returns False after trial 2
        ({"on_trial_error": "raise"}, None, "error"),  # candidate 3 raises
        ({}, None, "max_trials"),
        ({"should_stop_at": 1}, None, "cancelled"),  # a threading.Event set after trial 1
    ],
)
def test_rolling_dispatch_records_what_a_sequential_run_records(options, stop_at_trial, expected_reason):
    def run(n_jobs):
        options_ = dict(options)
        event = threading.Event()
        should_stop_at = options_.pop("should_stop_at", None)
        seen = []

        def on_trial(trial, progress):
            seen.append((trial.number, trial.params, trial.score, trial.state))
            if trial.number == should_stop_at:
                event.set()
            return trial.number != stop_at_trial

        tuner = HyperparameterTuner(enable_mlflow=False, n_jobs=n_jobs, backend="threading", **options_)
        fail_at = 3 if expected_reason == "error" else None
        max_trials = 5 if expected_reason == "max_trials" else None
        try:
            tuner.grid_search({"a": list(range(len(_SCORES)))}, lambda p: p, _slow_first_eval(_SCORES, fail_at),
                              on_trial=on_trial, should_stop=event, max_trials=max_trials)
        except ValueError as exc:
            return seen, f"raised {exc}"
        return seen, tuner.get_tuning_summary()["stopped_reason"]

    sequential, parallel = run(1), run(2)
    assert parallel == sequential
    assert sequential[1] == ("raised bad candidate 3" if expected_reason == "error" else expected_reason)


def test_median_pruning_compares_with_pruned_trials_too_so_it_cuts_about_half():
    # Candidates of i.i.d. quality with noisy folds. Compared only with completed trials (the
    # survivors of earlier cuts), the median bar crept up: 109 of 120 were cut at the first fold.
    # Compared with every earlier trial at the same fold, as Optuna does, about half are cut there
    # and about half of the rest at the second.
    import random

    rng = random.Random(0)
    folds = {}
    for a in range(120):
        base = rng.random()
        folds[a] = [base + rng.gauss(0, 0.3) for _ in range(3)]
    tuner = HyperparameterTuner(enable_mlflow=False, pruning=MedianPruner(n_startup_trials=5))
    tuner.grid_search({"a": list(range(120))}, lambda params, X, y: params, _fold_id_eval(folds), cv_folds=3,
                      X=_fold_marked_X(), y=[0.0] * 30, task="regression", seed=0)
    trials = tuner.last_result.trials
    pruned = [t for t in trials if t.state is TrialState.PRUNED]
    after_first_fold = [t for t in pruned if len(t.fold_scores) == 1]
    assert 0.4 <= len(after_first_fold) / len(trials) <= 0.6, len(after_first_fold)
    assert len(pruned) / len(trials) <= 0.8, len(pruned)


def _noisy_stream(n, quality, noise, seed=0):
    """Fold scores of n candidates: quality(a) on every fold plus independent fold noise."""
    import random

    rng = random.Random(seed)
    return {a: [quality(a) + rng.gauss(0, noise) for _ in range(3)] for a in range(n)}


def test_noise_aware_pruning_cuts_by_how_much_the_folds_can_still_move():
    # Complete trials of equal quality; after one fold a candidate trails the best final mean by
    # 0.03. With fold noise of sd 0.005 the remaining folds cannot make that up: it is cut. With
    # sd 0.05 they easily can: it runs on.
    import random

    for noise, expected in ((0.005, True), (0.05, False)):
        rng = random.Random(0)
        history = [[0.75 + rng.gauss(0, noise) for _ in range(3)] for _ in range(30)]
        best = max(sum(h) / 3 for h in history)
        assert NoiseAwarePruner().should_prune([best - 0.03], history) is expected, noise


def test_noise_aware_pruning_cuts_clearly_worse_candidates_and_rarely_a_would_be_best():
    # Every third candidate is 0.1 worse (5 fold-noise sds): nearly all of those are cut. A
    # pruned candidate whose full mean would have beaten the best at its time is a wrong cut;
    # those are rare.
    worse = {a for a in range(120) if a % 3 == 2}
    folds = _noisy_stream(120, lambda a: 0.65 if a in worse else 0.75, noise=0.02)
    tuner = HyperparameterTuner(enable_mlflow=False, pruning=NoiseAwarePruner())
    tuner.grid_search({"a": list(folds)}, lambda params, X, y: params, _fold_id_eval(folds), cv_folds=3,
                      X=_fold_marked_X(), y=[0.0] * 30, task="regression", seed=0)
    best, wrong, pruned = float("-inf"), 0, set()
    for t in tuner.last_result.trials:  # sequential, in grid order
        full = sum(folds[t.params["a"]]) / 3
        if t.state is TrialState.PRUNED:
            pruned.add(t.params["a"])
            wrong += full > best
        else:
            best = max(best, full)
    assert len(pruned & worse) >= len(worse) - 6, len(pruned & worse)
    assert wrong <= 0.05 * len(pruned), (wrong, len(pruned))


def test_noise_aware_pruning_waits_for_enough_complete_trials():
    history = [[0.9, 0.9, 0.9], [0.8, 0.8, 0.8]]
    assert not NoiseAwarePruner(n_startup_trials=3).should_prune([0.1], history)
    assert NoiseAwarePruner(n_startup_trials=2).should_prune([0.1], history)
    assert not NoiseAwarePruner(n_startup_trials=2).should_prune([0.1, 0.1, 0.1], history)  # all folds ran


def test_every_named_pruner_is_accepted_by_the_tool_request_and_built():
    from typing import get_args

    from mcp_server.hyperparameter_tuning import TuneRequest
    from mcp_server.hyperparameter_tuning._pruning import NAMED_PRUNERS, make_pruner

    assert set(get_args(TuneRequest.model_fields["pruning"].annotation)) == {"none", *NAMED_PRUNERS}
    assert all(isinstance(make_pruner(name), cls) for name, cls in NAMED_PRUNERS.items())
    with pytest.raises(InvalidRequestError, match="'median', 'best_margin', 'noise_aware'"):
        make_pruner("sometimes")
