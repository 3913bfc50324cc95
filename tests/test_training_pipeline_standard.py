"""The standard pipeline against a real sqlite store (and once in mock mode): champion promotion
both ways, explicit promotion, predictions from registered models, request errors, validation
failure and cancellation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.mlflow_integration import MLflowExperimentTracker, RunStatus, get_mlflow_tracker
from mcp_server.settings import Settings
from tests._leaky_frames import game_log
from mcp_server.training_pipeline import (
    PipelineRun,
    PipelineStatus,
    StageStatus,
    StandardPipelineRequest,
    plan_pipeline,
    predict,
    predict_proba,
    promote_model,
    run_standard_pipeline,
)
from tests.support import data_folder

SMALL_FOREST = {"n_estimators": 20}
STUMP = {"max_depth": 1}
ROOKIE_ROW = {
    "GP": 30, "MIN": 20.0, "PTS": 8.0, "FGM": 3.0, "FGA": 7.0, "FG%": 44.0, "3P Made": 0.5, "3PA": 1.5,
    "3P%": None, "FTM": 1.0, "FTA": 2.0, "FT%": 70.0, "OREB": 1.0, "DREB": 2.0, "REB": 3.0, "AST": 2.0,
    "STL": 1.0, "BLK": 0.3, "TOV": 1.0,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    # A target with a missing value: validation reports it as an error.
    pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8], "y": [0, 1, 0, 1, 0, 1, None, 1]}).to_csv(
        folder / "broken.csv", index=False
    )
    # Binary, honest and imperfect (roc_auc ~0.8): box scores without the points.
    game_log().drop(columns=["PTS", "OPP_PTS", "Date", "GAME_ID"]).to_csv(folder / "games.csv", index=False)
    # Regression with a clear gap between a stump and a linear model on 600 test rows.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2],
                  "y": x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=3000)}).to_csv(folder / "linear.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def settings(tmp_path_factory, data_dir) -> Settings:
    return Settings(data_home=tmp_path_factory.mktemp("home"), data_dirs=[data_folder(), data_dir])


@pytest.fixture(scope="module")
def tracker(tmp_path_factory, settings) -> MLflowExperimentTracker:
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    tracker = MLflowExperimentTracker("standard_pipeline_tests", uri, settings=settings)
    yield tracker
    tracker.close()


def run(tracker, settings, **fields):
    return run_standard_pipeline(StandardPipelineRequest(**fields), settings=settings, tracker=tracker)


def run_count(tracker) -> int:
    return len(tracker.search_runs(max_results=1000))


# --- champion promotion ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_fields", "attempts", "primary_metric"),
    [
        # Binary classification on the rookie data (validated by the player_stats schema): roc_auc, higher is better.
        (
            dict(dataset="nba_logreg", target="TARGET_5Yrs", drop_columns=["Name"], schema="player_stats"),
            [("decision_tree", STUMP), ("logistic_regression", {}), ("decision_tree", STUMP)],
            "roc_auc",
        ),
        # Regression: rmse, lower is better (the ridge beats the stump far beyond the holdout's noise).
        (
            dict(dataset="linear", target="y"),
            [("decision_tree", STUMP), ("ridge", {}), ("decision_tree", STUMP)],
            "rmse",
        ),
    ],
)
def test_champion_moves_only_to_a_better_model_and_the_comparison_is_recorded(
    tracker, settings, request_fields, attempts, primary_metric
):
    model_name = f"champion-{primary_metric}"
    results = [
        run(tracker, settings, **request_fields, estimator=estimator, params=params, model_name=model_name)
        for estimator, params in attempts
    ]
    first, better, worse = results
    assert all(r.status is PipelineStatus.COMPLETED for r in results)
    assert [r.primary_metric for r in results] == [primary_metric] * 3
    assert [r.model_version for r in results] == [1, 2, 3]
    assert [r.promotion.promoted for r in results] == [True, True, False]

    assert first.promotion.previous_version is None
    assert better.promotion.previous_version == 1
    assert better.promotion.previous_metric == pytest.approx(first.metrics[f"test_{primary_metric}"])
    assert worse.promotion.previous_version == 2
    assert worse.promotion.new_metric == pytest.approx(worse.metrics[f"test_{primary_metric}"])
    assert "worse than champion v2" in worse.promotion.reason
    assert tracker.get_model_version(model_name, "champion")["version"] == 2

    # Recorded on the runs either way: one set of promotion tags, the primary metric is a param.
    for result in (better, worse):
        stored = tracker.get_run(result.run_id)
        tags = stored.tags
        assert not any(k.startswith("champion.") for k in tags)
        assert tags["promotion.promoted"] == str(result.promotion.promoted).lower()
        assert tags["promotion.previous_version"] == str(result.promotion.previous_version)
        assert float(tags["promotion.previous_metric"]) == pytest.approx(result.promotion.previous_metric)
        # No tag repeats the run's test metric or its flags.
        assert "promotion.new_metric" not in tags and "promotion.flags" not in tags
        assert float(stored.metrics[f"test_{primary_metric}"]) == pytest.approx(result.promotion.new_metric)
        assert stored.params["primary_metric"] == primary_metric

    # The worse version can still be made champion explicitly, but only with force.
    refused = promote_model(tracker, model_name, 3)
    assert not refused.promoted and refused.primary_metric == primary_metric
    forced = promote_model(tracker, model_name, 3, force=True, reason="testing the forced path")
    assert forced.promoted and forced.forced and forced.previous_version == 2
    assert tracker.get_model_version(model_name, "champion")["version"] == 3
    worse_tags = tracker.get_run(worse.run_id).tags
    # The later decision replaces the pipeline's: the run's promotion tags never contradict each other.
    assert worse_tags["promotion.forced"] == "true" and worse_tags["promotion.promoted"] == "true"


def test_promote_false_compares_without_moving_the_alias(tracker, settings):
    fields = dict(dataset="games", target="WL", model_name="compare-only")
    run(tracker, settings, **fields, estimator="decision_tree", params=STUMP)
    result = run(tracker, settings, **fields, estimator="logistic_regression", promote=False)
    assert result.status is PipelineStatus.COMPLETED
    assert not result.promotion.promoted
    assert result.promotion.reason.startswith("comparison only (promote=false): roc_auc")
    assert "better than champion v1" in result.promotion.reason
    assert tracker.get_model_version("compare-only", "champion")["version"] == 1


# --- the standard run itself -------------------------------------------------------------------
def test_standard_run_logs_params_metrics_plot_model_and_validation(tracker, settings):
    result = run(tracker, settings, dataset="sklearn:diabetes", target="target", estimator="ridge",
                 model_name="diabetes-ridge", seed=3, split={"test_size": 0.25})
    assert result.status is PipelineStatus.COMPLETED and result.task == "regression"
    assert set(result.metrics) == {"test_rmse", "test_mae", "test_r2", "cv_rmse_mean", "cv_rmse_std",
                                   "test_rmse_stderr", "trivial_test_rmse"}
    assert result.n_test == pytest.approx(0.25 * 442, abs=1) and result.n_train + result.n_test == 442
    assert {"residuals.png", "validation.json"} <= set(result.artifacts)
    assert result.model_uri.startswith("models:/m-")  # a logged model, linked to the run
    assert tracker.get_model_version("diabetes-ridge", 1)["source"] == result.model_uri
    assert result.validation["passed"] is True
    stored = tracker.get_run(result.run_id)
    assert stored.params["estimator"] == "ridge" and stored.params["seed"] == "3"
    assert stored.params["primary_metric"] == "rmse"
    assert "pipeline.primary_metric" not in stored.tags  # a tag never repeats a param
    assert stored.params["alpha"] == "1.0" and "params.alpha" not in stored.params  # hyperparameters by name
    assert stored.metrics == pytest.approx(result.metrics)  # the model's metrics, no stage timings
    # What differs first: the role in the name, the outcome in the description.
    assert stored.run_name == "baseline ridge sklearn:diabetes target"
    note = stored.tags["mlflow.note.content"]
    assert note.startswith("CHAMPION: test_rmse ") and "ridge regression of target on sklearn:diabetes" in note
    assert [s.status for s in result.stages] == [StageStatus.COMPLETED] * 6


def test_validation_errors_fail_the_run_with_the_findings(tracker, settings):
    # A missing label makes the column float, which reads as regression: say the task explicitly.
    result = run(tracker, settings, dataset="broken", target="y", task="classification",
                 estimator="logistic_regression", model_name="broken-y")
    assert result.status is PipelineStatus.FAILED
    assert result.failed_stage == "data_validation"
    assert "data validation failed" in result.error and "missing" in result.error
    assert result.validation["passed"] is False and result.validation["summary"]["error"] >= 1
    assert [s.status for s in result.stages[1:]] == [StageStatus.SKIPPED] * 5
    assert result.model_version is None and result.promotion is None
    stored = tracker.get_run(result.run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.tags["nba_mcp.error"] == result.error and "data validation failed" in stored.tags["mlflow.note.content"]
    assert stored.tags["mlflow.note.content"].startswith("STOPPED (data_validation): ")
    assert stored.run_name == "stopped logistic_regression broken y"
    assert "validation.json" in result.artifacts
    with pytest.raises(NotFoundError):
        tracker.get_model_version("broken-y", 1)


def test_cancelled_standard_run_registers_nothing(tracker, settings):
    progress = []
    result = run_standard_pipeline(
        StandardPipelineRequest(dataset="sklearn:iris", target="target", model_name="cancelled-iris"),
        settings=settings, tracker=tracker,
        should_stop=lambda: ("data_preparation", "COMPLETED") in progress,
        on_stage=lambda stage, index, total, status: progress.append((stage, status)),
    )
    assert result.status is PipelineStatus.CANCELLED
    stored = tracker.get_run(result.run_id)
    assert stored.status is RunStatus.KILLED and stored.run_name == "stopped random_forest sklearn:iris target"
    assert stored.tags["mlflow.note.content"].startswith("STOPPED (cancelled): ")
    assert result.model_version is None
    assert progress[-1] == ("model_deployment", "SKIPPED")


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (dict(dataset="../../etc/passwd"), InvalidRequestError, "is not allowed"),
        (dict(dataset="/etc/passwd"), InvalidRequestError, "is not allowed"),
        (dict(dataset="../data/nba_logreg.csv"), InvalidRequestError, "is not allowed"),
        (dict(dataset="no_such_data"), NotFoundError, "not found"),
        (dict(target="nope"), InvalidRequestError, "target names unknown columns: 'nope'"),
        (dict(drop_columns=["Nmae"]), InvalidRequestError, "drop names unknown columns: 'Nmae'"),
        (dict(split={"kind": "group", "column": "Nmae"}), InvalidRequestError, "split.column 'Nmae' is not a column"),
        (dict(split={"test_size": 0}), InvalidRequestError, "split.test_size must be > 0 for a pipeline"),
        (dict(split={"kind": "group", "column": "Name"}, features=["PTS", "Name"]), InvalidRequestError,
         "must not include the split column 'Name'"),
        (dict(features=["PTS", "TARGET_5Yrs"]), InvalidRequestError, "must not include the target"),
        (dict(estimator="os.system"), pydantic.ValidationError, "estimator.*\n  Input should be 'random_forest'"),
        (dict(estimator="ridge"), InvalidRequestError, "does not support task 'classification'"),
        (dict(params={"n_estimatorz": 5}), InvalidRequestError, "unknown hyperparameter 'n_estimatorz'"),
        (dict(primary_metric="rmse"), InvalidRequestError, "primary_metric for classification must be one of"),
        (dict(schema="../secrets"), InvalidRequestError, "schema name must match"),
        (dict(schema="no_such_schema"), NotFoundError, "schema 'no_such_schema' not found"),
        (dict(model_name="bad name!"), InvalidRequestError, "model_name must be"),
    ],
)
def test_request_mistakes_raise_before_any_run_is_created(tracker, settings, fields, error, message):
    request = {"dataset": "nba_logreg", "target": "TARGET_5Yrs", "drop_columns": ["Name"], **fields}
    before = run_count(tracker)
    with pytest.raises(error, match=message):
        run(tracker, settings, **request)
    assert run_count(tracker) == before



@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (dict(target="label", drop_columns=["id"]), (["x", "z"], "classification", "roc_auc", "toy-label")),
        (dict(target="x", features=["z", "z"], model_name="m1"), (["z"], "regression", "rmse", "m1")),
    ],
)
def test_plan_pipeline_settles_the_run_from_the_data_alone(fields, expected):
    frame = pd.DataFrame({"id": range(8), "x": [0.5, 1, 2, 3, 4, 5, 6, 7.5], "z": [1] * 8, "label": ["a", "b"] * 4})
    plan = plan_pipeline(StandardPipelineRequest(dataset="sub/toy.csv", **fields), frame)
    assert (plan.features, plan.task, plan.primary_metric, plan.model_name) == expected

# --- predictions --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rookie_champion(tracker, settings):
    result = run(tracker, settings, dataset="nba_logreg", target="TARGET_5Yrs", drop_columns=["Name"],
                 params=SMALL_FOREST, model_name="rookies-predict")
    assert result.promotion.promoted
    return result


@pytest.mark.parametrize("reference", ["champion", 1, "1"])
def test_predict_from_raw_columns_by_alias_or_version(tracker, rookie_champion, reference):
    rows = [ROOKIE_ROW, {**ROOKIE_ROW, "PTS": 25.0, "GP": 80, "MIN": 36.0, "extra": "ignored"}]
    predictions = predict(tracker, "rookies-predict", reference, rows)
    assert len(predictions) == 2 and set(predictions) <= {0, 1}
    probabilities = predict_proba(tracker, "rookies-predict", reference, rows)
    assert [sorted(p) for p in probabilities] == [["0", "1"]] * 2
    assert all(sum(p.values()) == pytest.approx(1.0) for p in probabilities)
    assert probabilities[1]["1"] > probabilities[0]["1"]  # a starter outlasts a bench rookie


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{k: v for k, v in ROOKIE_ROW.items() if k not in ("PTS", "AST")}], "row 0 is missing required columns for 'rookies-predict': PTS, AST"),
        ([ROOKIE_ROW, {"GP": 1}], "row 1 is missing required columns"),
        ([], "rows must be a list of 1 to 10000 objects, got 0"),
        ([["not", "a", "dict"]], "rows must be objects"),
        ([{**ROOKIE_ROW, "PTS": "lots"}], r"rows\[0\]\.PTS = 'lots': expected a number"),
    ],
)
def test_bad_rows_are_refused_naming_the_problem(tracker, rookie_champion, rows, message):
    with pytest.raises(InvalidRequestError, match=message):
        predict(tracker, "rookies-predict", "champion", rows)


def test_predict_proba_is_refused_for_a_regressor(tracker, settings):
    run(tracker, settings, dataset="sklearn:diabetes", target="target", estimator="ridge", model_name="no-proba")
    with pytest.raises(InvalidRequestError, match="does not give class probabilities"):
        predict_proba(tracker, "no-proba", "champion", [{"age": 0.0}])


# --- mock mode ---------------------------------------------------------------------------------
def test_standard_pipeline_in_mock_mode(settings):
    tracker = get_mlflow_tracker("mock_pipeline", mock_mode=True, settings=settings)
    result = run(tracker, settings, dataset="sklearn:iris", target="target", estimator="random_forest",
                 params=SMALL_FOREST, model_name="iris")
    assert result.status is PipelineStatus.COMPLETED
    assert result.primary_metric == "accuracy"  # multiclass default
    assert set(result.metrics) == {"test_accuracy", "test_f1", "test_roc_auc", "test_log_loss", "cv_accuracy_mean",
                                   "cv_accuracy_std", "test_accuracy_stderr", "trivial_test_accuracy"}
    # Iris is easy: a perfect holdout roc_auc is flagged; the version is registered, not promoted.
    assert [w.code for w in result.warnings] == ["near_perfect_score"] and result.metrics["test_roc_auc"] >= 0.99
    assert not result.promotion.promoted and result.model_version == 1
    assert "confusion_matrix.png" in result.artifacts
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
    assert predict(tracker, "iris", 1, [row]) == [0]


def test_predict_accepts_nulls_for_numeric_columns(tracker, rookie_champion):
    rows = [{**ROOKIE_ROW, "3P%": None, "FT%": None}, {**ROOKIE_ROW, "3P%": None}]
    assert len(predict(tracker, "rookies-predict", "champion", rows)) == 2


def test_a_long_stop_keeps_its_fix_whole_in_an_artifact_and_the_description_says_where():
    from datetime import datetime, timezone

    from mcp_server.training_pipeline._run_labels import MAX_DESCRIPTION, STOPPED_ARTIFACT, outcome_description

    columns = " ".join(f"column_{i:03d}" for i in range(400))
    error = f"stage data_validation failed: InvalidRequestError: leaking columns {columns}. Fix: drop=[{columns}]"
    ended = PipelineRun(run_id="r", pipeline_name="p", status=PipelineStatus.FAILED,
                        start_time=datetime.now(timezone.utc), error=error, failed_stage="data_validation")
    description, whole = outcome_description(ended, primary="rmse", note="random_forest regression.", warnings=[],
                                             promotion=None)
    assert description.startswith("STOPPED (data_validation): leaking columns column_000")
    assert len(description) <= MAX_DESCRIPTION and description.endswith(f"(whole text: artifact {STOPPED_ARTIFACT})")
    kept = description.removesuffix(f" … (whole text: artifact {STOPPED_ARTIFACT})")
    assert whole.startswith(kept) and whole[len(kept)] == " "  # cut between words, never inside one
    assert whole.endswith(f"Fix: drop=[{columns}] — random_forest regression.")
    short, none = outcome_description(ended.model_copy(update={"error": "stage x failed: ValueError: bad. Fix: drop=[a]"}),
                                      primary="rmse", note="n.", warnings=[], promotion=None)
    assert short == "STOPPED (data_validation): bad. Fix: drop=[a] — n." and none is None
