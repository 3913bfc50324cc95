"""The champion is a claim, and claims are checked: frames built to fool the server.

- coarse features repeat with both labels: the old de-duplication (on the chosen features and the
  label) kept mostly the opposite label and inverted the model; full-row duplicates drop nothing here;
- a model that does not beat a trivial one (or ranks below chance) is flagged ``below_baseline``
  and not promoted, in a pipeline (holdout) and in a search (cross-validation);
- targets that cannot be right (dates, identifiers, free text, a class per row) are refused at plan
  time, before any work;
- a pipeline stopped by the leak screen is a FAILED job, not a successful one.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning import HyperparameterTuner
from mcp_server.jobs import JobState
from mcp_server.mlflow_integration import MLflowExperimentTracker
from mcp_server.training_pipeline import StandardPipelineRequest, plan_pipeline, run_standard_pipeline
from mcp_server.training_pipeline._standard_stages import drop_duplicate_records
from tests._leaky_frames import coarse_games, inverted_frame, noise_frame
from tests.support import isolated_settings, template_db  # noqa: F401

@pytest.fixture(scope="module")
def settings(tmp_path_factory, template_db):
    data = tmp_path_factory.mktemp("data")
    coarse_games().to_csv(data / "coarse.csv", index=False)
    noise_frame().to_csv(data / "noise.csv", index=False)
    inverted_frame().to_csv(data / "inverted.csv", index=False)
    frame = noise_frame(600)
    pd.concat([frame, frame.sample(120, random_state=0)]).to_csv(data / "repeated.csv", index=False)
    targets = noise_frame(400).assign(
        when=[str(pd.Timestamp("2024-01-01") + pd.Timedelta(days=i))[:10] for i in range(400)],
        row_id=[f"r{i:04d}" for i in range(400)],
        comment=[f"scored {i % 7} points and grabbed {i % 5} rebounds" for i in range(400)],
        bucket=[i % 150 for i in range(400)], label=[f"class {i % 150}" for i in range(400)])
    targets.to_csv(data / "targets.csv", index=False)
    return isolated_settings(tmp_path_factory.mktemp("home"), template_db, data_dirs=[data])


@pytest.fixture(scope="module")
def tracker(settings):
    tracker = MLflowExperimentTracker("champion_honest", settings.tracking_uri, settings=settings)
    yield tracker
    tracker.close()


def run(settings, tracker, **fields):
    return run_standard_pipeline(StandardPipelineRequest(**fields), settings=settings, tracker=tracker)


# --- duplicates --------------------------------------------------------------------------------------
def test_coarse_features_keep_every_game_and_the_model_beats_the_baseline(settings, tracker):
    frame = coarse_games()
    features = ["HOME", "OPP", "GAME_NO"]
    # The trap: most rows repeat another row's features *and* label.
    assert frame.duplicated(subset=[*features, "WL"]).mean() > 0.5
    result = run(settings, tracker, dataset="coarse", target="WL", features=features, estimator="logistic_regression",
                 split={"kind": "time", "column": "DATE"}, model_name="coarse")
    assert result.duplicates_dropped == 0
    assert result.n_train + result.n_test == len(frame)
    assert result.metrics["test_roc_auc"] > 0.55
    assert result.baseline.score == pytest.approx(0.5) and result.baseline.beaten
    assert "below_baseline" not in [w.code for w in result.warnings]


def test_only_full_row_duplicates_leave_and_never_because_of_the_holdout():
    train = pd.DataFrame({"id": [1, 2, 2, 3], "x": [0.0, 1.0, 1.0, 1.0], "y": [0, 1, 1, 1]})
    test = pd.DataFrame({"id": [3, 4, 4, 5], "x": [1.0, 0.0, 0.0, 0.0], "y": [1, 0, 0, 0]}, index=[10, 11, 12, 13])
    kept_train, kept_test, dropped = drop_duplicate_records(train, test)
    assert list(kept_train["id"]) == [1, 2, 3]  # id 3 stays in training although the holdout repeats it
    assert list(kept_test["id"]) == [4, 5]  # the holdout's copy of a training record, and its own repeat, leave
    assert dropped == 3


def test_a_job_dropping_many_duplicates_says_so(settings, tracker):
    result = run(settings, tracker, dataset="repeated", target="y", estimator="logistic_regression",
                 model_name="repeated", promote=False)
    assert result.duplicates_dropped == 120
    found = [w for w in result.warnings if w.code == "duplicate_rows"]
    assert found and "120 of the 720" in found[0].message


# --- baselines -----------------------------------------------------------------------------------------
def test_a_model_that_does_not_beat_the_trivial_one_is_flagged_and_not_promoted(settings, tracker):
    result = run(settings, tracker, dataset="noise", target="y", estimator="random_forest",
                 params={"n_estimators": 30}, model_name="noise")
    codes = [w.code for w in result.warnings]
    assert "below_baseline" in codes, result.metrics
    assert not result.baseline.beaten and result.baseline.gain_low <= 0
    assert result.baseline.rows == result.n_test
    assert not result.promotion.promoted and "below_baseline" in result.promotion.reason
    stored = tracker.get_run(result.run_id)
    assert stored.metrics["trivial_test_roc_auc"] == pytest.approx(0.5)
    assert stored.metrics["test_roc_auc_stderr"] > 0


def test_a_test_score_below_chance_is_always_flagged(settings, tracker):
    result = run(settings, tracker, dataset="inverted", target="y", estimator="logistic_regression",
                 split={"kind": "time", "column": "t", "test_size": 0.2}, model_name="inverted", cv_folds=None)
    assert result.metrics["test_roc_auc"] < 0.5
    flagged = [w for w in result.warnings if w.code == "below_baseline"]
    assert flagged and "below chance" in flagged[0].message
    assert not result.promotion.promoted


def test_a_search_that_does_not_beat_the_trivial_model_is_flagged(settings):
    frame = noise_frame()
    result = HyperparameterTuner(enable_mlflow=False, settings=settings).tune(
        estimator="logistic_regression", X=frame[["a", "b", "c"]], y=frame["y"], scoring="roc_auc",
        strategy="random", max_trials=3, cv_folds=4, seed=0)
    assert result.baseline_score == pytest.approx(0.5)
    assert "below_baseline" in [w.code for w in result.warnings]


def test_a_search_with_signal_is_not_flagged(settings):
    frame = inverted_frame().iloc[:900]  # the first period only: x predicts y
    result = HyperparameterTuner(enable_mlflow=False, settings=settings).tune(
        estimator="logistic_regression", X=frame[["x", "z"]], y=frame["y"], scoring="roc_auc",
        strategy="random", max_trials=3, cv_folds=4, seed=0)
    assert result.best_score > 0.8
    assert "below_baseline" not in [w.code for w in result.warnings]


# --- targets refused before any work ----------------------------------------------------------------------
@pytest.mark.parametrize(("target", "fields", "said"), [
    ("when", {}, "holds dates"),
    ("row_id", {}, "is an identifier"),
    ("comment", {}, "free text"),
    ("label", {}, "150 classes"),
    ("bucket", {"task": "classification"}, "task='regression'"),
])
def test_targets_that_cannot_be_right_are_refused_at_plan_time(settings, target, fields, said):
    frame = pd.read_csv(settings.data_dirs[0] / "targets.csv")
    started = time.perf_counter()
    with pytest.raises(InvalidRequestError, match=said):
        plan_pipeline(StandardPipelineRequest(dataset="targets", target=target, **fields), frame, settings=settings)
    assert time.perf_counter() - started < 1.0


def test_a_date_target_is_refused_by_the_search_plan_too(settings):
    from mcp_server.hyperparameter_tuning import TuneRequest, plan_search

    frame = pd.read_csv(settings.data_dirs[0] / "targets.csv")
    with pytest.raises(InvalidRequestError, match="holds dates"):
        plan_search(TuneRequest(dataset="targets", target="when"), frame[["a", "b"]], frame["when"],
                    settings=settings)


# --- a stopped pipeline is a failed job ---------------------------------------------------------------
def test_a_pipeline_stopped_by_the_leak_screen_ends_its_job_failed(settings, tracker):
    from tools.pipelines import pipeline_work
    from tools.app_state import AppState

    app = AppState(settings)
    try:
        request = StandardPipelineRequest(dataset="coarse", target="WL", estimator="logistic_regression",
                                          model_name="stopped")  # GAME_ID and DATE among the features
        checked = plan_pipeline(request, pd.read_csv(settings.data_dirs[0] / "coarse.csv"), settings=settings)
        job_id = app.jobs.submit("pipeline", pipeline_work(app, request, checked), {})
        snapshot = app.jobs.wait(job_id, timeout=120)
        assert snapshot.state is JobState.FAILED
        assert "the pipeline stopped: stage data_validation failed" in snapshot.error and "Fix: drop=" in snapshot.error
        assert snapshot.result["status"] == "FAILED" and snapshot.result["failed_stage"] == "data_validation"
    finally:
        app.close()


# --- no winner on holdout noise ----------------------------------------------------------------------
def test_a_challenger_better_only_within_the_holdout_noise_does_not_replace_the_champion(settings, tracker):
    from mcp_server.training_pipeline import promote_model

    fields = dict(dataset="sklearn:diabetes", target="target", model_name="noisy-gain")
    first = run(settings, tracker, **fields, estimator="random_forest", params={"n_estimators": 20, "max_depth": 2})
    second = run(settings, tracker, **fields, estimator="ridge")
    assert first.promotion.promoted
    assert second.metrics["test_rmse"] < first.metrics["test_rmse"]  # better on the plain value ...
    assert not second.promotion.promoted  # ... but not beyond the noise of 89 rows, and it says so with the figures
    assert "beyond the holdout's noise (paired bootstrap on the same 89 holdout rows" in second.promotion.reason
    assert tracker.get_model_version("noisy-gain", "champion")["version"] == first.model_version
    # promote_model has only the recorded figures: the same verdict from both runs' standard errors.
    again = promote_model(tracker, "noisy-gain", second.model_version)
    assert not again.promoted and "standard errors of both test scores" in again.reason


@pytest.mark.parametrize(("new", "old", "wins", "said"), [
    # lower is better (rmse): a gain of 0.1 against standard errors of 0.2 each is noise
    (dict(test=2.0, test_stderr=0.2), dict(test=2.1, test_stderr=0.2), False, "noise"),
    (dict(test=1.0, test_stderr=0.05), dict(test=2.0, test_stderr=0.05), True, "beyond the noise"),
    # far better on the holdout, but worse in cross-validation beyond the folds' spread
    (dict(test=1.0, test_stderr=0.05, cv_mean=2.5, cv_std=0.1), dict(test=2.0, test_stderr=0.05, cv_mean=2.0, cv_std=0.1),
     False, "worse in cross-validation"),
    (dict(test=1.0), dict(test=2.0), True, "plain comparison"),  # runs of earlier releases: no recorded noise
])
def test_the_noise_rule(new, old, wins, said):
    from mcp_server.training_pipeline._evidence import Evidence, beats_beyond_noise

    won, why = beats_beyond_noise(Evidence(**new), Evidence(**old), higher_is_better=False, paired=None,
                                  old_name="champion v1")
    assert won is wins and said in why


def test_a_holdout_judged_too_often_is_flagged(settings, tracker):
    strict = settings.model_copy(update={"holdout_reuse_limit": 2})
    codes = [[w.code for w in run(strict, tracker, dataset="coarse", target="WL", features=["HOME", "OPP"],
                                  estimator="logistic_regression", split={"kind": "time", "column": "DATE"},
                                  model_name="reused", promote=False, cv_folds=None).warnings]
             for _ in range(3)]
    assert ["holdout_reused" in c for c in codes] == [False, False, True]
