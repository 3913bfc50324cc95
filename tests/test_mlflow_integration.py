"""Contract tests for the tracker, run against four backends: mock, a sqlite file, a real mlflow
server over sqlite, and a real mlflow server on PostgreSQL with proxied artifacts."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from mcp_server.error_handling import InvalidRequestError, NotFoundError, TrackingUnavailableError
from mcp_server.hyperparameter_tuning import MedianPruner
from mcp_server.mlflow_integration import (
    DatasetSource,
    MLflowExperimentTracker,
    RunStatus,
    get_mlflow_tracker,
)
from mcp_server.settings import Settings

BACKENDS = ["mock", "sqlite", "server", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def tracker(request, tmp_path):
    settings = Settings(data_home=tmp_path / "home")
    name = f"contract-{uuid.uuid4().hex[:8]}"
    if request.param == "mock":
        t = get_mlflow_tracker(name, mock_mode=True, settings=settings)
    elif request.param == "sqlite":
        t = MLflowExperimentTracker(name, f"sqlite:///{tmp_path / 'm.db'}", settings=settings)
    else:
        server = request.getfixturevalue("mlflow_server" if request.param == "server" else "postgres_mlflow_server")
        t = MLflowExperimentTracker(name, server.uri, settings=settings)
    yield t
    t.close()


def test_an_experiment_exists_only_once_something_is_logged_to_it(tracker):
    def names() -> set[str]:
        return {e["name"] for e in tracker.list_experiments(max_results=1000)}

    assert tracker.experiment_name not in names()
    assert tracker.search_runs() == [] and tracker.experiment_name not in names()  # reads create nothing
    with tracker.start_run("first"):
        tracker.log_metric("m", 1.0)
    assert tracker.experiment_name in names() and len(tracker.search_runs()) == 1


def test_run_lifecycle_params_metrics_tags(tracker):
    with tracker.start_run("baseline", tags={"team": "ml"}) as run_id:
        assert tracker.active_run_id == run_id
        tracker.log_params({"n_estimators": 100, "max_depth": 10})
        tracker.log_param("criterion", "gini")
        tracker.log_metric("accuracy", 0.92)
        tracker.log_metrics({"f1_score": 0.89, "loss": 0.3})
    assert tracker.active_run_id is None
    run = tracker.get_run(run_id)
    assert run.status is RunStatus.FINISHED
    assert run.run_name == "baseline"
    assert run.params == {"n_estimators": "100", "max_depth": "10", "criterion": "gini"}
    assert run.metrics == {"accuracy": 0.92, "f1_score": 0.89, "loss": 0.3}
    assert run.tags["team"] == "ml"
    assert run.start_time <= run.end_time and run.duration_seconds >= 0


def test_exception_ends_run_failed_and_propagates(tracker):
    with pytest.raises(ZeroDivisionError):
        with tracker.start_run("boom") as run_id:
            tracker.log_metric("partial", 1.0)
            1 / 0
    run = tracker.get_run(run_id)
    assert run.status is RunStatus.FAILED
    assert run.metrics["partial"] == 1.0
    assert "ZeroDivisionError" in run.tags["error"]


@pytest.mark.parametrize("status", [RunStatus.KILLED, "FAILED", "finished"])
def test_end_run_accepts_enum_or_string(tracker, status):
    run_id = tracker.create_run("explicit")
    tracker.end_run(status, run_id=run_id)
    assert tracker.get_run(run_id).status is RunStatus.parse(status)


def test_end_run_rejects_unknown_status(tracker):
    run_id = tracker.create_run("x")
    with pytest.raises(InvalidRequestError, match="status must be one of"):
        tracker.end_run("DONE", run_id=run_id)


def test_nested_runs_have_a_real_parent_link(tracker):
    with tracker.start_run("parent") as parent:
        with tracker.start_run("child", nested=True) as child:
            assert tracker.active_run_id == child
        assert tracker.active_run_id == parent
    assert tracker.get_run(child).parent_run_id == parent
    assert tracker.get_run(child).tags["mlflow.parentRunId"] == parent
    children = tracker.search_runs(f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [r.run_id for r in children] == [child]


def test_second_top_level_run_in_same_context_is_refused(tracker):
    with tracker.start_run("outer"):
        with pytest.raises(InvalidRequestError, match="nested=True"):
            with tracker.start_run("inner"):
                pass


def test_metric_history_keeps_steps(tracker):
    with tracker.start_run("curve") as run_id:
        for step, value in enumerate([0.5, 0.7, 0.9]):
            tracker.log_metric("val_auc", value, step=step)
    history = tracker.get_metric_history(run_id, "val_auc")
    assert [(p.step, p.value) for p in history] == [(0, 0.5), (1, 0.7), (2, 0.9)]
    assert tracker.get_run(run_id).metrics["val_auc"] == 0.9


def test_search_filter_order_and_paging(tracker):
    for depth, acc in [(5, 0.81), (10, 0.93), (15, 0.88)]:
        with tracker.start_run(f"d{depth}"):
            tracker.log_params({"max_depth": depth, "criterion": "gini" if depth < 15 else "entropy"})
            tracker.log_metric("accuracy", acc)
    best = tracker.search_runs("metrics.accuracy > 0.85", order_by=["metrics.accuracy DESC"])
    assert [r.run_name for r in best] == ["d10", "d15"]
    gini = tracker.search_runs("params.criterion = 'gini' AND metrics.accuracy < 0.9")
    assert [r.run_name for r in gini] == ["d5"]
    # Params compare as strings: lexicographic order puts "5" after "15" and "10".
    by_param = tracker.search_runs(order_by=["params.max_depth DESC"])
    assert [r.params["max_depth"] for r in by_param] == ["5", "15", "10"]
    page1, token = tracker.search_runs_page(max_results=2, order_by=["metrics.accuracy ASC"])
    page2, last = tracker.search_runs_page(max_results=2, order_by=["metrics.accuracy ASC"], page_token=token)
    assert [r.run_name for r in page1 + page2] == ["d5", "d15", "d10"] and last is None


def test_filter_syntax_errors_are_invalid_requests(tracker):
    with pytest.raises(InvalidRequestError):
        tracker.search_runs("metrics.accuracy > 0.9 OR params.a = 'b'")
    with pytest.raises(InvalidRequestError):
        tracker.search_runs("params.max_depth = 5")  # param values must be quoted strings


def test_compare_runs_structure_and_frame(tracker):
    ids = []
    for depth, acc, loss in [(5, 0.80, 0.50), (10, 0.90, 0.40)]:
        with tracker.start_run(f"d{depth}") as rid:
            tracker.log_params({"max_depth": depth, "criterion": "gini"})
            tracker.log_metrics({"accuracy": acc, "log_loss": loss})
        ids.append(rid)
    cmp = tracker.compare_runs(ids)
    assert cmp["metrics"]["accuracy"]["diff"][ids[1]] == pytest.approx(0.10)
    assert cmp["metrics"]["accuracy"]["diff"][ids[0]] == 0
    assert cmp["metrics"]["accuracy"]["best_run"] == ids[1]
    assert cmp["metrics"]["log_loss"]["best_run"] == ids[1]  # lower is better
    assert cmp["params_differ"] == {"max_depth": {ids[0]: "5", ids[1]: "10"}}
    assert cmp["params_same"] == {"criterion": "gini"}
    frame = tracker.compare_runs_frame(ids)
    assert list(frame.index) == ids and frame.loc[ids[1], "metrics.accuracy"] == 0.90


def test_record_run_in_background(tracker):
    with tracker.start_run("search") as parent:
        futures = [
            tracker.record_run(
                run_name=f"trial-{i}", params={"i": i}, metrics={"score": i / 10},
                metric_history={"fold_score": [0.1 * i, 0.2 * i]}, parent_run_id=parent, background=True,
            )
            for i in range(5)
        ]
        tracker.flush()
    ids = [f.result() for f in futures]
    children = tracker.search_runs(f"tags.`mlflow.parentRunId` = '{parent}'", order_by=["metrics.score ASC"])
    assert [r.run_id for r in children] == ids
    assert [p.step for p in tracker.get_metric_history(ids[3], "fold_score")] == [0, 1]


def test_artifacts(tracker, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    with tracker.start_run("art") as run_id:
        tracker.log_artifact(artifact)
        tracker.log_artifact(artifact, artifact_path="sub")
        tracker.log_dict({"a": 1}, "summary/result.json")
    assert {"notes.txt", "sub/notes.txt", "summary/result.json"} <= set(tracker.list_artifacts(run_id))


def test_model_log_register_alias_load(tracker):
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=["a", "b", "c"])
    y = (X["a"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    name = f"clf-{uuid.uuid4().hex[:6]}"
    with tracker.start_run("model") as run_id:
        uri = tracker.log_model(model, input_example=X.head(3))
        tracker.log_dataset(X.assign(y=y), name="toy", source=DatasetSource(kind="code", location="tests"),
                            context="evaluation", targets="y")
        (holdout,) = tracker.get_run(run_id).datasets
        tracker.log_metrics({"test_accuracy": 0.9}, model_id=uri.removeprefix("models:/"), dataset=holdout)
    version = tracker.register_model(uri, name, run_id=run_id, description="test_accuracy 0.9",
                                     model_description="Predicts y.")
    assert version == 1 and tracker.get_model_version(name, 1)["description"] == "test_accuracy 0.9"
    if not tracker.mock_mode:  # the links the MLflow UI reads: version on its logged model, model metrics
        from mlflow import MlflowClient

        client = MlflowClient(tracker.tracking_uri, registry_uri=tracker.tracking_uri)
        logged = client.get_logged_model(uri.removeprefix("models:/"))
        assert [(v["name"], str(v["version"])) for v in json.loads(logged.tags["mlflow.modelVersions"])] == [(name, "1")]
        (metric,) = logged.metrics
        assert (metric.key, metric.value, metric.dataset_name, metric.dataset_digest) == (
            "test_accuracy", 0.9, "toy", holdout.digest)
        assert client.get_registered_model(name).description == "Predicts y."
    tracker.set_model_alias(name, "champion", version)
    info = tracker.get_model_version(name, "champion")
    assert info["version"] == 1 and "champion" in info["aliases"]
    loaded = tracker.load_model(f"models:/{name}@champion")
    assert (loaded.predict(X) == model.predict(X)).all()
    with pytest.raises(NotFoundError):
        tracker.get_model_version(name, "challenger")


def test_unknown_run_is_not_found(tracker):
    with pytest.raises(NotFoundError):
        tracker.get_run(uuid.uuid4().hex)


def test_threads_log_to_their_own_runs(tracker):
    """8 threads x 50 metrics, each on its own current run: nothing lost, nothing crossed."""
    run_ids: dict[int, str] = {}

    def work(worker: int) -> None:
        with tracker.start_run(f"thread-{worker}") as run_id:
            run_ids[worker] = run_id
            for step in range(50):
                tracker.log_metric("value", worker * 1000 + step, step=step)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(run_ids.values())) == 8
    for worker, run_id in run_ids.items():
        history = tracker.get_metric_history(run_id, "value")
        assert [p.value for p in history] == [worker * 1000 + s for s in range(50)]


@pytest.mark.parametrize("mock", [True, False])
def test_seed_quick_start_runs_as_written(mock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")  # the file the seed logs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'quick.db'}")
    tracker = get_mlflow_tracker(experiment_name="nba_model_training", mock_mode=mock)
    with tracker.start_run("baseline_model") as run_id:
        tracker.log_params({"n_estimators": 100, "max_depth": 10, "learning_rate": 0.01})
        tracker.log_metric("accuracy", 0.92); tracker.log_metric("f1_score", 0.89)
        tracker.log_artifact("model.pkl")
    run = tracker.get_run(run_id)
    assert run.metrics == {"accuracy": 0.92, "f1_score": 0.89}
    assert "model.pkl" in tracker.list_artifacts(run_id)
    assert tracker.tracking_uri == ("memory://" if mock else f"sqlite:///{tmp_path / 'quick.db'}")


def test_sqlite_default_store_lives_under_data_home(tmp_path):
    settings = Settings(data_home=tmp_path / "home")
    tracker = MLflowExperimentTracker("defaults", settings=settings)
    assert tracker.tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert (tmp_path / "home" / "mlflow.db").exists()


def test_unreachable_server_fails_fast(tmp_path):
    from tests.support import free_port

    settings = Settings(data_home=tmp_path, tracking_timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="unreachable"):
        MLflowExperimentTracker("x", f"http://127.0.0.1:{free_port()}", settings=settings)
    assert time.monotonic() - started < 5


def test_reaper_ends_runs_of_dead_processes(tmp_path):
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'crash.db'}"
    settings = Settings(data_home=tmp_path)
    code = (
        "import os, sys\n"
        "from mcp_server.mlflow_integration import MLflowExperimentTracker\n"
        "from mcp_server.settings import Settings\n"
        f"t = MLflowExperimentTracker('crash', {uri!r}, settings=Settings(data_home={str(tmp_path)!r}))\n"
        "print(t.create_run('orphan'), flush=True)\n"
        "os._exit(9)\n"  # dies without ending its run, as SIGKILL would
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    orphan = out.stdout.strip().splitlines()[-1]
    tracker = MLflowExperimentTracker("crash", uri, settings=settings)
    live = tracker.create_run("mine")
    assert tracker.get_run(orphan).status is RunStatus.RUNNING
    assert tracker.reap_orphaned_runs() == [orphan]
    assert tracker.get_run(orphan).status is RunStatus.KILLED
    assert tracker.get_run(live).status is RunStatus.RUNNING


def test_runs_record_who_asked_and_through_what(tmp_path):
    import getpass

    from mcp_server import rbac
    from mcp_server.mlflow_integration import recording_as

    tracker = MLflowExperimentTracker("origin", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with tracker.start_run("library") as plain:
            pass
        with rbac.acting_as(rbac.Principal("carol", frozenset())):
            in_call = tracker.record_run(run_name="in-call", params={}, metrics={})
        with recording_as(user="ann", source="nba-mcp tune_hyperparameters"):
            # Written on the background writer thread: the origin is settled in the caller's.
            queued = tracker.record_run(run_name="job", params={}, metrics={}, background=True,
                                        tags={"mlflow.source.name": "mcp_server.hyperparameter_tuning"})
        tracker.flush()
        tags = {name: tracker.get_run(run_id).tags for name, run_id in
                (("plain", plain), ("in_call", in_call), ("job", queued.result()))}
    finally:
        tracker.close()
    assert (tags["plain"]["mlflow.user"], tags["plain"]["mlflow.source.name"]) == (getpass.getuser(), "mcp_server")
    assert tags["in_call"]["mlflow.user"] == "carol"
    assert (tags["job"]["mlflow.user"], tags["job"]["mlflow.source.name"]) == ("ann", "nba-mcp tune_hyperparameters")


def test_tag_values_are_never_python_reprs(tmp_path):
    tracker = MLflowExperimentTracker("reprs", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with tracker.start_run("r") as run_id:
            tracker.set_tags({"flag": True, "none": None, "items": ["a", 1], "once": "first"})
            tracker.set_tag("once", "second")  # the same key twice before a flush: the last value wins
            # Params read the same way: JSON literals, and a dataclass as its fields, never its repr.
            tracker.log_params({"bootstrap": False, "max_depth": None, "pruner": MedianPruner(n_startup_trials=2)})
        stored = tracker.get_run(run_id)
        tags, params = stored.tags, stored.params
    finally:
        tracker.close()
    assert (tags["flag"], tags["none"], tags["items"], tags["once"]) == ("true", "null", '["a", 1]', "second")
    assert (params["bootstrap"], params["max_depth"]) == ("false", "null")
    assert json.loads(params["pruner"]) == {"n_startup_trials": 2, "n_warmup_folds": 1}
