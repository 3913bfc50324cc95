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

# Not slow-marked: one demo run (~80 s) is the check of issue 30's records, worth its place in CI.

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "nba-mcp-demo"
MODEL_NAME = "nba-raptor-predator_total"
# What a Python repr looks like: None/True/False, an object repr, a dict or list repr with quotes,
# pandas shapes, default object reprs.
REPR = re.compile(
    r"^(None|True|False)$|^[A-Z]\w*\(.*\)$|^\{'|^\['|^\{\w+: |DataFrame\(|Series\(|<[\w.]+ object at 0x"
)
# A param that reads as Python rather than as a value: a literal, an object or its default repr.
PARAM_REPR = re.compile(r"^(None|True|False)$|^[A-Z]\w*\(.*\)$|^<.*>$|^\{'|^\['|<[\w.]+ object at 0x")
MODEL_METRIC = re.compile(r"^(test_|cv_)")
COUNTERS = {"n_trials", "n_complete", "n_failed", "n_pruned", "n_fold_fits", "n_fold_fits_saved", "elapsed_seconds"}


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
        # The registry table cuts descriptions: a flagged version says so first.
        flags = client.get_run(version.run_id).data.tags["evaluation.warnings"]
        lead = f"FLAGGED ({flags.replace(',', ', ')}): " if flags != "none" else ""
        assert version.description.startswith(f"{lead}test_rmse ") and version.run_id in version.description
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
    pipelines = {r.info.run_name.split()[0]: r for r in by_kind["pipeline"]}
    for run in pipelines.values():
        names = list(run.data.metrics)
        for order in (sorted(names), sorted(names, key=str.lower)):  # the UI's sort, either way
            model = [n for n in order if MODEL_METRIC.match(n)]
            assert order[: len(model)] == model, order
        if run.info.status == "FINISHED":
            assert {"test_rmse", "cv_rmse_mean", "cv_rmse_std"} <= set(names)
            assert "features" not in run.data.params and int(run.data.params["n_features"]) > 0
    tuned, baseline = pipelines["tuned"], pipelines["baseline"]
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
    # The scorer (neg_root_mean_squared_error) is logged as the error itself, under the pipeline's name.
    assert parent.data.params["scoring"] == "neg_root_mean_squared_error"
    assert "best_cv_rmse" in parent.data.metrics and "cv_rmse_mean" not in parent.data.metrics


def _pipelines_by_role(by_kind) -> dict:
    return {r.info.run_name.split()[0]: r for r in by_kind["pipeline"]}


def test_runs_are_told_apart_by_what_the_runs_table_shows_of_their_names(client):
    _, runs, by_kind = _runs(client)
    heads = sorted(r.info.run_name[:20] for r in runs)
    assert len(set(heads)) == len(heads), heads
    roles = _pipelines_by_role(by_kind)
    assert set(roles) == {"stopped", "forced", "baseline", "tuned"}
    for role, run in roles.items():  # role, estimator, data set, target
        params = run.data.params
        assert run.info.run_name == f"{role} {params['estimator']} {params['dataset']} {params['target']}"
    for trial in by_kind["tuning_trial"]:
        number = int(trial.data.tags["nba_mcp.trial_number"])
        assert trial.info.run_name.startswith(f"trial-{number:03d} {trial.data.params['estimator']}")
    (parent,) = by_kind["tuning_search"]
    assert parent.info.run_name.startswith("search ")


def test_no_param_is_a_python_literal_or_repr(client):
    _, runs, _ = _runs(client)
    bad = [(r.info.run_name, k, v[:80]) for r in runs for k, v in r.data.params.items() if PARAM_REPR.search(v)]
    assert bad == []
    (parent,) = _runs(client)[2]["tuning_search"]
    assert "cv" not in parent.data.params and int(parent.data.params["cv_folds"]) >= 2


def test_descriptions_lead_with_the_outcome(client):
    _, _, by_kind = _runs(client)
    roles = _pipelines_by_role(by_kind)
    forced = roles["forced"]
    flags = forced.data.tags["evaluation.warnings"].split(",")
    assert "leak_suspect" in flags
    assert forced.data.tags["mlflow.note.content"].startswith(f"FLAGGED ({', '.join(flags)}): not champion; test_rmse ")
    stopped = roles["stopped"]
    note, error = stopped.data.tags["mlflow.note.content"], stopped.data.tags["nba_mcp.error"]
    assert stopped.info.status == "FAILED" and note.startswith("STOPPED (data_validation): ")
    message = error.split("Error: ", 1)[1]
    if note.endswith("(whole text: artifact stopped.txt)"):  # long: whole in the artifact, cut at a word
        whole = client.download_artifacts(stopped.info.run_id, "stopped.txt")
        assert message in Path(whole).read_text()
    else:  # the fix kept whole
        assert message in note and "drop=[" in note
    for role in ("baseline", "tuned"):
        assert roles[role].data.tags["mlflow.note.content"].split(":")[0] in ("CHAMPION", "Not champion")


def test_the_search_parent_charts_its_curve_and_no_counter(client):
    _, _, by_kind = _runs(client)
    (parent,) = by_kind["tuning_search"]
    assert not COUNTERS & set(parent.data.metrics)
    counters = json.loads(parent.data.tags["nba_mcp.search"])
    assert counters["n_trials"] == len(by_kind["tuning_trial"]) and COUNTERS <= set(counters)
    assert not [k for r in [parent, *by_kind["tuning_trial"]] for k in r.data.metrics if "neg_" in k]
    curve = client.get_metric_history(parent.info.run_id, "best_cv_rmse")
    numbers = {int(t.data.tags["nba_mcp.trial_number"]) for t in by_kind["tuning_trial"]}
    assert len(curve) >= 2 and {p.step for p in curve} <= numbers | {max(numbers) + 1}
    by_step = [p.value for p in sorted(curve, key=lambda p: (p.step, p.timestamp))]
    assert by_step == sorted(by_step, reverse=True)  # best so far: an error never grows
    assert parent.data.metrics["best_cv_rmse"] == by_step[-1] > 0


def test_every_logged_model_is_named_after_its_run_and_described(client):
    experiment, _, by_kind = _runs(client)
    assert experiment.tags["mlflow.note.content"].strip()
    runs = {r.info.run_id: r for r in by_kind["pipeline"]}
    models = client.search_logged_models([experiment.experiment_id])
    assert len(models) == 3
    for model in models:
        run = runs[model.source_run_id]
        assert model.name != "model"
        assert model.name == f"{run.info.run_name.split()[0]}-{run.data.params['estimator']}"
        assert model.tags["mlflow.note.content"].strip()
