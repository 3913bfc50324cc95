"""Trials on a Dask cluster through joblib's Dask backend (a LocalCluster on loopback)."""

from __future__ import annotations

import threading

import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mcp_server.error_handling import ConfigurationError
from mcp_server.hyperparameter_tuning import HyperparameterTuner
from mcp_server.settings import Settings

distributed = pytest.importorskip("distributed")

X, Y = make_classification(n_samples=120, n_features=5, random_state=2)
SPACE = {"max_depth": [2, 4], "min_samples_leaf": [1, 5]}


@pytest.fixture(scope="module")
def scheduler_address():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, host="127.0.0.1", protocol="tcp",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _tune(tuner, **kwargs):
    return tuner.tune(estimator=RandomForestClassifier(n_estimators=4, random_state=0), X=X, y=Y, space=SPACE,
                      strategy="grid", scoring="roc_auc", cv_folds=3, seed=1, **kwargs)


@pytest.mark.parametrize("configured_by", ["argument", "settings"])
def test_trials_run_on_the_cluster_with_the_same_results(scheduler_address, configured_by, tmp_path):
    if configured_by == "argument":
        tuner = HyperparameterTuner(enable_mlflow=False, dask_address=scheduler_address)
    else:
        settings = Settings(data_home=tmp_path, dask_scheduler_address=scheduler_address)
        tuner = HyperparameterTuner(enable_mlflow=False, settings=settings)
    on_cluster = _tune(tuner, n_jobs=2)
    local = _tune(HyperparameterTuner(enable_mlflow=False))
    assert on_cluster.summary.backend == f"dask({scheduler_address}, batch=2)"
    assert [(t.params, t.fold_scores) for t in on_cluster.trials] == [(t.params, t.fold_scores) for t in local.trials]


def test_callable_trials_execute_in_dask_worker_threads(scheduler_address, tmp_path):
    # Dask serializes the functions even for an in-process worker, so they report through a file.
    journal = tmp_path / "threads.txt"

    def train_fn(params, X_train, y_train):
        with open(journal, "a") as f:
            f.write(threading.current_thread().name + "\n")
        return RandomForestClassifier(n_estimators=3, random_state=0, **params).fit(X_train, y_train)

    def eval_fn(model, X_val, y_val):
        return model.score(X_val, y_val)

    tuner = HyperparameterTuner(enable_mlflow=False, dask_address=scheduler_address)
    best = tuner.grid_search(SPACE, train_fn, eval_fn, cv_folds=3, X=X, y=Y, seed=0)
    threads = journal.read_text().splitlines()
    assert len(threads) == 4 * 3 and all("Dask" in name for name in threads), threads
    assert best["params"] in [dict(zip(SPACE, v)) for v in [(2, 1), (2, 5), (4, 1), (4, 5)]]


def test_unreachable_scheduler_is_a_configuration_error(monkeypatch):
    from mcp_server.hyperparameter_tuning import _parallel

    monkeypatch.setattr(_parallel, "DASK_CONNECT_TIMEOUT_SECONDS", 1)
    tuner = HyperparameterTuner(enable_mlflow=False, dask_address="tcp://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:1"):
        _tune(tuner)
