"""After ``nba-mcp demo``, the store reads as docs/tracking.md and docs/mlflow-ui.md say, through
MLflow's own API: on the demo's sqlite file, and on a real ``mlflow server`` serving that same store.

One demo run (a spawned stdio server, a tuning search and three pipeline runs) serves both checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import MlflowServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "nba-mcp-demo"
MODEL_NAME = "nba-raptor-predator_total"
# What a Python repr looks like: None/True/False, an object repr, a dict or list repr with quotes,
# pandas shapes, default object reprs.
REPR = re.compile(
    r"^(None|True|False)$|^[A-Z]\w*\(.*\)$|^\{'|^\['|^\{\w+: |DataFrame\(|Series\(|<[\w.]+ object at 0x"
)
MODEL_METRIC = re.compile(r"^(test_|cv_)")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("demo-home")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tools.cli", "demo", "--data-home", str(home), "--budget", "8"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home / "mlflow.db"


@pytest.fixture(scope="module", params=["sqlite", "mlflow-server"])
def client(request, demo_store, tmp_path_factory):
    from mlflow import MlflowClient

    uri = f"sqlite:///{demo_store}"
    if request.param == "sqlite":
        yield MlflowClient(uri, registry_uri=uri)
        return
    server = MlflowServer(tmp_path_factory.mktemp("demo-server"), backend_store_uri=uri)
    server.start()
    try:
        yield MlflowClient(server.uri, registry_uri=server.uri)
    finally:
        server.stop()


def _runs(client):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_kind: dict[str, list] = {}
    for run in runs:
        by_kind.setdefault(run.data.tags.get("nba_mcp.kind"), []).append(run)
    return experiment, runs, by_kind


def test_no_experiment_is_created_for_nothing(client):
    assert {e.name for e in client.search_experiments()} <= {"Default", EXPERIMENT}


def test_every_registered_version_is_a_logged_model_of_the_store(client):
    experiment, _, by_kind = _runs(client)
    logged = {m.model_id: m for m in client.search_logged_models([experiment.experiment_id])}
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 3  # naive (flagged), baseline, tuned
    for version in versions:
        # The database registry keeps the link in the source (its versions carry no model_id field).
        assert version.source.startswith("models:/m-")
        model_id = version.source.removeprefix("models:/")
        assert version.model_id in (None, model_id) and model_id in logged
        assert logged[model_id].source_run_id == version.run_id
        # Linked both ways, as the UI reads it: the version on its logged model, the model's metrics.
        links = json.loads(logged[model_id].tags["mlflow.modelVersions"])
        assert [(link["name"], str(link["version"])) for link in links] == [(MODEL_NAME, str(version.version))]
        measured_on = {m.key: m.dataset_name for m in logged[model_id].metrics or []}
        assert measured_on["test_rmse"] == "nba:raptor (holdout)" and measured_on["cv_rmse_mean"] == "nba:raptor"
        assert version.description.startswith("test_rmse ") and version.run_id in version.description
    assert "champion" in client.get_registered_model(MODEL_NAME).description
    pipelines = {r.info.run_id for r in by_kind["pipeline"]}
    assert {v.run_id for v in versions} <= pipelines


def test_pipeline_runs_and_tuning_parents_list_their_data_set(client):
    _, _, by_kind = _runs(client)
    (parent,) = by_kind["tuning_search"]
    trained = [r for r in by_kind["pipeline"] if r.info.status == "FINISHED"]
    assert len(trained) == 3
    for run in [parent, *trained]:
        inputs = {(d.dataset.name, next(t.value for t in d.tags if t.key == "mlflow.data.context"))
                  for d in run.inputs.dataset_inputs}
        assert ("nba:raptor", "training") in inputs, run.info.run_name
        if run in trained:
            assert ("nba:raptor (holdout)", "evaluation") in inputs
    for run in [parent, *by_kind["pipeline"], *by_kind["tuning_trial"]]:  # every run names data and target
        assert run.data.params["dataset"] == "nba:raptor" and run.data.params["target"] == "predator_total"
    assert parent.data.params["estimator"] == "auto"  # the default call; its trials name their family
    assert {t.data.params["estimator"] for t in by_kind["tuning_trial"]} <= {
        "logistic_regression", "ridge", "lightgbm", "hist_gradient_boosting", "extra_trees", "random_forest"}


def test_every_run_says_who_through_what_and_what_it_is(client):
    from mcp_server.settings import Settings

    _, runs, by_kind = _runs(client)
    assert len(runs) == 1 + 3 + len(by_kind["tuning_trial"]) + 1  # the stopped naive call is run 1
    source = {"pipeline": "nba-mcp run_pipeline", "tuning_search": "nba-mcp tune_hyperparameters",
              "tuning_trial": "nba-mcp tune_hyperparameters"}
    for run in runs:
        tags = run.data.tags
        assert tags["mlflow.user"] == Settings().local_principal  # the MCP principal, not the OS user
        assert tags["mlflow.source.name"] == source[tags["nba_mcp.kind"]]
        assert tags["mlflow.note.content"].strip() and "\n" not in tags["mlflow.note.content"]


def test_no_tag_is_a_python_repr_and_bookkeeping_has_one_prefix(client):
    _, runs, _ = _runs(client)
    bad = [(r.info.run_name, k, v[:80]) for r in runs for k, v in r.data.tags.items() if REPR.search(v)]
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    bad += [(f"v{v.version}", k, val) for v in versions for k, val in v.tags.items() if REPR.search(val)]
    assert bad == []
    for run in runs:
        tags = run.data.tags
        assert not any(k.startswith(("champion.", "stage.", "pipeline.")) for k in tags), sorted(tags)
        assert not set(tags) & set(run.data.params)  # no tag repeats a param


def test_pipeline_metrics_start_with_the_model_and_runs_compare_without_blanks(client):
    _, _, by_kind = _runs(client)
    pipelines = {r.info.run_name: r for r in by_kind["pipeline"]}
    for run in pipelines.values():
        names = list(run.data.metrics)
        for order in (sorted(names), sorted(names, key=str.lower)):  # the UI's sort, either way
            model = [n for n in order if MODEL_METRIC.match(n)]
            assert order[: len(model)] == model, order
        if run.info.status == "FINISHED":
            assert {"test_rmse", "cv_rmse_mean", "cv_rmse_std"} <= set(names)
            assert "features" not in run.data.params and int(run.data.params["n_features"]) > 0
    tuned, baseline = pipelines[f"{MODEL_NAME}-tuned"], pipelines[f"{MODEL_NAME}-baseline"]
    # The compare view: the same data, split and evaluation columns (hyperparameters are the estimator's own).
    assert {"dataset", "target", "estimator", "split.kind", "n_features", "primary_metric", "cv_folds"} <= (
        set(tuned.data.params) & set(baseline.data.params))
    (parent,) = by_kind["tuning_search"]
    searched = {k.removeprefix("best_") for k in parent.data.tags if k.startswith("best_") and k != "best_trial"
                and k != "best_trial_run_id"}
    assert searched and searched <= set(tuned.data.params)
    assert {k: tuned.data.params[k] for k in searched} == {k: parent.data.tags[f"best_{k}"] for k in searched}
    assert not any(k.startswith("params.") for k in tuned.data.params)
    for trial in by_kind["tuning_trial"]:  # trials of the winning family log the same hyperparameter names
        if trial.data.params["estimator"] == tuned.data.params["estimator"]:
            assert searched <= set(trial.data.params)
    scoring = parent.data.params["scoring"]
    assert f"best_cv_{scoring}" in parent.data.metrics and f"cv_{scoring}_mean" not in parent.data.metrics
