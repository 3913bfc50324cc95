"""Ensembles from out-of-fold predictions: Caruana's greedy selection, and the auto search's ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_server.hyperparameter_tuning import HyperparameterTuner
from mcp_server.hyperparameter_tuning._ensemble import fold_scorer, greedy_selection


def _neg_mse(y):
    return lambda predictions: -float(np.mean((predictions[0] - y) ** 2))


# --- the selection, on known out-of-fold predictions -------------------------------------------------


def test_opposite_errors_are_blended_half_and_half_and_the_best_prefix_is_kept():
    y = np.linspace(0, 1, 20)
    error = np.sin(np.arange(20))
    candidates = [[y + error], [y - error]]
    weights, trajectory = greedy_selection(candidates, _neg_mse(y), rounds=7)
    assert weights.tolist() == [0.5, 0.5]
    assert len(trajectory) == 7 and trajectory[1] == pytest.approx(0.0)
    assert trajectory[2] < trajectory[1]  # a third pick unbalances it: that suffix is dropped


def test_selection_is_with_replacement():
    y = np.linspace(-1, 1, 30)
    error = np.cos(np.arange(30))
    # 2/3 of A and 1/3 of B cancel the error exactly; A is the better single model.
    weights, _ = greedy_selection([[y + error], [y - 2 * error]], _neg_mse(y), rounds=10)
    assert weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert weights.sum() == pytest.approx(1.0)


def test_ties_go_to_a_model_already_chosen():
    y = np.arange(10.0)
    same = y + 1.0
    # Three equal candidates: without the rule every round could pick another one.
    weights, trajectory = greedy_selection([[same], [same.copy()], [same.copy()]], _neg_mse(y), rounds=6)
    assert weights.tolist() == [1.0, 0.0, 0.0]
    assert len(set(trajectory)) == 1


def test_a_useless_candidate_gets_no_weight():
    y = np.linspace(0, 1, 40)
    good, noise = y + 0.01, np.random.default_rng(0).normal(size=40)
    weights, _ = greedy_selection([[good], [noise]], _neg_mse(y), rounds=5)
    assert weights.tolist() == [1.0, 0.0]


def test_fold_scores_are_the_scorers_on_each_folds_rows():
    from sklearn.metrics import get_scorer, log_loss, roc_auc_score

    classes = np.array(["a", "b"])
    y_folds = [np.array(["a", "b", "b", "a"]), np.array(["b", "a", "b"])]
    proba = [np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]]),
             np.array([[0.1, 0.9], [0.7, 0.3], [0.6, 0.4]])]
    auc = fold_scorer(get_scorer("roc_auc"), y_folds, classes)(proba)
    assert auc == pytest.approx([roc_auc_score(y == "b", p[:, 1]) for y, p in zip(y_folds, proba)])
    loss = fold_scorer(get_scorer("neg_log_loss"), y_folds, classes)(proba)
    assert loss == pytest.approx([-log_loss(y, p, labels=classes) for y, p in zip(y_folds, proba)])
    accuracy = fold_scorer(get_scorer("accuracy"), y_folds, classes)(proba)
    assert accuracy == pytest.approx([1.0, 2 / 3])


# --- after an auto search ----------------------------------------------------------------------------


def _linear_plus_interaction(n=300, seed=0):
    """A linear part (trees fit it in steps) plus an interaction (no linear model fits it)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(-1, 1, size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    y = 3 * X["x0"] + 2 * X["x1"] - 2 * X["x2"] + 3 * X["x3"] * X["x4"] + rng.normal(scale=0.2, size=n)
    return X, y.rename("y")


def _linear_only(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(-1, 1, size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    y = X.to_numpy() @ np.array([3.0, 2.0, -2.0, 1.0, 0.5]) + rng.normal(scale=0.8, size=n)
    return X, pd.Series(y, name="y")


def test_an_ensemble_of_linear_and_trees_beats_each_on_a_sum_of_both():
    X, y = _linear_plus_interaction()
    # Five trials: every family's cheap start (LightGBM's strong preset, next, fits this alone).
    result = HyperparameterTuner(enable_mlflow=False).tune(estimator="auto", X=X, y=y, max_trials=5, cv_folds=3,
                                                           seed=0)
    ensemble = result.ensemble
    assert ensemble is not None
    assert sum(m.weight for m in ensemble.members) == pytest.approx(1.0)
    assert len(ensemble.members) >= 2 and {m.estimator for m in ensemble.members} >= {"ridge"}
    assert ensemble.cv_score > ensemble.best_member_cv_score >= result.best_score - 1e-9
    assert ensemble.cv_score == pytest.approx(np.mean(ensemble.fold_scores))
    # The refits are the trials' own fits on the search's folds: the same scores.
    best = next(t for t in result.trials if t.number == ensemble.best_member_trial)
    assert ensemble.best_member_fold_scores == pytest.approx(best.fold_scores)


def test_no_ensemble_without_the_searchs_best_trial():
    """A blend of lesser trials is never judged against a lesser member: if the best trial cannot be
    refitted before the deadline, the best trial stands (all_seasons kept a worse ensemble that way)."""
    import time
    from types import SimpleNamespace

    from sklearn.metrics import get_scorer
    from sklearn.model_selection import KFold

    from mcp_server.hyperparameter_tuning._ensemble import build_ensemble
    from mcp_server.hyperparameter_tuning._portfolio import plan_portfolio
    from mcp_server.hyperparameter_tuning._tuner import _portfolio_evaluator

    X, y = _linear_plus_interaction()
    # Five trials: every family's cheap start (LightGBM's strong preset, next, fits this alone).
    result = HyperparameterTuner(enable_mlflow=False).tune(estimator="auto", X=X, y=y, max_trials=5, cv_folds=3,
                                                           seed=0)
    data = SimpleNamespace(X=X, y=y, folds=list(KFold(3, shuffle=True, random_state=0).split(X)))
    evaluator = _portfolio_evaluator(plan_portfolio("regression"), data, task="regression", seed=0,
                                     scoring="neg_root_mean_squared_error", error_score=np.nan)

    def ensemble(trials):
        return build_ensemble(trials, evaluator, scorer=get_scorer("neg_root_mean_squared_error"), sign=1.0,
                              task="regression", deadline=time.monotonic() + 60)

    assert ensemble(result.trials) is not None  # the blend wins with every trial refitted
    best = max((t for t in result.trials if t.score is not None), key=lambda t: t.score)
    slow = [t.model_copy(update={"duration_seconds": 1e6}) if t is best else t for t in result.trials]
    assert ensemble(slow) is None


def test_no_ensemble_when_one_family_is_all_it_takes():
    X, y = _linear_only()
    result = HyperparameterTuner(enable_mlflow=False).tune(estimator="auto", X=X, y=y, max_trials=6, cv_folds=3,
                                                           seed=0)
    assert result.estimator == "ridge"
    assert result.ensemble is None


def test_a_named_estimator_builds_no_ensemble():
    X, y = _linear_plus_interaction(200)
    result = HyperparameterTuner(enable_mlflow=False).tune(estimator="ridge", X=X, y=y, max_trials=2, cv_folds=3,
                                                           seed=0)
    assert result.ensemble is None


# --- the ensemble as one model ------------------------------------------------------------------------


def test_a_weighted_ensemble_classifier_averages_its_members_probabilities_and_pickles():
    import pickle

    from mcp_server.estimators import build_ensemble_model, build_model

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "team": rng.choice(["BOS", "LAL"], 200)})
    y = pd.Series(np.where(X["a"] + X["b"] > 0, "win", "loss"))
    members = [("lightgbm", {"n_estimators": 20}, 0.75), ("logistic_regression", {}, 0.25)]
    model = build_ensemble_model(members, "classification", X=X).fit(X, y)
    assert list(model.classes_) == ["loss", "win"] and list(model.feature_names_in_) == ["a", "b", "team"]
    alone = [build_model(name, "classification", params, X=X).fit(X, y).predict_proba(X) for name, params, _ in members]
    assert model.predict_proba(X) == pytest.approx(0.75 * alone[0] + 0.25 * alone[1])
    assert (pickle.loads(pickle.dumps(model)).predict(X) == model.predict(X)).all()


def test_an_ensemble_request_is_checked():
    from pydantic import ValidationError

    from mcp_server.training_pipeline import StandardPipelineRequest

    members = [{"estimator": "ridge", "params": {"alpha": 1.0}, "weight": 0.5},
               {"estimator": "lightgbm", "params": {}, "weight": 0.5}]
    request = StandardPipelineRequest(dataset="d.csv", target="y", estimator="ensemble", ensemble=members)
    assert [m.estimator for m in request.ensemble] == ["ridge", "lightgbm"]
    for wrong in ({"estimator": "ensemble"}, {"ensemble": members},
                  {"estimator": "ensemble", "ensemble": members, "params": {"alpha": 1.0}},
                  {"estimator": "ensemble", "ensemble": members[:1]},
                  {"estimator": "ensemble", "ensemble": [{**members[0], "weight": 0}, members[1]]}):
        with pytest.raises(ValidationError):
            StandardPipelineRequest(dataset="d.csv", target="y", **wrong)


def test_an_ensemble_members_params_are_checked_before_any_run():
    from mcp_server.error_handling import InvalidRequestError
    from mcp_server.training_pipeline import StandardPipelineRequest, plan_pipeline

    X, y = _linear_plus_interaction(60)
    members = [{"estimator": "ridge", "params": {"max_depth": 3}, "weight": 0.5},
               {"estimator": "lightgbm", "params": {}, "weight": 0.5}]
    request = StandardPipelineRequest(dataset="d.csv", target="y", estimator="ensemble", ensemble=members)
    with pytest.raises(InvalidRequestError, match="max_depth"):
        plan_pipeline(request, X.assign(y=y))
