"""Successive halving: the rung schedule, promotion, the resource per estimator, row subsampling
inside each fold's training part (stratified, nested), data sets too small for it, MLflow rungs,
progress per rung, and resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.hyperparameter_tuning import HalvingOptions, HyperparameterTuner, SearchSpace, make_strategy
from mcp_server.hyperparameter_tuning._cv import EstimatorEvaluator, compute_splits, make_splitter, resolve_scorer
from mcp_server.hyperparameter_tuning._halving import (
    ROWS,
    HalvingSchedule,
    choose_resource,
    plan_halving,
    rung_resources,
    rung_sizes,
)
from mcp_server.mlflow_integration import RunStatus, get_mlflow_tracker

X, Y = make_classification(n_samples=300, n_features=6, weights=[0.7], random_state=0)
GRID = {"max_depth": [1, 2, 3, 4, 6, 8, 10, 12, 16], "criterion": ["gini", "entropy", "log_loss"]}  # 27


def test_rung_schedule_follows_sklearn_exhaust():
    assert rung_resources(1072, 20, 3, 27) == [40, 119, 357, 1072]
    assert rung_sizes(27, 3, 4) == [27, 9, 3, 1]
    assert rung_resources(1072, 200, 3, 27) == [357, 1072]  # the resource range allows two rungs only
    assert rung_resources(100, 4, 4, 27) == [6, 25, 100]


def test_strategy_promotes_the_best_third_until_one_runs_on_the_full_resource():
    schedule = HalvingSchedule(max_resource=81, min_resource=1, factor=3)
    strategy, _ = make_strategy("halving", SearchSpace(GRID), n_candidates=0, seed=0, max_grid_size=100,
                                schedule=schedule)
    seen = []
    while batch := strategy.ask(4):
        for params in batch:
            fidelity = strategy.fidelity(params)
            seen.append((fidelity.rung, fidelity.resource, params))
            strategy.tell(params, params["max_depth"] + fidelity.resource / 1000)
    assert [sum(r == k for r, _, _ in seen) for k in range(4)] == [27, 9, 3, 1]
    assert sorted({(r, res) for r, res, _ in seen}) == [(0, 3), (1, 9), (2, 27), (3, 81)]
    assert seen[-1][2]["max_depth"] == 16
    rung2 = {p["max_depth"] for r, _, p in seen if r == 1}
    assert rung2 == {12, 16, 10}


def test_failed_candidates_are_never_promoted():
    schedule = HalvingSchedule(max_resource=9, min_resource=1, factor=3)
    strategy, _ = make_strategy("halving", SearchSpace({"a": list(range(9))}), n_candidates=0, seed=0,
                                max_grid_size=100, schedule=schedule)
    promoted = []
    while batch := strategy.ask(9):
        for params in batch:
            if strategy.fidelity(params).rung > 0:
                promoted.append(params["a"])
            strategy.tell(params, None if params["a"] > 5 else float(params["a"]))
    assert 8 not in promoted and 5 in promoted


@pytest.mark.parametrize(
    ("estimator", "space", "expected"),
    [
        (RandomForestClassifier(n_estimators=90), {"max_depth": [2, 4]}, "n_estimators"),
        (RandomForestClassifier(), {"n_estimators": [50, 100], "max_depth": [2, 4]}, "n_estimators_percent"),
        (HistGradientBoostingRegressor(), {"learning_rate": (0.01, 0.3, "log-uniform")}, "max_iter"),
        (LogisticRegression(), {"C": (0.01, 10.0, "log-uniform")}, ROWS),
        (DecisionTreeClassifier(), {"max_depth": [2, 4]}, ROWS),
    ],
)
def test_resource_per_estimator(estimator, space, expected):
    assert choose_resource(estimator, SearchSpace(space)) == expected


def _evaluator(estimator, X_, y_, *, folds=3, seed=0, classification=True):
    splits = compute_splits(make_splitter(folds, classification=classification, seed=seed), X_, y_)
    return EstimatorEvaluator(estimator, X=X_, y=y_, splits=splits, scorer=resolve_scorer("accuracy"))


def test_rows_are_subsampled_inside_each_training_part_stratified_and_nested():
    evaluator = _evaluator(DecisionTreeClassifier(), X, Y)
    plan = plan_halving(HalvingOptions(), evaluator, SearchSpace({"max_depth": [1, 2, 3]}), seed=0,
                        max_trials=None, repeat=False, classification=True)
    assert plan.schedule.resource_name == ROWS
    resources = plan.schedule.rungs(9)
    assert resources[-1] == max(len(tr) for tr, _ in evaluator.splits)
    previous = None
    for resource in resources[:-1]:
        view = plan.evaluator.at(resource)
        subsets = []
        for (train, val), (sub, sub_val) in zip(evaluator.splits, view.splits):
            assert np.array_equal(val, sub_val)  # the validation part is never touched
            assert len(sub) == resource and set(sub) <= set(train)
            share = Y[sub].mean()
            assert abs(share - Y[train].mean()) <= 1.5 / resource + 1e-9  # stratified
            subsets.append(set(sub))
        if previous is not None:
            assert all(p <= s for p, s in zip(previous, subsets))  # nested rungs
        previous = subsets
    assert plan.evaluator.at(resources[-1]) is evaluator


def test_a_data_set_too_small_for_halving_is_refused_with_the_rule():
    X_small, y_small = X[:45], Y[:45]
    evaluator = _evaluator(LogisticRegression(), X_small, y_small)
    with pytest.raises(InvalidRequestError, match="too small for halving.*30 rows.*factor × min_resource"):
        plan_halving(HalvingOptions(), evaluator, SearchSpace({"C": [0.1, 1.0]}), seed=0, max_trials=None,
                     repeat=False, classification=True)


def test_halving_over_grid_candidates_is_refused_past_max_grid_size():
    evaluator = _evaluator(DecisionTreeClassifier(), X, Y)
    space = SearchSpace({"max_depth": [1, 2, 3, 4], "min_samples_split": [2, 4, 8]})  # 12 grid points
    for candidates in ("grid", "auto"):
        with pytest.raises(ResourceLimitError, match="too large for strategy='halving' over grid candidates: "
                                                     "grid has 12 candidates, more than max_grid_size=11"):
            plan_halving(HalvingOptions(candidates=candidates), evaluator, space, seed=0, max_trials=None,
                         repeat=False, classification=True, max_grid_size=11)
    # The same space is fine at the limit, and random candidates never enumerate the grid.
    plan_halving(HalvingOptions(), evaluator, space, seed=0, max_trials=None, repeat=False, classification=True,
                 max_grid_size=12)
    plan_halving(HalvingOptions(candidates="random"), evaluator, space, seed=0, max_trials=9, repeat=True,
                 classification=True, max_grid_size=11)
    with pytest.raises(InvalidRequestError, match="does not suit strategy='halving' over grid candidates"):
        plan_halving(HalvingOptions(candidates="grid"), evaluator, SearchSpace({"max_features": (0.1, 1.0)}), seed=0,
                     max_trials=None, repeat=False, classification=True)


def test_tune_refuses_a_halving_grid_past_the_settings_limit_before_fitting():
    from mcp_server.settings import Settings

    tuner = HyperparameterTuner(enable_mlflow=False, settings=Settings(max_grid_size=5))
    with pytest.raises(ResourceLimitError, match="too large for strategy=.halving. over grid candidates: .*max_grid_size=5"):
        tuner.tune(estimator=DecisionTreeClassifier(), X=X, y=Y, space={"max_depth": [1, 2, 3], "min_samples_leaf": [1, 2]},
                   strategy="halving", scoring="accuracy", cv_folds=3, seed=0)


def test_a_first_rung_without_two_rows_of_every_class_is_refused():
    X_rare, y_rare = make_classification(n_samples=400, n_features=4, weights=[0.95], random_state=1)
    evaluator = _evaluator(LogisticRegression(), X_rare, y_rare)
    with pytest.raises(InvalidRequestError, match=r"class 1 .* fewer than 2 rows; give min_resource >= \d+"):
        plan_halving(HalvingOptions(min_resource=10), evaluator, SearchSpace({"C": [0.1, 1.0]}), seed=0,
                     max_trials=None, repeat=False, classification=True)
    # The default first rung grows until the rare class has 2 rows.
    plan = plan_halving(HalvingOptions(), evaluator, SearchSpace({"C": [0.1, 1.0]}), seed=0, max_trials=None,
                        repeat=False, classification=True)
    assert plan.schedule.min_resource * (y_rare.mean()) >= 1.5


def test_halving_options_are_validated():
    with pytest.raises(InvalidRequestError, match="factor must be a number > 1"):
        HalvingOptions(factor=1)
    with pytest.raises(InvalidRequestError, match="unknown halving option"):
        HyperparameterTuner(enable_mlflow=False).tune(
            estimator=DecisionTreeClassifier(), X=X, y=Y, space={"max_depth": [1, 2]}, strategy="halving",
            cv_folds=3, seed=0, halving={"fact": 2})
    with pytest.raises(InvalidRequestError, match="without pruning"):
        HyperparameterTuner(enable_mlflow=False).tune(
            estimator=DecisionTreeClassifier(), X=X, y=Y, space={"max_depth": [1, 2]}, strategy="halving",
            cv_folds=3, seed=0, pruning="median")


def test_tune_with_halving_over_trees_reports_rungs_and_picks_a_full_resource_best():
    messages = []
    result = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=RandomForestClassifier(n_estimators=30, random_state=0), X=X, y=Y,
        space={"max_depth": [1, 2, 4, 8], "min_samples_leaf": [1, 5, 20]}, strategy="halving", scoring="roc_auc",
        halving={"factor": 3}, cv_folds=3, seed=1,
        on_trial=lambda trial, progress: messages.append(progress.message()),
    )
    rungs = sorted({(t.rung, t.resource) for t in result.trials})
    assert rungs == [(0, 10), (1, 30)]
    assert [sum(t.rung == r for t in result.trials) for r, _ in rungs] == [12, 4]
    assert result.best_trial.resource == 30 and result.best_trial.rung == 1
    assert result.summary.stopped_reason.value == "exhausted"
    assert messages[0].startswith("rung 1/2 (10 n_estimators), trial 1")
    assert messages[-1].startswith("rung 2/2 (30 n_estimators), trial 16")


def test_halving_over_rows_with_group_folds_and_a_holdout():
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(team=np.arange(len(X)) % 30)
    result = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=LogisticRegression(max_iter=200), X=frame, y=pd.Series(Y, name="label"),
        space={"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}, strategy="halving", scoring="roc_auc", cv_folds=3,
        seed=0, split={"kind": "group", "column": "team", "test_size": 0.2, "seed": 0},
        halving={"min_resource": 40},
    )
    assert result.split is not None and result.best_trial.rung == max(t.rung for t in result.trials)
    assert {t.resource for t in result.trials if t.rung == 0} == {max(t.resource for t in result.trials) // 3}


def test_halving_regression_over_boosting_iterations():
    X_r, y_r = make_regression(n_samples=200, n_features=4, noise=5.0, random_state=0)
    result = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=HistGradientBoostingRegressor(max_iter=40, early_stopping=False, random_state=0), X=X_r, y=y_r,
        space={"learning_rate": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}, strategy="halving",
        scoring="r2", cv_folds=3, seed=0, halving={"n_candidates": 9},
        max_trials=9 + 3,  # one bracket, without the default time budget (60 s) cutting it on a loaded box
    )
    assert sorted({t.resource for t in result.trials}) == [13, 40]
    assert result.summary.total_trials == 9 + 3


def test_random_brackets_repeat_until_the_trial_budget():
    result = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=DecisionTreeClassifier(random_state=0), X=X, y=Y,
        space={"max_depth": {"type": "int", "low": 1, "high": 12}}, strategy="halving", cv_folds=3, seed=0,
        max_trials=20, halving={"n_candidates": 6, "min_resource": 60},
    )
    assert result.summary.total_trials == 20 and result.summary.stopped_reason.value == "max_trials"
    assert {t.bracket for t in result.trials} == {0, 1, 2}


def test_mlflow_trial_runs_carry_rung_and_resource_and_resume_finishes_the_same_search():
    tracker = get_mlflow_tracker(experiment_name="halving-mock", mock_mode=True)
    space = {"max_depth": [1, 2, 4, 8], "min_samples_leaf": [1, 5, 20]}

    def run(tuner, **kwargs):
        return tuner.tune(estimator=RandomForestClassifier(n_estimators=30, random_state=0), X=X, y=Y, space=space,
                          strategy="halving", scoring="roc_auc", cv_folds=3, seed=4, **kwargs)

    full = run(HyperparameterTuner(enable_mlflow=False))
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    first = run(tuner, on_trial=lambda trial, progress: progress.n_trials_done < 14)  # cancelled in rung 2
    parent = first.parent_run_id
    assert tracker.get_run(parent).status is RunStatus.KILLED
    assert '"resource": "n_estimators"' in tracker.get_run(parent).params["halving"]
    child = tracker.get_run(first.trials[0].run_id)
    assert child.tags["nba_mcp.rung"] == "0" and child.metrics["resource"] == 10
    resumed = run(tuner, resume_from=parent)
    assert resumed.summary.n_resumed_trials == 14 and resumed.summary.n_trials_run == 2
    assert [(t.rung, t.params) for t in resumed.trials] == [(t.rung, t.params) for t in full.trials]
    assert resumed.best_params == full.best_params
    assert tracker.get_run(parent).status is RunStatus.FINISHED


def test_bayesian_candidates_propose_later_brackets_from_a_gp_deterministically():
    def run():
        return HyperparameterTuner(enable_mlflow=False).tune(
            estimator=DecisionTreeClassifier(random_state=0), X=X, y=Y,
            space={"max_depth": {"type": "int", "low": 1, "high": 12},
                   "min_samples_leaf": {"type": "int", "low": 1, "high": 40, "log": True}},
            strategy="halving", cv_folds=3, seed=3, max_trials=36,
            halving={"candidates": "bayesian", "n_candidates": 8, "min_resource": 60},
        )

    first, second = run(), run()
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert {t.bracket for t in first.trials} == {0, 1, 2, 3}  # brackets of 8 + 3 trials
    random_only = HyperparameterTuner(enable_mlflow=False).tune(
        estimator=DecisionTreeClassifier(random_state=0), X=X, y=Y,
        space={"max_depth": {"type": "int", "low": 1, "high": 12},
               "min_samples_leaf": {"type": "int", "low": 1, "high": 40, "log": True}},
        strategy="halving", cv_folds=3, seed=3, max_trials=36,
        halving={"candidates": "random", "n_candidates": 8, "min_resource": 60},
    )
    bracket1 = [t.params for t in first.trials if t.bracket == 1 and t.rung == 0]
    assert bracket1 != [t.params for t in random_only.trials if t.bracket == 1 and t.rung == 0]
    assert bracket1[4:] == [t.params for t in random_only.trials if t.bracket == 1 and t.rung == 0][:4]


def test_bayesian_candidates_come_from_a_gp_fit_on_warped_scores(monkeypatch):
    """Halving's GP is the Bayesian searcher's: fit on the warped scores of the rung it learns from."""
    from mcp_server.hyperparameter_tuning import _optimizer

    fitted_on = []
    real = _optimizer.warped
    monkeypatch.setattr(_optimizer, "warped", lambda scores: fitted_on.append(list(scores)) or real(scores))
    space = SearchSpace({"a": {"type": "float", "low": 0.0, "high": 1.0},
                         "b": {"type": "float", "low": 0.0, "high": 1.0}})
    schedule = HalvingSchedule(max_resource=9, min_resource=1, factor=3, n_candidates=9, candidates="bayesian",
                               repeat=True)
    strategy, _ = make_strategy("halving", space, n_candidates=0, seed=0, max_grid_size=100, schedule=schedule)
    told = {}
    for _ in range(20):  # bracket 0 is 13 trials; bracket 1's first ask fits the GP
        batch = strategy.ask(9)
        if fitted_on or not batch:
            break
        for params in batch:
            score = -params["a"] ** 4  # skewed: a few bad candidates far below a crowd of good ones
            told.setdefault(strategy.fidelity(params).resource, []).append(score)
            strategy.tell(params, score)
    assert fitted_on, "a later bracket's candidates were not proposed by the GP"
    # The first fit learns from the lowest rung, the only one with 4 scores or more; skopt minimizes.
    assert sorted(fitted_on[0]) == sorted(-s for s in told[1])
