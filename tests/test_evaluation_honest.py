"""Honest evaluation end to end on a real sqlite MLflow store: tuning and a pipeline with the same
split never share a row, leaks stop jobs, flagged models are not promoted, predict says when it guesses."""

from __future__ import annotations

import pandas as pd
import pytest

from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation import SplitSpec, cv_test_gap, flag_codes
from mcp_server.hyperparameter_tuning import HyperparameterTuner
from mcp_server.mlflow_integration import MLflowExperimentTracker
from mcp_server.settings import Settings
from mcp_server.training_pipeline import (
    CHAMPION_ALIAS,
    StandardPipelineRequest,
    predict,
    prediction_warnings,
    promote_model,
    run_standard_pipeline,
)
from tests._leaky_frames import player_seasons, write_game_log

SMALL_SPACE = {"n_estimators": {"type": "int", "low": 20, "high": 40}, "max_depth": {"type": "int", "low": 2, "high": 6}}
GAME_DROP = ["Unnamed: 0", "GAME_ID", "PTS", "OPP_PTS"]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    write_game_log(folder)
    player_seasons().to_csv(folder / "seasons.csv", index=False)
    return folder


@pytest.fixture
def env(tmp_path, data, sqlite_uri):
    settings = Settings(data_home=tmp_path / "home", data_dirs=[data], tracking_uri=sqlite_uri)
    tracker = MLflowExperimentTracker("honest", settings=settings)
    yield settings, tracker
    tracker.close()


def _tune(tracker, frame, target, **kwargs):
    tuner = HyperparameterTuner(mlflow_tracker=tracker)
    return tuner.tune(estimator="random_forest", X=frame.drop(columns=[target]), y=frame[target],
                      space=SMALL_SPACE, max_trials=2, cv_folds=3, seed=1, **kwargs)


def test_tuning_then_pipeline_with_one_split_never_share_a_row(env, data):
    settings, tracker = env
    seasons = pd.read_csv(data / "seasons.csv")
    split = {"kind": "group", "column": "player_name"}
    tuned = _tune(tracker, seasons, "pts", split=split)
    run = run_standard_pipeline(
        StandardPipelineRequest(dataset="seasons", target="pts", split=split, params=tuned.best_params, cv_folds=3),
        settings=settings, tracker=tracker,
    )
    assert run.status.value == "COMPLETED", run.error
    searched = set(tuned.split.train_rows)
    tested = set(run.split.test_rows)
    assert tested and searched and tested.isdisjoint(searched)  # row ids: the CSV's row numbers
    assert tested <= set(tuned.split.test_rows)
    assert tuned.split.test_digest == run.split.test_digest
    # The same test rows are recorded on both runs, and the group column is never a feature.
    parent, pipeline_run = tracker.get_run(tuned.parent_run_id), tracker.get_run(run.run_id)
    assert parent.tags["evaluation.test_digest"] == pipeline_run.tags["evaluation.test_digest"]
    assert parent.params["split.kind"] == pipeline_run.params["split.kind"] == "group"
    model = tracker.load_model(run.model_uri)
    assert "player_name" not in list(model.feature_names_in_)
    assert {"test_rmse", "cv_rmse_mean", "cv_rmse_std"} <= set(run.metrics)


def test_random_split_on_repeated_players_is_flagged_and_group_split_is_not(env, data):
    settings, tracker = env
    base = {"dataset": "seasons", "target": "pts", "drop": ["player_name"], "cv_folds": 3, "model_name": "pts"}
    naive = run_standard_pipeline(StandardPipelineRequest(**base), settings=settings, tracker=tracker)
    codes = [w.code for w in naive.warnings]
    assert "entity_overlap" in codes and naive.flagged
    assert not naive.promotion.promoted and "flagged (entity_overlap" in naive.promotion.reason
    grouped = run_standard_pipeline(StandardPipelineRequest(**base, split={"kind": "group", "column": "player_name"}),
                                    settings=settings, tracker=tracker)
    assert grouped.warnings == [] and grouped.promotion.promoted
    # Random CV rewards recognizing players by their height and weight; by-player CV does not.
    assert naive.metrics["cv_rmse_mean"] < grouped.metrics["cv_rmse_mean"]


def test_leaks_stop_tuning_and_pipelines_with_the_columns_to_drop(env, data):
    settings, tracker = env
    games = pd.read_csv(data / "games.csv")
    with pytest.raises(InvalidRequestError) as caught:
        _tune(tracker, games, "WL")
    message = str(caught.value)
    assert "drop=['Unnamed: 0', 'GAME_ID', 'Date', 'PTS', 'OPP_PTS']" in message and "leak_check='warn'" in message
    assert not tracker.search_runs()  # stopped before any run

    stopped = run_standard_pipeline(StandardPipelineRequest(dataset="games", target="WL", model_name="wl"),
                                    settings=settings, tracker=tracker)
    assert stopped.status.value == "FAILED" and stopped.failed_stage == "data_validation"
    assert "drop=['Unnamed: 0', 'GAME_ID', 'Date', 'PTS', 'OPP_PTS']" in stopped.error and stopped.model_version is None

    fixed = run_standard_pipeline(
        StandardPipelineRequest(dataset="games", target="WL", model_name="wl", drop=GAME_DROP,
                                split={"kind": "time", "column": "Date"}),
        settings=settings, tracker=tracker)
    assert fixed.status.value == "COMPLETED" and fixed.warnings == [] and fixed.promotion.promoted
    assert 0.6 < fixed.metrics["test_roc_auc"] < 0.95


def test_flagged_model_is_registered_but_never_champion_unless_forced_with_a_reason(env, data):
    settings, tracker = env
    leaky = run_standard_pipeline(
        StandardPipelineRequest(dataset="games", target="WL", model_name="wl-leaky", leak_check="warn"),
        settings=settings, tracker=tracker)
    assert leaky.status.value == "COMPLETED" and leaky.model_version == 1
    codes = {w.code for w in leaky.warnings}
    assert {"leak_suspect", "entity_overlap"} <= codes
    assert leaky.metrics["test_roc_auc"] > 0.98 and "near_perfect_score" in codes
    assert not leaky.promotion.promoted
    version = tracker.get_model_version("wl-leaky", 1)
    assert set(flag_codes(version["tags"])) == codes and CHAMPION_ALIAS not in version["aliases"]
    run = tracker.get_run(leaky.run_id)
    assert run.tags["evaluation.flagged"] == "true" and "warnings.json" in tracker.list_artifacts(leaky.run_id)

    again = promote_model(tracker, "wl-leaky", 1)
    assert not again.promoted and "force=true and a reason" in again.reason
    with pytest.raises(InvalidRequestError, match="forcing it needs a reason"):
        promote_model(tracker, "wl-leaky", 1, force=True)
    forced = promote_model(tracker, "wl-leaky", 1, force=True, reason="demo of a leak, not for use")
    assert forced.promoted and forced.forced and forced.force_reason == "demo of a leak, not for use"
    tags = tracker.get_run(leaky.run_id).tags
    assert tags["promotion.forced"] == "true" and tags["promotion.force_reason"] == "demo of a leak, not for use"


def test_tuning_result_carries_split_and_warnings_to_mlflow(env, data):
    _, tracker = env
    games = pd.read_csv(data / "games.csv")
    result = _tune(tracker, games, "WL", leak_check="warn", split=SplitSpec(test_size=0.25))
    assert result.flagged and {"leak_suspect", "entity_overlap"} <= {w.code for w in result.warnings}
    assert result.split.n_test == len(result.split.test_rows) and result.split.n_train + result.split.n_test == len(games)
    parent = tracker.get_run(result.parent_run_id)
    assert parent.tags["evaluation.flagged"] == "true" and "leak_suspect" in parent.tags["evaluation.warnings"]
    assert parent.params["split.test_size"] == "0.25"
    assert {"split.json", "warnings.json"} <= set(tracker.list_artifacts(result.parent_run_id))
    no_holdout = _tune(tracker, games.drop(columns=[*GAME_DROP, "Date"]), "WL", split={"test_size": 0})
    assert [w.code for w in no_holdout.warnings] == ["no_holdout"]


def test_predict_scores_rows_outside_training_and_says_so(env, data):
    settings, tracker = env
    run = run_standard_pipeline(
        StandardPipelineRequest(dataset="games", target="WL", model_name="wl-p", drop=["Unnamed: 0", "PTS", "OPP_PTS", "Date"],
                                split={"kind": "group", "column": "GAME_ID"}, cv_folds=None),
        settings=settings, tracker=tracker)
    assert run.status.value == "COMPLETED", run.error
    usual = {"TEAM": "T01", "OPP": "T02", "HOME": 1, "FGM": 40, "FG3M": 12, "FTM": 17, "REB": 44, "AST": 24, "TOV": 14}
    odd = {**usual, "TEAM": "Seattle", "FGM": 400}
    assert len(predict(tracker, "wl-p", CHAMPION_ALIAS, [usual, odd])) == 2
    warnings = prediction_warnings(tracker, "wl-p", CHAMPION_ALIAS, [usual, odd])
    assert {(w.row, w.column) for w in warnings} == {(1, "TEAM"), (1, "FGM")}
    assert "never seen in training" in next(w.message for w in warnings if w.column == "TEAM")


@pytest.mark.parametrize(
    ("cv", "std", "test", "lower", "flagged"),
    [(0.90, 0.01, 0.70, False, True), (0.90, 0.01, 0.88, False, False), (0.90, 0.10, 0.70, False, False),
     (2.0, 0.1, 3.0, True, True), (2.0, 0.1, 2.2, True, False)],
)
def test_cv_test_gap_rule(cv, std, test, lower, flagged):
    assert bool(cv_test_gap("m", cv, std, test, lower_is_better=lower)) is flagged


def test_search_data_never_holds_the_split_column_or_the_holdout(data):
    from mcp_server.hyperparameter_tuning import prepare_search_data

    seasons = pd.read_csv(data / "seasons.csv")
    spec = SplitSpec(kind="group", column="player_name")
    prepared = prepare_search_data(seasons.drop(columns=["pts"]), seasons["pts"], spec, task="regression",
                                   n_folds=3, seed=0, leak_check="stop")
    assert "player_name" not in prepared.X.columns
    assert set(prepared.X.index).isdisjoint(prepared.split.test_rows)
    assert len(prepared.folds) == 3 and prepared.cv.startswith("GroupKFold(n_splits=3")
