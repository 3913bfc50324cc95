"""Leak checks: the columns that fool models are named with the drop to make, clean data stays
clean, and the screen's cost is bounded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from mcp_server.data_validation_pipeline import DataValidationPipeline
from mcp_server.data_validation_pipeline._target_leaks import leak_findings
from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation import apply_leak_check, leak_errors, screen_features
from tests._leaky_frames import SHOOTING_COLUMNS, player_seasons, read_game_log, shooting_log

LEAK_RULES = {"identifier_column", "datetime_column", "entity_column", "target_copy", "target_leak", "pair_leak",
              "linear_leak"}


def _by_rule(result) -> dict[str, list]:
    found: dict[str, list] = {}
    for issue in result.issues:
        found.setdefault(issue.rule, []).append(issue)
    return found


def test_game_log_index_date_and_scores_are_named_with_the_drop(tmp_path):
    games = read_game_log(tmp_path)
    result = DataValidationPipeline().validate(games, "games", target="WL")
    found = _by_rule(result)
    assert [(i.column, i.severity, i.drop) for i in found["identifier_column"]] == [("Unnamed: 0", "warning", ["Unnamed: 0"])]
    assert [(i.column, i.drop) for i in found["datetime_column"]] == [("Date", ["Date"])]
    assert "split={'kind': 'time', 'column': 'Date'}" in found["datetime_column"][0].message
    (pair,) = found["pair_leak"]
    assert pair.severity == "error" and set(pair.drop) == {"PTS", "OPP_PTS"} and pair.score >= 0.99
    assert "alone predicts 'WL'" in pair.message
    assert [(i.column, i.drop) for i in found["entity_column"]] == [("GAME_ID", ["GAME_ID"])]  # each game twice
    assert not result.passed
    assert result.suggested_drop == ["Unnamed: 0", "GAME_ID", "Date", "PTS", "OPP_PTS"]
    # The box score alone is not a leak: nothing else is flagged.
    assert not {i.column for i in result.issues if i.rule in LEAK_RULES} - {"Unnamed: 0", "GAME_ID", "Date", "PTS"}


def test_features_in_use_make_identifiers_and_dates_errors(tmp_path):
    games = read_game_log(tmp_path)
    features = [c for c in games.columns if c not in ("WL", "PTS", "OPP_PTS")]
    result = DataValidationPipeline().validate(games, "games", target="WL", features=features)
    assert {(i.rule, i.column, i.severity) for i in result.errors} == {
        ("identifier_column", "Unnamed: 0", "error"), ("datetime_column", "Date", "error"),
        ("entity_column", "GAME_ID", "error")}
    clean = [c for c in features if c not in ("Unnamed: 0", "Date", "GAME_ID")]
    assert DataValidationPipeline().validate(games, "games", target="WL", features=clean).passed


@pytest.mark.parametrize(
    ("column", "values", "rule"),
    [
        ("record_id", lambda n, y, rng: np.cumsum(rng.integers(1, 5, n)), "identifier_column"),
        ("player", lambda n, y, rng: [f"player {i}" for i in range(n)], "identifier_column"),
        ("outcome", lambda n, y, rng: np.where(y == 1, "won", "lost"), "target_copy"),
        ("margin", lambda n, y, rng: np.where(y == 1, 1, -1) * rng.uniform(1, 20, n), "target_leak"),
        ("next_label", lambda n, y, rng: y * 10 + rng.normal(0, 0.5, n), "target_leak"),
    ],
)
def test_each_kind_of_leak_is_caught_by_name(column, values, rule):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (frame["a"] + rng.normal(size=n) > 0).astype(int)
    frame[column] = values(n, y.to_numpy(), rng)
    frame["y"] = y
    result = DataValidationPipeline().validate(frame, "t", target="y")
    assert [i.column for i in result.find(rule)] == [column]
    assert result.find(rule)[0].drop == [column]
    assert not [i for i in result.issues if i.rule in LEAK_RULES and i.column != column]


def test_regression_leaks_shifted_target_difference_and_derived_columns():
    rng = np.random.default_rng(1)
    n = 500
    frame = pd.DataFrame({"minutes": rng.uniform(5, 40, n), "games": rng.integers(1, 82, n)})
    frame["made"] = rng.normal(300, 80, n)
    frame["missed"] = rng.normal(300, 80, n)
    frame["attempts"] = frame["made"] + frame["missed"]  # derived, not a leak of the target
    frame["pts"] = frame["made"] - 0.5 * frame["missed"] + rng.normal(0, 1, n)
    frame["pts_scaled"] = frame["pts"] * 2.5 + 3  # the target re-scaled: a linear leak
    result = DataValidationPipeline().validate(frame, "t", target="pts")
    assert [(i.column, i.drop) for i in result.find("target_leak")] == [("pts_scaled", ["pts_scaled"])]
    assert result.find("target_leak")[0].score >= 0.99
    derived = result.find("derived_column")
    assert len(derived) == 1 and "'attempts' = 'made' + 'missed'" in derived[0].message
    without = DataValidationPipeline().validate(frame.drop(columns=["pts_scaled"]), "t", target="pts")
    assert not without.find("target_leak")


def test_difference_of_two_columns_that_decides_a_class_is_a_pair_leak():
    rng = np.random.default_rng(2)
    n = 600
    frame = pd.DataFrame({"points_for": rng.normal(110, 12, n), "points_against": rng.normal(110, 12, n),
                          "rebounds": rng.normal(44, 5, n)})
    frame["won"] = (frame.points_for > frame.points_against).map({True: "W", False: "L"})
    (pair,) = DataValidationPipeline().validate(frame, "t", target="won").find("pair_leak")
    assert set(pair.drop) == {"points_for", "points_against"}
    assert "'points_for' - 'points_against'" in pair.message or "'points_against' - 'points_for'" in pair.message


@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris, load_wine, load_diabetes])
def test_clean_benchmark_data_raises_no_leak(loader):
    frame = loader(as_frame=True).frame
    result = DataValidationPipeline().validate(frame, loader.__name__, target="target")
    assert not [i for i in result.issues if i.rule in LEAK_RULES], [i.message for i in result.issues]


def test_entities_repeat_and_categories_do_not():
    seasons = player_seasons(n_players=200).assign(team=lambda f: [f"T{i % 30}" for i in range(len(f))])
    result = DataValidationPipeline().validate(seasons, "t", target="pts")
    assert [i.column for i in result.find("entity_column")] == ["player_name"]
    assert "split={'kind': 'group', 'column': 'player_name'}" in result.find("entity_column")[0].message


@pytest.mark.parametrize(("target", "task", "metric"), [("win", "classification", "roc_auc"),
                                                        ("margin", "regression", "r2")])
def test_shooting_counts_that_rebuild_both_scores_are_a_linear_leak(target, task, metric):
    games = shooting_log(target=target)
    honest = [c for c in games.columns if c not in (target, "row_id", "game_date")]
    # No single column or pair gives it away: the single-column and pair screens alone see nothing.
    assert leak_findings(games, target, honest, task=task, threshold=0.98, max_rows=10_000, linear=False) == []
    result = DataValidationPipeline().validate(games, "games", target=target)
    (leak,) = result.find("linear_leak")
    assert leak.severity == "error" and set(leak.drop) == set(SHOOTING_COLUMNS) and leak.score >= 0.999
    assert leak.message.startswith("columns ") and f"together predict {target!r}" in leak.message
    assert metric in leak.message and leak.message.endswith(f"drop them (drop=[{', '.join(map(repr, leak.drop))}])")
    assert not result.find("pair_leak") and not result.find("target_leak") and not result.passed
    assert result.suggested_drop == ["row_id", "game_date", *leak.drop]
    # Without the six counts the rest (home, rest days, game number, opponent) leaks nothing.
    rest = DataValidationPipeline().validate(games.drop(columns=SHOOTING_COLUMNS), "games", target=target)
    assert not [i for i in rest.issues if i.rule in LEAK_RULES - {"identifier_column", "datetime_column"}]


def test_a_partial_rebuild_is_strong_but_not_a_leak():
    games = shooting_log(target="win").drop(columns=["opp_ftm"])  # one count missing: the result is uncertain
    result = DataValidationPipeline().validate(games, "games", target="win")
    assert not result.find("linear_leak") and not result.find("pair_leak")


def test_a_linear_leak_stops_a_job_with_the_columns_to_drop():
    games = shooting_log(target="win")
    features = [c for c in games.columns if c not in ("win", "row_id", "game_date")]
    findings = leak_errors(screen_features(games, "win", features, dataset="games"))
    assert [(i.rule, set(i.drop)) for i in findings] == [("linear_leak", set(SHOOTING_COLUMNS))]
    with pytest.raises(InvalidRequestError) as stopped:
        apply_leak_check(findings, "stop")
    assert "data checks stopped this job before training" in str(stopped.value)
    assert f"Fix: drop={findings[0].drop!r}" in str(stopped.value)
    (warning,) = apply_leak_check(findings, "warn")
    assert warning.code == "leak_suspect" and set(warning.columns) == set(SHOOTING_COLUMNS)


def test_a_leak_one_pair_explains_is_not_named_again(tmp_path):
    games = read_game_log(tmp_path)  # PTS - OPP_PTS decides WL: a pair leak, and the linear model sees it too
    result = DataValidationPipeline().validate(games, "games", target="WL")
    assert [set(i.drop) for i in result.find("pair_leak")] == [{"PTS", "OPP_PTS"}]
    assert not result.find("linear_leak")


def test_wide_noise_with_a_real_signal_is_no_linear_leak():
    rng = np.random.default_rng(3)
    n, width = 2000, 250  # more columns than the linear screen takes: the most predictive alone go first
    frame = pd.DataFrame(rng.normal(size=(n, width)), columns=[f"x{i}" for i in range(width)])
    frame["y"] = (frame["x0"] + 0.5 * frame["x1"] + 0.2 * rng.normal(size=n) > 0).astype(int)
    assert not DataValidationPipeline().validate(frame, "wide", target="y").find("linear_leak")
    frame["y"] = (frame["x0"] + 0.5 * frame["x1"] - 0.7 * frame["x2"] > 0).astype(int)  # exactly a weighted sum
    (leak,) = DataValidationPipeline().validate(frame, "wide", target="y").find("linear_leak")
    assert set(leak.drop) == {"x0", "x1", "x2"}
