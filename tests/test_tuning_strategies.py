"""The contract every strategy keeps (parametrized over grid, random, bayesian, halving), budgets
through the loop, and the Bayesian -> random fallback when scikit-optimize cannot be imported."""

from __future__ import annotations

import sys
import time

import pytest

from mcp_server.hyperparameter_tuning import STRATEGIES, HyperparameterTuner, SearchSpace, StopReason, make_strategy

FINITE = {"depth": [2, 4, 8], "criterion": ["gini", "entropy"]}  # 6 points
MIXED = {"n": {"type": "int", "low": 1, "high": 50, "log": True}, "lr": (0.001, 0.1, "log-uniform"), "kind": ["a", "b"]}


def _strategy(name, spec, *, seed=0, n=10):
    strategy, fell_back = make_strategy(name, SearchSpace(spec), n_candidates=n, seed=seed, max_grid_size=100)
    assert not fell_back
    return strategy


def _drain(strategy, *, batch=1, limit=50, score=lambda p: 0.0, rungs=None):
    asked = []
    fidelity = getattr(strategy, "fidelity", None)
    while len(asked) < limit:
        batch_params = strategy.ask(batch)
        if not batch_params:
            break
        for params in batch_params:
            if rungs is not None:
                rungs.append(fidelity(params).rung)
            strategy.tell(params, score(params))
        asked.extend(batch_params)
    return asked


def _space_for(name):
    return FINITE if name == "grid" else MIXED


def _run_search(tuner, name, space, train_fn, *, n, **options):
    """A search of n trials through the seed methods (halving, which has none, through cross-validation)."""
    if name == "halving":
        return _run(tuner, name, SearchSpace(space), _callable_evaluator(train_fn, name), direction=_max(),
                          scoring="score", cv="3-fold", objective="t", seed=0, max_trials=n, **options)
    run = {"grid": tuner.grid_search, "random": tuner.random_search, "bayesian": tuner.bayesian_optimization}[name]
    budget = {"grid": {"max_trials": n}, "random": {"n_iter": n}, "bayesian": {"n_calls": n}}[name]
    return run(space, train_fn=train_fn, eval_fn=lambda m: 0.5, **budget, **options)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("batch", [1, 3])
def test_candidates_lie_inside_the_space(name, batch):
    spec = _space_for(name)
    space = SearchSpace(spec)
    n = 5 if name == "bayesian" else 8  # bayesian: 2 random starts, then GP proposals
    asked = _drain(_strategy(name, spec, n=n), batch=batch, limit=n, score=lambda p: float(len(str(p))))
    assert asked
    assert all(space.contains(p) for p in asked), asked


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_sequence_other_seed_other_sequence(name):
    spec = _space_for(name)

    def run(seed):
        return _drain(_strategy(name, spec, seed=seed, n=4), limit=4, score=lambda p: float(len(repr(p)) % 7))

    assert run(1) == run(1)
    if name != "grid":
        assert run(1) != run(2)


@pytest.mark.parametrize("name", STRATEGIES)
def test_finite_space_is_exhausted_without_repeats(name):
    rungs = [] if name == "halving" else None
    asked = _drain(_strategy(name, FINITE, n=30), batch=2, limit=30, score=lambda p: float(p["depth"]), rungs=rungs)
    keys = {tuple(sorted(p.items())) for p in asked}
    if name == "halving":  # every point once per rung it reaches: 6, then the best 2, then the best 1
        assert len(keys) == 6 and rungs == [0] * 6 + [1] * 2 + [2]
        assert [p["depth"] for p in asked[6:]] == [8, 8, 8]
        return
    assert len(asked) == len(keys) == 6


@pytest.mark.parametrize("name", STRATEGIES)
def test_max_trials_budget(name):
    calls = []
    tuner = HyperparameterTuner(enable_mlflow=False)
    _run_search(tuner, name, FINITE if name == "grid" else MIXED, lambda p, *data: calls.append(p) or p, n=4)
    summary = tuner.get_tuning_summary()
    n_folds = 3 if name == "halving" else 1
    assert len(calls) == summary["total_trials"] * n_folds == 4 * n_folds
    assert summary["stopped_reason"] == StopReason.MAX_TRIALS.value


@pytest.mark.parametrize("n_jobs", [1, 2])  # 2: grid / random dispatch ahead; the deadline is checked in the worker
@pytest.mark.parametrize("name", STRATEGIES)
def test_timeout_budget_starts_no_trial_after_the_deadline(name, n_jobs):
    started = []

    def train_fn(params, *data):
        if not data:  # holdout: one call per trial (halving's evaluator notes each trial's first fold)
            started.append(time.monotonic())
        time.sleep(0.05 if not data else 0.02)
        return params

    def search(max_trials, timeout):
        _run(
            tuner, name, SearchSpace(_space_for(name) if name != "grid" else {"k": list(range(100))}),
            _callable_evaluator(train_fn, name, on_first_fold=lambda: started.append(time.monotonic())),
            direction=_max(), scoring="score", cv="holdout", objective="t",
            seed=0, max_trials=max_trials, timeout=timeout, n_jobs=n_jobs,
        )

    tuner = HyperparameterTuner(enable_mlflow=False)
    search(1, None)  # pays the one-off imports (skopt ~2 s) before the clock starts
    started.clear()
    begin = time.monotonic()
    search(None if name == "grid" else 100, 0.2)
    summary = tuner.get_tuning_summary()
    assert summary["stopped_reason"] == StopReason.TIMEOUT.value
    assert 1 <= len(started) < 100
    # No fold starts past the deadline: a trial cut short there (at most one per worker) is dropped,
    # every other trial that started finished and was recorded.
    assert len(started) - n_jobs <= summary["total_trials"] <= len(started)
    # The deadline counts from the search's start (run_search), before the strategy is built.
    loop_start = max(begin, min(started) - 0.01)
    # A trial starts in the loop's thread right after the deadline check (n_jobs=1), or when a worker
    # picks it up (n_jobs=2): on a loaded 2-core machine that pick-up alone has taken over 10 ms.
    slack = 0.01 if n_jobs == 1 else 0.05
    assert all(t - loop_start < 0.2 + slack for t in started)


def _run(tuner, *args, **kwargs):
    """A search of a custom evaluator through the tuner's own request and the one loop."""
    from mcp_server.hyperparameter_tuning._search import run_search

    return tuner._record(run_search(tuner._search_request(*args, **kwargs)))


def _callable_evaluator(train_fn, name="grid", on_first_fold=None):
    """Holdout for the seed strategies; 3-fold cross-validation for halving, which needs folds."""
    from mcp_server.hyperparameter_tuning._cv import CallableEvaluator

    if name != "halving":
        return CallableEvaluator(train_fn, lambda m: 1.0)
    import numpy as np

    class FirstFoldNoted(CallableEvaluator):
        def evaluate_fold(self, params, fold):
            if fold == 0 and on_first_fold is not None:
                on_first_fold()
            return super().evaluate_fold(params, fold)

    X = np.arange(600, dtype=float).reshape(300, 2)
    y = np.arange(300) % 2
    splits = [(np.setdiff1d(np.arange(300), np.arange(k, 300, 3)), np.arange(k, 300, 3)) for k in range(3)]
    return FirstFoldNoted(train_fn, lambda m, X_val, y_val: float(len(str(m))), X=X, y=y, splits=splits)


def _max():
    from mcp_server.hyperparameter_tuning import Direction

    return Direction.MAXIMIZE


def test_bayesian_falls_back_to_random_when_skopt_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "skopt", None)  # makes `import skopt` raise ImportError
    tuner = HyperparameterTuner(enable_mlflow=False)
    with pytest.warns(RuntimeWarning, match="falls back to random search"):
        best = tuner.bayesian_optimization(MIXED, lambda p: p, lambda m: m["lr"], n_calls=5, random_state=3)
    summary = tuner.get_tuning_summary()
    assert summary["fell_back_to_random"] is True
    assert summary["strategy"] == "bayesian" and summary["total_trials"] == 5
    # The fallback is the seeded random strategy over the same space.
    expected = _drain(_strategy("random", MIXED, seed=3, n=5), limit=5)
    assert best["params"] == max(expected, key=lambda p: p["lr"])


def test_bayesian_beats_its_own_initial_random_points_on_a_smooth_objective():
    tuner = HyperparameterTuner(enable_mlflow=False)
    best = tuner.bayesian_optimization(
        {"x": (-5.0, 5.0)}, lambda p: p, lambda m: -(m["x"] - 1.3) ** 2, n_calls=10, random_state=0
    )
    assert abs(best["params"]["x"] - 1.3) < 0.3


def test_bayesian_warps_log_dimensions_and_keeps_its_initial_design_when_only_time_bounds_it():
    from mcp_server.hyperparameter_tuning._strategies import MAX_INITIAL_POINTS, BayesianStrategy

    space = SearchSpace({
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "leaves": {"type": "int", "low": 4, "high": 128, "log": True},
        "frac": {"type": "float", "low": 0.1, "high": 1.0},
    })
    priors = {d.name: d.prior for d in space.to_skopt_dimensions()}
    assert priors == {"frac": "uniform", "leaves": "log-uniform", "lr": "log-uniform"}
    # A search bounded by a timeout alone (no trial budget) still starts from a full initial design.
    unbounded = BayesianStrategy(space, n_candidates=0, seed=0)
    assert unbounded._optimizer._n_initial_points == MAX_INITIAL_POINTS
    assert BayesianStrategy(space, n_candidates=6, seed=0)._optimizer._n_initial_points == 3
