"""The contract every strategy keeps (parametrized over grid, random, bayesian), budgets through the
loop, and the Bayesian -> random fallback when scikit-optimize cannot be imported."""

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


def _drain(strategy, *, batch=1, limit=50, score=lambda p: 0.0):
    asked = []
    while len(asked) < limit:
        batch_params = strategy.ask(batch)
        if not batch_params:
            break
        for params in batch_params:
            strategy.tell(params, score(params))
        asked.extend(batch_params)
    return asked


def _space_for(name):
    return FINITE if name == "grid" else MIXED


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
    asked = _drain(_strategy(name, FINITE, n=30), batch=2, limit=30, score=lambda p: float(p["depth"]))
    keys = {tuple(sorted(p.items())) for p in asked}
    assert len(asked) == len(keys) == 6


@pytest.mark.parametrize("name", STRATEGIES)
def test_max_trials_budget(name):
    calls = []
    tuner = HyperparameterTuner(enable_mlflow=False)
    run = {"grid": tuner.grid_search, "random": tuner.random_search, "bayesian": tuner.bayesian_optimization}[name]
    kwargs = {"grid": {"max_trials": 4}, "random": {"n_iter": 4}, "bayesian": {"n_calls": 4}}[name]
    run(
        FINITE if name == "grid" else MIXED, train_fn=lambda p: calls.append(p) or p,
        eval_fn=lambda m: float(len(calls)), **kwargs,
    )
    summary = tuner.get_tuning_summary()
    assert len(calls) == summary["total_trials"] == 4
    assert summary["stopped_reason"] == StopReason.MAX_TRIALS.value


@pytest.mark.parametrize("n_jobs", [1, 2])  # 2: grid / random dispatch ahead; the deadline is checked in the worker
@pytest.mark.parametrize("name", STRATEGIES)
def test_timeout_budget_starts_no_trial_after_the_deadline(name, n_jobs):
    started = []

    def train_fn(params):
        started.append(time.monotonic())
        time.sleep(0.05)
        return params

    def search(max_trials, timeout):
        tuner._run(
            name, SearchSpace(_space_for(name) if name != "grid" else {"k": list(range(100))}),
            _callable_evaluator(train_fn), direction=_max(), scoring="score", cv="holdout", objective="t",
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
    assert summary["total_trials"] == len(started)  # every trial that started finished and was recorded
    assert all(t - begin < 0.2 + 0.01 for t in started)


def _callable_evaluator(train_fn):
    from mcp_server.hyperparameter_tuning._cv import CallableEvaluator

    return CallableEvaluator(train_fn, lambda m: 1.0)


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
