"""Estimator allow-list: every model builds and fits on tiny data; names, params, tasks, scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from tests.support import template_db  # noqa: F401  (fixture)

from mcp_server.error_handling import InvalidRequestError
from mcp_server.estimators import (
    REGISTRY,
    build_model,
    check_params,
    check_scoring,
    default_scoring,
    default_search_space,
    get_estimator_spec,
    infer_task,
    list_estimators,
    param_prefix,
    scorers_for_task,
    to_pipeline_params,
)

REQUIRED = {
    "random_forest": {"classification", "regression"},
    "extra_trees": {"classification", "regression"},
    "gradient_boosting": {"classification", "regression"},
    "hist_gradient_boosting": {"classification", "regression"},
    "logistic_regression": {"classification"},
    "ridge": {"regression"},
    "linear_regression": {"regression"},
    "knn": {"classification", "regression"},
    "lightgbm": {"classification", "regression"},
}
# Small, fast settings so the whole registry fits in well under a few seconds.
FAST_PARAMS = {
    "random_forest": {"n_estimators": 5},
    "extra_trees": {"n_estimators": 5},
    "gradient_boosting": {"n_estimators": 5},
    "hist_gradient_boosting": {"max_iter": 5},
    "knn": {"n_neighbors": 3},
    "lightgbm": {"n_estimators": 5, "min_child_samples": 2},
}
EVERY_ESTIMATOR_TASK = [(name, task) for name, spec in sorted(REGISTRY.items()) for task in spec.tasks]


def tiny_frame(task: str, n: int = 40) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "num_missing": np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),
            "team": pd.Series(rng.choice(["LAL", "BOS", None], size=n), dtype="str"),
            "flag": rng.integers(0, 2, size=n).astype(bool),
        }
    )
    y = (X["num"] > 0).astype(int) if task == "classification" else X["num"] * 3 + rng.normal(size=n)
    return X, pd.Series(y, name="y")


def test_registry_covers_the_required_estimators():
    for name, tasks in REQUIRED.items():
        assert tasks <= set(get_estimator_spec(name).tasks)


@pytest.mark.parametrize(("name", "task"), EVERY_ESTIMATOR_TASK)
@pytest.mark.parametrize("columns_from_X", [True, False])
def test_every_estimator_builds_and_fits_from_raw_columns(name, task, columns_from_X):
    X, y = tiny_frame(task)
    model = build_model(name, task, FAST_PARAMS.get(name), X=X if columns_from_X else None)
    assert isinstance(model, Pipeline) and model.steps[-1][0] == "model"
    model.fit(X, y)
    unseen = X.head(3).assign(team=["NEW", "LAL", None])  # unseen category must not fail
    assert len(model.predict(unseen)) == 3


@pytest.mark.parametrize(("name", "task"), EVERY_ESTIMATOR_TASK)
def test_default_search_space_is_typed_and_settable(name, task):
    space = default_search_space(name, task)
    assert space
    valid = get_estimator_spec(name).valid_params(task)
    model = build_model(name, task)
    for param, dimension in space.items():
        assert param in valid
        if dimension["type"] == "categorical":
            value = dimension["choices"][0]
        else:
            assert dimension["type"] in {"int", "float"} and dimension["low"] < dimension["high"]
            assert isinstance(dimension["log"], bool)
            value = dimension["low"]
        model.set_params(**to_pipeline_params({param: value}))
        assert model.get_params()[f"{param_prefix}{param}"] == value


def test_random_state_defaults_to_zero_and_is_overridable():
    assert build_model("random_forest", "classification").get_params()["model__random_state"] == 0
    assert build_model("random_forest", "classification", random_state=7).get_params()["model__random_state"] == 7
    params = {"random_state": 3}
    assert build_model("random_forest", "regression", params, random_state=7).get_params()["model__random_state"] == 3
    assert "model__random_state" not in build_model("knn", "regression").get_params()


def test_params_override_defaults_and_accept_the_prefix():
    model = build_model("random_forest", "regression", {"model__max_depth": 3, "n_estimators": 11})
    assert (model.get_params()["model__max_depth"], model.get_params()["model__n_estimators"]) == (3, 11)
    assert to_pipeline_params({"C": 1.0, "model__p": 2}) == {"model__C": 1.0, "model__p": 2}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_model("xgboost", "classification"), "valid estimators: .*random_forest"),
        (lambda: build_model("sklearn.svm.SVC", "classification"), "unknown estimator"),
        (lambda: build_model("ridge", "classification"), "supports: regression"),
        (lambda: build_model("logistic_regression", "regression"), "supports: classification"),
        (lambda: build_model("ridge", "regression", {"depth": 3}), "valid hyperparameters: .*alpha"),
        (lambda: build_model("random_forest", "regression", {"n_estimators": -1}), "n_estimators"),
        (lambda: build_model("random_forest", "regression", {"verbose": 1}), "stdout"),
        (lambda: build_model("knn", "clustering"), "task must be one of"),
        (lambda: check_params("knn", "regression", {"model__nope": 1}), "'nope'"),
        (lambda: default_search_space("nope"), "unknown estimator"),
    ],
)
def test_invalid_requests_are_refused_with_the_valid_choices(call, message):
    with pytest.raises(InvalidRequestError, match=message):
        call()


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (None, set(REGISTRY)),
        ("regression", {n for n, s in REGISTRY.items() if "regression" in s.tasks}),
        ("classification", {n for n, s in REGISTRY.items() if "classification" in s.tasks}),
    ],
)
def test_list_estimators(task, expected):
    infos = list_estimators(task)
    assert {info.name for info in infos} == expected
    forest = next((i for i in infos if i.name == "random_forest"), None)
    assert forest.search_space["n_estimators"]["type"] == "int"
    assert forest.estimator_classes["classification"] == "sklearn.ensemble.RandomForestClassifier"
    forest.search_space.clear()  # a copy: the registry is not mutated
    assert REGISTRY["random_forest"].search_space


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (pd.Series(["a", "b", "a"]), "classification"),
        (pd.Series(["a", "b"], dtype="category"), "classification"),
        (pd.Series([True, False]), "classification"),
        (pd.Series([0, 1, 1, 0]), "classification"),
        (np.arange(10) % 3, "classification"),
        (pd.Series(range(100)), "regression"),
        (pd.Series([0.5, 1.5, 2.0]), "regression"),
        (pd.Series([0.0, 1.0, 1.0]), "regression"),
    ],
)
def test_infer_task(y, expected):
    assert infer_task(y) == expected


def test_explicit_task_wins_and_is_validated():
    assert infer_task(pd.Series([0.0, 1.0]), task="classification") == "classification"
    with pytest.raises(InvalidRequestError, match="task must be one of"):
        infer_task([1, 2], task="ranking")


@pytest.mark.parametrize(
    ("scoring", "task", "ok"),
    [
        ("roc_auc", "classification", True),
        ("f1_macro", "classification", True),
        ("neg_log_loss", "classification", True),
        ("r2", "regression", True),
        ("neg_root_mean_squared_error", "regression", True),
        ("r2", "classification", False),
        ("accuracy", "regression", False),
        ("adjusted_rand_score", "classification", False),
        ("not_a_metric", "regression", False),
    ],
)
def test_check_scoring(scoring, task, ok):
    if ok:
        assert check_scoring(scoring, task) == scoring
    else:
        with pytest.raises(InvalidRequestError, match=f"valid scoring for {task}"):
            check_scoring(scoring, task)


def test_scorer_lists_do_not_overlap():
    assert not set(scorers_for_task("classification")) & set(scorers_for_task("regression"))


@pytest.mark.parametrize(
    ("task", "y", "expected"),
    [
        ("classification", [0, 1, 1], "roc_auc"),
        ("classification", None, "roc_auc"),
        ("classification", [0, 1, 2], "f1_macro"),
        ("regression", [0.1, 2.3], "neg_root_mean_squared_error"),
    ],
)
def test_default_scoring(task, y, expected):
    assert default_scoring(task, y) == expected


@pytest.mark.parametrize(
    ("scoring", "y", "message"),
    [
        ("roc_auc", [0, 1, 2], "roc_auc_ovr"),
        ("f1", ["a", "b", "c"], "f1_macro"),
        ("average_precision", [0, 1, 2], "accuracy"),
    ],
)
def test_binary_only_scoring_is_refused_for_multiclass_targets(scoring, y, message):
    with pytest.raises(InvalidRequestError, match=message):
        check_scoring(scoring, "classification", y=y)
    assert check_scoring(scoring, "classification", y=[0, 1, 1]) == scoring


# --- LightGBM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_lightgbm_is_quiet_single_threaded_and_deterministic_by_default(task, capfd):
    X, y = tiny_frame(task, n=120)
    model = build_model("lightgbm", task, {"n_estimators": 20, "subsample": 0.7}, X=X, random_state=5)
    params = model.named_steps["model"].get_params()
    assert (params["n_jobs"], params["verbose"], params["random_state"]) == (1, -1, 5)
    first = model.fit(X, y).predict(X)
    assert capfd.readouterr().out == ""  # LightGBM's warnings would land on the MCP stdio channel
    again = build_model("lightgbm", task, {"n_estimators": 20, "subsample": 0.7}, X=X, random_state=5)
    np.testing.assert_array_equal(first, again.fit(X, y).predict(X))
    other_seed = build_model("lightgbm", task, {"n_estimators": 20, "subsample": 0.7}, X=X, random_state=6).fit(X, y)
    raw = "predict_proba" if task == "classification" else "predict"
    assert not np.array_equal(getattr(model, raw)(X), getattr(other_seed, raw)(X))  # the seed drives the bagging
    # The caller may give a fit more threads; nobody may make it print.
    assert build_model("lightgbm", task, {"n_jobs": 2}).named_steps["model"].get_params()["n_jobs"] == 2
    with pytest.raises(InvalidRequestError, match="stdout"):
        build_model("lightgbm", task, {"verbose": 1})


def test_lightgbm_search_space_and_cheap_start():
    spec = get_estimator_spec("lightgbm")
    space = default_search_space("lightgbm", "regression")
    assert {"num_leaves", "learning_rate", "n_estimators", "min_child_samples", "subsample", "colsample_bytree",
            "reg_lambda"} <= set(space)
    assert space["learning_rate"]["log"] and space["reg_lambda"]["log"]
    assert set(spec.low_cost_params) == set(space)  # the cheap start is a point of the space
    for name, value in spec.low_cost_params.items():
        assert space[name]["low"] <= value <= space[name]["high"]
    with pytest.raises(Exception, match="num_leaves of lightgbm must be at most"):
        build_model("lightgbm", "regression", {"num_leaves": 10**7})


def test_every_portfolio_family_starts_inside_its_space():
    for spec in REGISTRY.values():
        space = spec.search_space
        assert set(spec.low_cost_params) <= set(space), spec.name
        for start in (spec.low_cost_params, spec.strong_params):
            assert set(start) <= set(space), spec.name
            for name, value in start.items():
                dim = space[name]
                assert value in dim["choices"] if dim["type"] == "categorical" else dim["low"] <= value <= dim["high"]
        assert spec.relative_cost > 0


def test_a_lightgbm_model_logs_and_loads_through_mlflow(tmp_path, template_db):
    """Logged as the other estimators are (skops with the model's own trusted types), pinned, loaded back."""
    from mlflow import MlflowClient

    from mcp_server.mlflow_integration import MLflowExperimentTracker
    from tests.support import isolated_settings

    X, y = tiny_frame("classification", n=80)
    model = build_model("lightgbm", "classification", {"n_estimators": 10, "min_child_samples": 2}, X=X).fit(X, y)
    settings = isolated_settings(tmp_path / "home", template_db)
    tracker = MLflowExperimentTracker("lgbm", settings.tracking_uri, settings=settings)
    try:
        with tracker.start_run("lgbm") as run_id:
            uri = tracker.log_model(model, input_example=X.head(3))
        version = tracker.register_model(uri, "lgbm-model", run_id=run_id)
        loaded = tracker.load_model(f"models:/lgbm-model/{version}")
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        logged = MlflowClient(tracker.tracking_uri).get_logged_model(uri.removeprefix("models:/"))
        requirements = Path(logged.artifact_location.removeprefix("file://")) / "requirements.txt"
        assert "lightgbm==" in requirements.read_text()  # the served model installs what it unpickles
    finally:
        tracker.close()
