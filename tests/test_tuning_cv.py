"""Cross-validation is real: the tuner splits, fold scores equal sklearn's cross_val_score, and
functions that cannot take fold data are refused instead of being evaluated k times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning import HyperparameterTuner, TrialState

X_CLF, Y_CLF = make_classification(n_samples=160, n_features=6, random_state=0)
X_REG, Y_REG = make_regression(n_samples=120, n_features=5, noise=5.0, random_state=0)


def rf_train(params, X, y):
    return RandomForestClassifier(n_estimators=8, random_state=0, **params).fit(X, y)


def auc_eval(model, X, y):
    return roc_auc_score(y, model.predict_proba(X)[:, 1])


def test_callable_fold_scores_equal_cross_val_score_with_the_same_splitter():
    tuner = HyperparameterTuner(enable_mlflow=False)
    tuner.grid_search({"max_depth": [2, 4]}, rf_train, auc_eval, cv_folds=4, X=X_CLF, y=Y_CLF, seed=11)
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=11)
    for trial in tuner.last_result.trials:
        expected = cross_val_score(
            RandomForestClassifier(n_estimators=8, random_state=0, **trial.params), X_CLF, Y_CLF,
            cv=splitter, scoring="roc_auc",
        )
        np.testing.assert_allclose(trial.fold_scores, expected, rtol=0, atol=1e-12)
        assert trial.score == pytest.approx(expected.mean()) and trial.std == pytest.approx(expected.std())
    assert tuner.get_tuning_summary()["cv"] == "StratifiedKFold(n_splits=4, shuffle=True, random_state=11)"


def test_estimator_path_equals_cross_val_score_for_regression_with_kfold():
    tuner = HyperparameterTuner(enable_mlflow=False)
    result = tuner.tune(estimator=Ridge(), X=X_REG, y=Y_REG, space={"alpha": [0.1, 10.0]}, strategy="grid",
                        scoring="r2", cv_folds=3, seed=5)
    assert result.summary.cv.startswith("KFold(n_splits=3")
    for trial in result.trials:
        expected = cross_val_score(Ridge(**trial.params), X_REG, Y_REG, cv=KFold(3, shuffle=True, random_state=5), scoring="r2")
        np.testing.assert_allclose(trial.fold_scores, expected, atol=1e-12)


def test_pandas_inputs_are_split_by_position():
    X = pd.DataFrame(X_REG, index=np.arange(1000, 1000 + len(X_REG)))
    y = pd.Series(Y_REG, index=X.index)
    seen_types = []

    def train_fn(params, X_train, y_train):
        seen_types.append((type(X_train), type(y_train)))
        return Ridge(**params).fit(X_train, y_train)

    def eval_fn(model, X_val, y_val):
        return r2_score(y_val, model.predict(X_val))

    HyperparameterTuner(enable_mlflow=False).grid_search({"alpha": [1.0]}, train_fn, eval_fn, cv_folds=3, X=X, y=y)
    assert seen_types == [(pd.DataFrame, pd.Series)] * 3


def test_holdout_calls_each_function_once_per_trial():
    calls = []
    best = HyperparameterTuner(enable_mlflow=False).grid_search(
        {"a": [1, 2, 3]}, lambda p: calls.append(p) or p, lambda m: -abs(m["a"] - 2), cv_folds=None
    )
    assert calls == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert best["params"] == {"a": 2} and best["fold_scores"] == [0.0]


@pytest.mark.parametrize(
    ("train_fn", "eval_fn", "fragments"),
    [
        (lambda params: params, auc_eval, ["cv_folds=5 needs", "train_fn(params, X_train, y_train)", "cv_folds=None"]),
        (rf_train, lambda model: 0.5, ["cv_folds=5 needs", "eval_fn(model, X_val, y_val)"]),
    ],
)
def test_functions_without_data_arguments_cannot_be_cross_validated(train_fn, eval_fn, fragments):
    with pytest.raises(InvalidRequestError) as info:
        HyperparameterTuner(enable_mlflow=False).grid_search({"max_depth": [2]}, train_fn, eval_fn, cv_folds=5, X=X_CLF, y=Y_CLF)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cv_folds": 3}, "cv_folds=3 needs X and y"),
        ({"cv_folds": None, "X": X_CLF, "y": Y_CLF}, "X and y are only used for cross-validation"),
        ({"cv_folds": 21, "X": X_CLF, "y": Y_CLF}, "cv_folds must be between 0 and 20, got 21"),
        ({"cv_folds": 2.5, "X": X_CLF, "y": Y_CLF}, "cv_folds must be between 0 and 20, got 2.5"),
        ({"cv_folds": 3, "X": X_CLF, "y": Y_CLF[:10]}, "same number of rows, got 160 and 10"),
    ],
)
def test_cv_request_validation(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        HyperparameterTuner(enable_mlflow=False).grid_search({"max_depth": [2]}, rf_train, auc_eval, **kwargs)


def test_holdout_refuses_functions_that_need_data():
    with pytest.raises(InvalidRequestError, match="without cross-validation the tuner calls train_fn"):
        HyperparameterTuner(enable_mlflow=False).grid_search({"max_depth": [2]}, rf_train, auc_eval)


@pytest.mark.parametrize("cv_folds", [1, 0, None, 21])
def test_declarative_path_needs_two_to_max_folds(cv_folds):
    with pytest.raises(InvalidRequestError, match=f"cv_folds must be between 2 and 20, got {cv_folds}"):
        HyperparameterTuner(enable_mlflow=False).tune(
            estimator=Ridge(), X=X_REG, y=Y_REG, space={"alpha": [1.0]}, cv_folds=cv_folds, scoring="r2"
        )


def test_error_score_number_scores_failing_folds_and_raise_fails_the_trial():
    space = {"alpha": [1.0, -1.0]}  # Ridge refuses a negative alpha at fit time
    tuner = HyperparameterTuner(enable_mlflow=False)
    with pytest.warns(UserWarning, match="fit failed"):
        scored = tuner.tune(estimator=Ridge(), X=X_REG, y=Y_REG, space=space, strategy="grid", scoring="r2",
                            cv_folds=3, seed=0, error_score=-10.0)
    bad = next(t for t in scored.trials if t.params["alpha"] == -1.0)
    assert bad.state is TrialState.COMPLETE and bad.fold_scores == [-10.0] * 3
    raised = tuner.tune(estimator=Ridge(), X=X_REG, y=Y_REG, space=space, strategy="grid", scoring="r2", cv_folds=3, seed=0)
    bad = next(t for t in raised.trials if t.params["alpha"] == -1.0)
    assert bad.state is TrialState.FAILED and "alpha" in bad.error
    assert raised.best_params == {"alpha": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimator": Ridge(), "space": {"depth": [1]}}, "'depth' is not a parameter of Ridge"),
        ({"estimator": Ridge(), "space": None}, "space is required"),
        ({"estimator": object(), "space": {"a": [1]}}, "allow-listed name or a scikit-learn estimator"),
        ({"estimator": Ridge(), "space": {"alpha": [1.0]}, "scoring": "roc_auc"}, "does not fit task regression"),
        ({"estimator": Ridge(), "space": {"alpha": [1.0]}, "scoring": "nope"}, "unknown scoring 'nope'"),
        ({"estimator": Ridge(), "space": {"alpha": [1.0]}, "error_score": "ignore"}, "error_score must be"),
    ],
)
def test_declarative_request_validation(kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        HyperparameterTuner(enable_mlflow=False).tune(X=X_REG, y=Y_REG, **kwargs)


def test_named_estimator_uses_the_registry_pipeline_and_default_space():
    tuner = HyperparameterTuner(enable_mlflow=False)
    result = tuner.tune(estimator="logistic_regression", X=X_CLF, y=Y_CLF, strategy="random", max_trials=3, seed=2, cv_folds=3)
    assert result.summary.scoring == "roc_auc"
    assert result.summary.cv.startswith("StratifiedKFold(n_splits=3")
    assert result.best_params and all("__" not in name for name in result.best_params)
    assert 0.5 < result.best_score <= 1.0
