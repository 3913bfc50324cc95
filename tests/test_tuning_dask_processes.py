"""Trials on a real Dask cluster: ``dask scheduler`` and two ``dask worker --no-nanny`` processes
(separate OS processes on 127.0.0.1, one thread each), started from this environment.

What travels to a worker is pickled (cloudpickle for the seed-style closures), so these tests
show what an in-process ``LocalCluster`` cannot: same-seed searches give the same trials (params
and fold scores) as local runs; a worker killed with SIGKILL mid-search costs only the tasks it
held (the scheduler reruns them on the other worker); a scheduler that is gone is a clear error
within the connect timeout.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mcp_server.error_handling import ConfigurationError
from mcp_server.hyperparameter_tuning import HyperparameterTuner, MedianPruner, TrialState
from mcp_server.hyperparameter_tuning import _parallel
from tests.support.engines import DASK_REASON, DaskProcessCluster, have_dask_cli

pytestmark = [pytest.mark.dask_cluster, pytest.mark.skipif(not have_dask_cli(), reason=DASK_REASON)]

X, Y = make_classification(n_samples=150, n_features=6, random_state=2)
GRID = {"max_depth": [2, 4, 8], "min_samples_leaf": [1, 5]}
SPACE = {"max_depth": {"type": "int", "low": 2, "high": 12},
         "min_samples_leaf": {"type": "int", "low": 1, "high": 10},
         "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]}}
SEARCH_TIMEOUT = 120  # every search here is bounded: a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with DaskProcessCluster(tmp_path_factory.mktemp("dask"), n_workers=2, nthreads=1) as running:
        yield running


def _tune(tuner, strategy, **kwargs):
    space = GRID if strategy == "grid" else SPACE
    return tuner.tune(estimator=RandomForestClassifier(n_estimators=5, random_state=0), X=X, y=Y, space=space,
                      strategy=strategy, scoring="roc_auc", cv_folds=3, seed=7,
                      max_trials=None if strategy == "grid" else 6, **kwargs)


def _trials(result):
    return [(t.number, t.params, t.fold_scores, t.state) for t in result.trials]


def bounded(fn, timeout=SEARCH_TIMEOUT):
    """Run ``fn`` in a thread; fail (not hang) if it has not returned after ``timeout`` seconds."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s: the search hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("strategy", ["grid", "random", "bayesian"])
def test_same_seed_search_gives_the_same_trials_as_a_local_run(cluster, strategy):
    on_cluster = bounded(lambda: _tune(HyperparameterTuner(enable_mlflow=False, dask_address=cluster.address),
                                       strategy, n_jobs=2))
    # Bayesian proposals depend on how many are asked at once: compare batches of the same size.
    local = _tune(HyperparameterTuner(enable_mlflow=False), strategy, n_jobs=2)
    assert on_cluster.summary.backend == f"dask({cluster.address}, batch=2)"
    assert _trials(on_cluster) == _trials(local)
    if strategy == "grid":  # nor on where it ran: the same as sequential
        assert _trials(on_cluster) == _trials(_tune(HyperparameterTuner(enable_mlflow=False), strategy, n_jobs=1))


def test_seed_style_callables_travel_to_worker_processes(cluster):
    # Closures over local state: cloudpickled by value. (A function of a module the workers cannot
    # import, such as this test module, is pickled by reference: the scheduler fails to
    # deserialize the graph and joblib's Dask backend waits forever. docs/deployment.md says so.)
    offset = 0.25

    def train_fn(params, X_train, y_train):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=5, random_state=0, **params).fit(X_train, y_train)

    def eval_fn(model, X_val, y_val):
        return model.score(X_val, y_val) + offset

    def search(tuner):
        best = tuner.grid_search(GRID, train_fn, eval_fn, cv_folds=3, X=X, y=Y, seed=3)
        return best, _trials(tuner.last_result)

    best, trials = bounded(lambda: search(HyperparameterTuner(enable_mlflow=False, dask_address=cluster.address)))
    local_best, local_trials = search(HyperparameterTuner(enable_mlflow=False))
    assert trials == local_trials and best["params"] == local_best["params"]
    assert all(min(t[2]) >= offset for t in trials)


def test_pruning_on_the_cluster_records_the_same_trials_as_local_threads(cluster):
    def search(tuner, n_jobs):
        return _trials(_tune(tuner, "grid", n_jobs=n_jobs, pruning=MedianPruner(n_startup_trials=2)))

    on_cluster = bounded(lambda: search(HyperparameterTuner(enable_mlflow=False, dask_address=cluster.address), 2))
    local = search(HyperparameterTuner(enable_mlflow=False), 2)
    assert on_cluster == local
    assert {t[3] for t in on_cluster} <= {TrialState.COMPLETE, TrialState.PRUNED}


def test_a_worker_killed_mid_search_costs_only_its_tasks(tmp_path):
    """SIGKILL one of two workers while it runs fold fits: the scheduler reruns its tasks on the
    other worker, the search finishes with every trial, and the trials equal a local run's."""
    slow_grid = {"max_depth": [2, 4, 6, 8], "min_samples_leaf": [1, 3]}
    Xs, Ys = make_classification(n_samples=400, n_features=8, random_state=4)

    def search(tuner):
        return tuner.tune(estimator=RandomForestClassifier(n_estimators=40, random_state=0), X=Xs, y=Ys,
                          space=slow_grid, strategy="grid", scoring="roc_auc", cv_folds=3, seed=1, n_jobs=2)

    with DaskProcessCluster(tmp_path / "dask", n_workers=2, nthreads=1) as cluster:
        from distributed import Client

        box: dict = {}
        thread = threading.Thread(target=lambda: box.setdefault(
            "result", search(HyperparameterTuner(enable_mlflow=False, dask_address=cluster.address))), daemon=True)
        with Client(cluster.address, timeout=10, set_as_default=False) as watcher:
            thread.start()
            deadline = time.monotonic() + 60
            victim = None
            while victim is None:
                assert time.monotonic() < deadline and thread.is_alive(), "no task reached worker w1"
                for address, info in watcher.scheduler_info()["workers"].items():
                    if info["name"] == "w1" and watcher.processing(workers=[address]).get(address):
                        victim = address
                time.sleep(0.02)
            cluster.kill_worker(1)  # SIGKILL: the worker holds running fold fits
            killed_at = time.monotonic()
            thread.join(SEARCH_TIMEOUT)
            assert not thread.is_alive(), "the search hung after a worker died"
            assert cluster.worker_names() == ["w0"]
        elapsed = time.monotonic() - killed_at
    result = box["result"]
    assert len(result.trials) == 8 and all(t.state is TrialState.COMPLETE for t in result.trials)
    assert _trials(result) == _trials(search(HyperparameterTuner(enable_mlflow=False)))
    print(f"\nworker w1 killed mid-search; the search finished {elapsed:.1f} s later on w0")


def test_a_scheduler_that_is_gone_is_a_clear_error_within_the_connect_timeout(tmp_path, monkeypatch):
    with DaskProcessCluster(tmp_path / "dask", n_workers=1) as cluster:
        address = cluster.address  # it was there; now nothing listens at that address
    monkeypatch.setattr(_parallel, "DASK_CONNECT_TIMEOUT_SECONDS", 3)
    tuner = HyperparameterTuner(enable_mlflow=False, dask_address=address)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=f"cannot connect to the Dask scheduler at {address}"):
        bounded(lambda: _tune(tuner, "grid"), timeout=30)
    assert time.monotonic() - started < 3 + 5


@pytest.mark.anyio
async def test_cancel_job_stops_the_clusters_tasks(cluster, tmp_path, tmp_path_factory):
    """A tuning job whose trials run on the cluster: cancel_job ends it CANCELLED, and the cluster is
    idle again soon after (the tasks in flight finish or are released; no new ones are sent)."""
    from distributed import Client as DaskClient
    from mcp import Client

    from tests.support import payload, isolated_settings, shared_template
    from tools.server import build_server

    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory),
                                 dask_scheduler_address=cluster.address)
    request = {"dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 60,
               "cv_folds": 3, "seed": 1, "experiment_name": "dask-cancel",
               "space": {"n_estimators": {"type": "int", "low": 30, "high": 80},
                         "max_depth": {"type": "int", "low": 2, "high": 10}}}
    server = build_server(settings)
    try:
        async with Client(server) as client:
            started = payload(await client.call_tool("tune_hyperparameters",
                                              {"request": request, "wait_seconds": 0}))
            job_id = started["job_id"]
            deadline = time.monotonic() + 90
            busy = False  # seen the cluster run this job's tasks
            with DaskClient(cluster.address, timeout=10, set_as_default=False) as watcher:
                while True:
                    view = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 0.2}))
                    busy = busy or any(watcher.processing().values())
                    if busy and view["progress"]["current"] >= 2:
                        break
                    assert not view["done"] and time.monotonic() < deadline, view
            await client.call_tool("cancel_job", {"job_id": job_id})
            cancelled_at = time.monotonic()
            final = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 30}))
        assert final["state"] == "CANCELLED", final
        assert final["result"]["n_trials"] < request["max_trials"]
        with DaskClient(cluster.address, timeout=10, set_as_default=False) as watcher:
            while any(watcher.processing().values()):
                assert time.monotonic() - cancelled_at < 30, "the cluster still runs the cancelled job's tasks"
                time.sleep(0.2)
        print(f"\ncancelled after {final['result']['n_trials']} trials; cluster idle "
              f"{time.monotonic() - cancelled_at:.1f} s after cancel_job")
    finally:
        server.state.close()


@pytest.mark.anyio
async def test_a_scheduler_lost_mid_search_fails_the_job_saying_so(tmp_path, tmp_path_factory, monkeypatch):
    """SIGKILL the scheduler while a tuning job's trials run on it: the job ends FAILED with an error
    naming the scheduler's address and how long it waited (before: "internal error", or the rest of
    the search silently run in the server's own process), and no run is left RUNNING."""
    import signal

    from mcp import Client

    from tests.support import payload, isolated_settings, shared_template
    from tests.test_reliability_crash import running_runs
    from tools.server import build_server

    monkeypatch.setattr(_parallel, "DASK_CONNECT_TIMEOUT_SECONDS", 3)  # the client's reconnect wait
    with DaskProcessCluster(tmp_path / "dask", n_workers=1) as cluster:
        settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory),
                                     dask_scheduler_address=cluster.address)
        request = {"dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 60,
                   "cv_folds": 3, "seed": 1, "experiment_name": "dask-lost",
                   "space": {"n_estimators": {"type": "int", "low": 30, "high": 80}}}
        server = build_server(settings)
        try:
            async with Client(server) as client:
                job_id = payload(await client.call_tool("tune_hyperparameters",
                                                        {"request": request, "wait_seconds": 0}))["job_id"]
                deadline = time.monotonic() + 90
                while (view := payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 0.2})))[
                        "progress"]["current"] < 2:
                    assert not view["done"] and time.monotonic() < deadline, view
                cluster.scheduler.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                final = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 40}))
                ended_after = time.monotonic() - killed
        finally:
            server.state.close()
    assert final["state"] == "FAILED", final
    assert f"the Dask scheduler at {cluster.address} was lost mid-search: no answer for" in final["error"], final
    assert "client gives up after 3 s" in final["error"] and "internal error" not in final["error"]
    assert ended_after < 3 + 15
    assert running_runs(Path(str(settings.tracking_uri).removeprefix("sqlite:///"))) == 0
    print(f"\nscheduler lost: job FAILED {ended_after:.1f} s after the kill: {final['error'][:160]}")
