"""TrainingPipeline against a real sqlite MLflow store: the seed's example, failures, retries,
cancellation, history and comparison (also from another process), and enable_mlflow=False."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.mlflow_integration import MLflowExperimentTracker, RunStatus
from mcp_server.settings import Settings
from mcp_server.training_pipeline import (
    PipelineStage,
    PipelineStatus,
    StageStatus,
    TrainingPipeline,
)
from tests.support import data_folder

EXPERIMENT = "training_pipeline_tests"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Settings]:
    root = tmp_path_factory.mktemp("pipeline-store")
    return f"sqlite:///{root / 'mlflow.db'}", Settings(data_home=root / "home")


@pytest.fixture(scope="module")
def tracker(store) -> MLflowExperimentTracker:
    uri, settings = store
    tracker = MLflowExperimentTracker(EXPERIMENT, uri, settings=settings)
    yield tracker
    tracker.close()


@pytest.fixture
def name(request) -> str:
    """A pipeline name of its own per test: history is per pipeline name."""
    return f"p-{request.node.name}"


# --- the seed's example, as written --------------------------------------------------------------
def seed_example_pipeline(tracker, name: str, n_estimators: int) -> TrainingPipeline:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    def validate_data(data, config):
        if data.empty or config["target"] not in data.columns:
            raise ValueError("no data or no target column")
        return {"rows": len(data), "missing_values": int(data.isna().sum().sum())}

    def prepare_data(data, config):
        X = data.drop(columns=["Name", config["target"]]).fillna(0)
        y = data[config["target"]]
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=config["test_size"], random_state=42, stratify=y
        )
        return {"X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test}

    def train_model(prepared_data, config):
        model = RandomForestClassifier(n_estimators=config["n_estimators"], random_state=42)
        model.fit(prepared_data["X_train"], prepared_data["y_train"])
        return model

    def evaluate_model(trained_model, prepared_data):
        X_test, y_test = prepared_data["X_test"], prepared_data["y_test"]
        predictions = trained_model.predict(X_test)
        return {
            "accuracy": accuracy_score(y_test, predictions),
            "f1_score": f1_score(y_test, predictions),
            "roc_auc": roc_auc_score(y_test, trained_model.predict_proba(X_test)[:, 1]),
        }

    pipeline = TrainingPipeline(
        name=name,
        config={"target": "TARGET_5Yrs", "test_size": 0.2, "n_estimators": n_estimators},
        mlflow_tracker=tracker,
        enable_mlflow=True,
    )
    pipeline.add_stage(PipelineStage.DATA_VALIDATION, validate_data)
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, prepare_data)
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, train_model)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, evaluate_model)
    return pipeline


def test_seed_example_runs_on_rookie_data_and_is_one_mlflow_run(tracker, name):
    pipeline = seed_example_pipeline(tracker, name, n_estimators=20)
    run = pipeline.execute(data=pd.read_csv(data_folder() / "nba_logreg.csv"))

    assert run.status is PipelineStatus.COMPLETED and run.error is None
    assert run.end_time >= run.start_time
    assert set(run.metrics) == {"accuracy", "f1_score", "roc_auc"}
    assert 0.6 < run.metrics["roc_auc"] < 0.95
    assert [s.status for s in run.stage_results] == [StageStatus.COMPLETED] * 4
    assert run.stages["data_validation"].output_summary == "{rows: 1340, missing_values: 11}"

    stored = tracker.get_run(run.run_id)
    assert stored.status is RunStatus.FINISHED
    assert stored.params == {"target": "TARGET_5Yrs", "test_size": "0.2", "n_estimators": "20"}
    assert stored.metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])
    stages = json.loads(stored.tags["nba_mcp.stages"])
    assert stages["model_training"]["status"] == "COMPLETED" and stages["model_training"]["seconds"] > 0
    assert set(stored.metrics) == set(run.metrics)  # stage timings are not metrics
    assert stored.tags["mlflow.note.content"].endswith("Completed: " + ", ".join(
        f"{k} {run.metrics[k]:.4g}" for k in sorted(run.metrics)) + ".")
    assert pipeline.get_run(run.run_id).status is PipelineStatus.COMPLETED

    # The model is an MLflow logged model of the run (models:/m-<id>), with a signature and an input
    # example, found by search_logged_models, and it predicts as trained.
    from mlflow import MlflowClient

    client = MlflowClient(tracker.tracking_uri)
    model_id = run.model_uri.removeprefix("models:/")
    assert model_id.startswith("m-")
    (logged,) = client.search_logged_models(experiment_ids=[stored.experiment_id])
    assert (logged.model_id, logged.source_run_id, logged.status.name) == (model_id, run.run_id, "READY")
    assert logged.params["n_estimators"] == "20"  # the run's params travel with the model
    assert [o.model_id for o in client.get_run(run.run_id).outputs.model_outputs] == [model_id]
    mlmodel = (Path(logged.artifact_location.removeprefix("file://")) / "MLmodel").read_text()
    assert "signature:" in mlmodel and "saved_input_example_info" in mlmodel and f"model_id: {model_id}" in mlmodel
    X_test = run.outputs["data_preparation"]["X_test"]
    reloaded = tracker.load_model(run.model_uri)
    assert (reloaded.predict(X_test) == run.output("model_training").predict(X_test)).all()


# --- failures, retries, skips --------------------------------------------------------------------
class Flaky:
    """Fails the first ``failures`` calls, then returns ``value``."""

    def __init__(self, failures: int, value=None) -> None:
        self.failures, self.value, self.calls = failures, value, 0

    def __call__(self, data):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"transient failure {self.calls}")
        return self.value


@pytest.mark.parametrize(
    ("failures", "retries", "expected_status", "expected_attempts"),
    [
        (0, 0, StageStatus.COMPLETED, 1),
        (2, 2, StageStatus.COMPLETED, 3),  # succeeds on the last allowed attempt
        (3, 2, StageStatus.FAILED, 3),  # retries exhausted
        (1, 0, StageStatus.FAILED, 1),  # no retries declared
    ],
)
def test_retries_then_success_or_failure_and_skipped_stages(tracker, name, failures, retries, expected_status, expected_attempts):
    flaky = Flaky(failures, value={"X": [1]})
    later = []
    pipeline = TrainingPipeline(name, {"k": 1}, tracker)
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, flaky, retries=retries, retry_delay=0.01)
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, lambda prepared_data: later.append(prepared_data))
    run = pipeline.execute(data="raw")

    stage = run.stages["data_preparation"]
    assert (stage.status, stage.attempts, flaky.calls) == (expected_status, expected_attempts, expected_attempts)
    stored = tracker.get_run(run.run_id)
    if expected_status is StageStatus.COMPLETED:
        assert run.status is PipelineStatus.COMPLETED and later == [{"X": [1]}]
        assert stored.status is RunStatus.FINISHED
    else:
        assert run.status is PipelineStatus.FAILED and later == []
        assert run.failed_stage == "data_preparation"
        assert run.error == f"stage data_preparation failed: RuntimeError: transient failure {expected_attempts}"
        assert run.stages["model_training"].status is StageStatus.SKIPPED
        assert stored.status is RunStatus.FAILED
        stages = json.loads(stored.tags["nba_mcp.stages"])
        assert stages["data_preparation"]["error"].startswith("RuntimeError")
        assert stages["model_training"]["status"] == "SKIPPED"
        read_back = pipeline.get_run(run.run_id)
        assert read_back.failed_stage == "data_preparation" and read_back.error == run.error
    assert json.loads(stored.tags["nba_mcp.stages"])["data_preparation"]["attempts"] == expected_attempts


def test_retry_waits_back_off_exponentially(tracker, name):
    flaky = Flaky(2, value=1)
    pipeline = TrainingPipeline(name, {}, tracker).add_stage(
        PipelineStage.DATA_PREPARATION, flaky, retries=2, retry_delay=0.1, retry_backoff=2.0
    )
    began = time.monotonic()
    run = pipeline.execute(data=None)
    assert run.status is PipelineStatus.COMPLETED
    assert time.monotonic() - began >= 0.3  # 0.1 + 0.2


def test_a_stage_needing_an_output_no_stage_produced_fails_without_retrying(tracker, name):
    calls = []
    pipeline = TrainingPipeline(name, {}, tracker)
    pipeline.add_stage("model_evaluation", lambda trained_model: calls.append(1), retries=3, retry_delay=5)
    run = pipeline.execute(data=None)
    assert run.status is PipelineStatus.FAILED and calls == []
    assert run.stages["model_evaluation"].attempts == 1
    assert "needs 'trained_model'" in run.error


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.add_stage("training", print), "stage must be one of"),
        (lambda p: p.add_stage(PipelineStage.MODEL_TRAINING, 42), "must be callable"),
        (lambda p: p.add_stage(PipelineStage.MODEL_TRAINING, print, retries=11), "retries must be between 0 and 10"),
        (lambda p: p.execute(data=None), "has no stages"),
        (lambda p: p.get_run_history(limit=0), "limit must be between 1 and 1000"),
    ],
)
def test_invalid_declarations_are_refused(call, message):
    pipeline = TrainingPipeline("declarations", {}, enable_mlflow=False)
    with pytest.raises(InvalidRequestError, match=message):
        call(pipeline)


def test_a_stage_cannot_be_declared_twice():
    pipeline = TrainingPipeline("twice", {}, enable_mlflow=False).add_stage("model_training", print)
    with pytest.raises(InvalidRequestError, match="already defined"):
        pipeline.add_stage(PipelineStage.MODEL_TRAINING, print)


def test_stages_run_in_canonical_order_with_outputs_passed_by_name(name):
    seen = {}
    pipeline = TrainingPipeline(name, {"scale": 3}, enable_mlflow=False)
    # Declared out of order on purpose.
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, lambda trained_model, features: {"score": trained_model + features})
    pipeline.add_stage(PipelineStage.FEATURE_ENGINEERING, lambda prepared_data: prepared_data * 10)
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, lambda features, config: features * config["scale"])
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, lambda data: data + 1)
    pipeline.add_stage(PipelineStage.MODEL_DEPLOYMENT, lambda **kwargs: seen.update(kwargs))
    run = pipeline.execute(data=1)
    assert run.metrics == {"score": 80.0}  # prepared 2, features 20, model 60, score 80
    assert seen["evaluation"] == seen["metrics"] == {"score": 80}
    assert seen["prepared_data"] == 2 and seen["config"] == {"scale": 3} and seen["tracker"] is None


# --- cancellation and progress -------------------------------------------------------------------
def test_cancellation_between_stages_ends_the_run_killed(tracker, name):
    events = []
    pipeline = TrainingPipeline(name, {}, tracker)
    pipeline.add_stage(PipelineStage.DATA_VALIDATION, lambda data: "ok")
    pipeline.add_stage(PipelineStage.DATA_PREPARATION, lambda data: "prepared")
    pipeline.add_stage(PipelineStage.MODEL_TRAINING, lambda prepared_data: pytest.fail("must not run"))
    stop_after_two = lambda: sum(e[3] == "COMPLETED" for e in events) >= 2  # noqa: E731
    run = pipeline.execute(data=None, should_stop=stop_after_two, on_stage=lambda *e: events.append(e))

    assert run.status is PipelineStatus.CANCELLED
    assert run.error == "cancelled before stage model_training"
    assert events == [
        ("data_validation", 1, 3, "RUNNING"), ("data_validation", 1, 3, "COMPLETED"),
        ("data_preparation", 2, 3, "RUNNING"), ("data_preparation", 2, 3, "COMPLETED"),
        ("model_training", 3, 3, "SKIPPED"),
    ]
    stored = tracker.get_run(run.run_id)
    assert stored.status is RunStatus.KILLED
    assert pipeline.get_run(run.run_id).status is PipelineStatus.CANCELLED
    assert stored.tags["mlflow.note.content"].endswith("Cancelled (cancelled before stage model_training).")


def test_cancellation_interrupts_a_retry_wait(tracker, name):
    flags = {"stop": False}

    def fail_and_ask_to_stop(data):
        flags["stop"] = True
        raise RuntimeError("down")

    pipeline = TrainingPipeline(name, {}, tracker).add_stage(
        PipelineStage.DATA_PREPARATION, fail_and_ask_to_stop, retries=5, retry_delay=30
    )
    began = time.monotonic()
    run = pipeline.execute(data=None, should_stop=lambda: flags["stop"])
    assert time.monotonic() - began < 5
    assert run.status is PipelineStatus.CANCELLED
    assert tracker.get_run(run.run_id).status is RunStatus.KILLED


def test_a_failing_progress_callback_does_not_break_the_run(name):
    def broken(*_):
        raise RuntimeError("client went away")

    run = TrainingPipeline(name, {}, enable_mlflow=False).add_stage("data_preparation", lambda: 1).execute(on_stage=broken)
    assert run.status is PipelineStatus.COMPLETED


# --- enable_mlflow=False ---------------------------------------------------------------------------
def test_disabled_mlflow_logs_nothing_and_keeps_local_history(tracker, name):
    before = len(tracker.search_runs(max_results=1000))
    pipeline = TrainingPipeline(name, {"alpha": 1}, tracker, enable_mlflow=False)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, lambda config: {"accuracy": 0.5 + config["alpha"] / 10})
    first = pipeline.execute()
    pipeline.update_config({"alpha": 3})
    second = pipeline.execute()

    assert len(tracker.search_runs(max_results=1000)) == before
    assert not first.tracked and first.model_uri is None
    assert [r.run_id for r in pipeline.get_run_history(limit=5)] == [second.run_id, first.run_id]
    comparison = pipeline.compare_runs([first.run_id, second.run_id])
    assert comparison["metrics"]["accuracy"]["diff"][second.run_id] == pytest.approx(0.2)
    assert comparison["params_differ"] == {"alpha": {first.run_id: "1", second.run_id: "3"}}
    with pytest.raises(NotFoundError):
        pipeline.get_run("nope")


# --- history and comparison from another process -------------------------------------------------
def test_history_and_comparison_are_read_from_mlflow_in_a_new_process(store, tracker, name):
    good = TrainingPipeline(name, {"depth": 2}, tracker)
    good.add_stage(PipelineStage.MODEL_EVALUATION, lambda config: {"accuracy": 0.6, "rmse": 2.0})
    first = good.execute()
    good.update_config({"depth": 4})
    second = good.execute()
    broken = TrainingPipeline(name, {"depth": 8}, tracker)
    broken.add_stage(PipelineStage.MODEL_TRAINING, Flaky(1))
    broken.add_stage(PipelineStage.MODEL_EVALUATION, lambda config: {"accuracy": 0.9})
    failed = broken.execute(data=None)
    tracker.flush()

    uri, settings = store
    script = textwrap.dedent(f"""
        import json, sys
        from mcp_server.mlflow_integration import MLflowExperimentTracker
        from mcp_server.settings import Settings
        from mcp_server.training_pipeline import TrainingPipeline
        tracker = MLflowExperimentTracker({EXPERIMENT!r}, {uri!r}, settings=Settings(data_home={str(settings.data_home)!r}))
        pipeline = TrainingPipeline({name!r}, mlflow_tracker=tracker)
        history = [run.to_dict() for run in pipeline.get_run_history(limit=10)]
        comparison = pipeline.compare_runs([{first.run_id!r}, {second.run_id!r}])
        json.dump({{"history": history, "comparison": comparison}}, sys.stdout)
    """)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=True)
    answer = json.loads(out.stdout)

    history = answer["history"]
    assert [r["run_id"] for r in history] == [failed.run_id, second.run_id, first.run_id]
    assert [r["status"] for r in history] == ["FAILED", "COMPLETED", "COMPLETED"]
    assert history[0]["failed_stage"] == "model_training"
    assert history[0]["stages"]["model_evaluation"]["status"] == "SKIPPED"
    assert history[0]["config"] == {"depth": 8}  # typed, not MLflow's strings
    assert history[1]["metrics"] == {"accuracy": 0.6, "rmse": 2.0}
    assert history[1]["stages"]["model_evaluation"]["attempts"] == 1
    metrics = answer["comparison"]["metrics"]
    assert metrics["accuracy"]["diff"][second.run_id] == 0.0
    assert answer["comparison"]["params_differ"] == {"depth": {first.run_id: "2", second.run_id: "4"}}


def test_compare_runs_reports_metric_differences(tracker, name):
    pipeline = TrainingPipeline(name, {"n": 1}, tracker)
    pipeline.add_stage(PipelineStage.MODEL_EVALUATION, lambda config: {"accuracy": 0.5 + 0.1 * config["n"]})
    a = pipeline.execute()
    pipeline.update_config({"n": 3})
    b = pipeline.execute()
    comparison = pipeline.compare_runs([a.run_id, b.run_id])
    assert comparison["metrics"]["accuracy"]["diff"][b.run_id] == pytest.approx(0.2)
    assert comparison["metrics"]["accuracy"]["best_run"] == b.run_id
    assert pipeline.get_current_config() == {"n": 3}
    assert pipeline.get_run(b.run_id).metrics == {"accuracy": pytest.approx(0.8)}
