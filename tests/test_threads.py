"""Fits share the machine (architecture rule 19): the arithmetic of ``mcp_server.threads``, and the
limits really in force inside a fit wherever it runs — the job's thread, joblib threads, the
killable worker processes (trials and the pipeline's isolated fit), loky workers, a Dask worker.

The probe (``tests/_thread_probe.py``) records ``threadpool_info()`` and the thread variables from
inside each fit. Nothing is mocked: the pools are scikit-learn's own OpenMP and OpenBLAS. Each
case is set up so that the unbounded default differs from the expected limit on any machine with
2 cores or more.
"""

from __future__ import annotations

import os
import threading

import pytest
from sklearn.datasets import make_classification

from mcp_server.hyperparameter_tuning import HyperparameterTuner
from mcp_server.jobs import JobManager
from mcp_server.settings import Settings
from mcp_server.threads import current_share, limit_threads, threads_per_fit, usable_cores
from tests._thread_probe import PoolProbe, probe_fit, read

X, Y = make_classification(n_samples=60, n_features=4, random_state=0)
GRID = {"depth": [1, 2, 3]}
CORES = 2  # what the job managers below are told they have: one thread per fit in every case


def test_threads_per_fit_keeps_jobs_x_trials_x_threads_within_the_cores():
    cases = [  # (cores, concurrent jobs, parallel trials) -> threads per fit
        ((16, 1, 1), 16), ((16, 2, 1), 8), ((16, 2, 3), 2), ((8, 2, 2), 2), ((7, 2, 1), 3),
        ((2, 2, 1), 1), ((2, 2, 2), 1), ((1, 4, 4), 1), ((3, 0, 0), 3),
    ]
    for (cores, jobs, parallel), expected in cases:
        got = threads_per_fit(cores, concurrent_jobs=jobs, parallel=parallel)
        assert got == expected, (cores, jobs, parallel)
        assert got >= 1 and (got * max(jobs, 1) * max(parallel, 1) <= cores or got == 1)


def test_cores_setting_defaults_to_the_usable_cores_and_sizes_each_jobs_share(tmp_path, monkeypatch):
    assert Settings(data_home=tmp_path).cores == usable_cores() >= 1
    monkeypatch.setenv("NBA_MCP_CORES", "12")
    assert Settings(data_home=tmp_path).cores == 12
    assert JobManager(max_concurrent=3, cores=12).threads_per_job == 4
    assert JobManager(max_concurrent=4, cores=2).threads_per_job == 1
    assert JobManager(max_concurrent=1).threads_per_job == usable_cores()
    assert current_share() == usable_cores()  # outside a job (library use): the machine's cores


def test_blas_holds_the_smallest_active_limit_and_openmp_is_per_thread():
    """BLAS pools are process-wide, OpenMP's limit is per thread: overlapping scopes (jobs in
    threads) keep the tightest BLAS limit until the last ends, then the original comes back.
    Both scopes run in threads of their own, as jobs do."""
    import sklearn.ensemble  # noqa: F401 - OpenMP runtime loaded
    from threadpoolctl import threadpool_info

    def now(api):
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == api}

    original_blas, original_openmp = now("blas"), now("openmp")
    inside, release, seen = threading.Event(), threading.Event(), {}

    def tight_job():
        with limit_threads(1):
            seen["tight openmp"] = now("openmp")
            inside.set()
            release.wait(10)

    def loose_job():
        tight = threading.Thread(target=tight_job)
        tight.start()
        assert inside.wait(10)
        with limit_threads(2):
            seen["blas while both"] = now("blas")  # the other scope's tighter limit holds
            seen["loose openmp"] = now("openmp")  # this thread's own
            release.set()
            tight.join(10)
            seen["blas after tight"] = now("blas")  # the tight scope ended: this one's limit
        seen["blas after both"] = now("blas")

    loose = threading.Thread(target=loose_job)
    loose.start()
    loose.join(20)
    assert seen == {"tight openmp": {1}, "blas while both": {1}, "loose openmp": {2},
                    "blas after tight": {2}, "blas after both": original_blas}
    assert now("openmp") == original_openmp


def test_a_limit_never_raises_a_pool_the_caller_bounded_already():
    """A library user's own threadpool_limits(1) around a search holds inside its fits."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = {}

    def caller():
        with threadpool_limits(1), limit_threads(max(2, usable_cores())):
            seen["inside"] = {(p["user_api"], p["num_threads"]) for p in threadpool_info()}

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(10)
    assert seen["inside"] == {("openmp", 1), ("blas", 1)}


def _in_job(fn, *, max_concurrent: int, cores: int = CORES):
    """Run ``fn(job_context)`` as a job of a real JobManager and return its result."""
    manager = JobManager(max_concurrent=max_concurrent, job_timeout=120, cores=cores)
    try:
        job_id = manager.submit("probe", fn)
        snapshot = manager.wait(job_id, timeout=120)
        assert snapshot.state.value == "SUCCEEDED", snapshot.error
        return snapshot.result
    finally:
        manager.shutdown(timeout=10)


def _tune(journal, *, n_jobs: int, backend: str = "auto", dask_address: str | None = None):
    tuner = HyperparameterTuner(enable_mlflow=False, backend=backend, dask_address=dask_address)
    return tuner.tune(estimator=PoolProbe(journal=str(journal)), X=X, y=Y, space=GRID, strategy="grid",
                      scoring="accuracy", cv_folds=2, seed=0, n_jobs=n_jobs)


def _assert_bounded(entries, threads: int, *, env: bool):
    assert entries, "the probe never ran"
    for entry in entries:
        assert set(entry["pools"]) >= {"openmp", "blas"}, entry  # else the check would be vacuous
        assert entry["pools"]["openmp"] == [threads] and entry["pools"]["blas"] == [threads], entry
        if env:  # set before numpy loaded in that worker
            assert entry["env"]["OMP_NUM_THREADS"] == str(threads), entry
            assert entry["env"]["OPENBLAS_NUM_THREADS"] == str(threads), entry


def test_a_sequential_search_in_a_job_thread_fits_with_the_jobs_share(tmp_path):
    journal = tmp_path / "fits.jsonl"
    # Two jobs may run at once on 2 cores: each job's fits get 1 thread.
    _in_job(lambda ctx: _tune(journal, n_jobs=1), max_concurrent=2)
    entries = read(journal)
    assert {e["thread"].split("-")[0] for e in entries} == {"job"}  # really in the job's thread
    _assert_bounded(entries, 1, env=False)


@pytest.mark.parametrize("backend", ["threading", "process"])
def test_parallel_trials_divide_the_jobs_share(tmp_path, backend):
    journal = tmp_path / "fits.jsonl"
    # One job owns both cores; two trials at a time: 1 thread per fit.
    result = _in_job(lambda ctx: _tune(journal, n_jobs=2, backend=backend), max_concurrent=1)
    assert result.summary.backend.startswith({"threading": "joblib-threading", "process": "process"}[backend])
    entries = read(journal)
    _assert_bounded(entries, 1, env=backend == "process")
    if backend == "process":
        assert all(e["pid"] != os.getpid() for e in entries)


def test_loky_trials_get_the_limit_in_their_environment_and_pools(tmp_path, monkeypatch):
    journal = tmp_path / "fits.jsonl"
    # An environment that asks for every core (joblib passes such variables on to its workers).
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, str(max(2, usable_cores())))
    result = _in_job(lambda ctx: _tune(journal, n_jobs=2, backend="loky"), max_concurrent=2)
    assert result.summary.backend == "joblib-loky(n_jobs=2)"
    _assert_bounded(read(journal), 1, env=True)


@pytest.mark.parametrize("isolate", [False, True], ids=["job-thread", "isolated-worker"])
def test_the_pipelines_fit_runs_with_the_jobs_share(tmp_path, isolate):
    from mcp_server.training_pipeline._standard_stages import _stoppable

    journal = str(tmp_path / "fits.jsonl")
    _in_job(lambda ctx: _stoppable(isolate, ctx.should_stop, probe_fit, journal, X, Y), max_concurrent=2)
    (entry,) = read(journal)
    _assert_bounded([entry], 1, env=isolate)


def test_run_stoppable_outside_a_job_takes_an_explicit_limit(tmp_path):
    from mcp_server.hyperparameter_tuning import run_stoppable

    journal = str(tmp_path / "fits.jsonl")
    run_stoppable(probe_fit, journal, X, Y, should_stop=None, threads=1)
    _assert_bounded(read(journal), 1, env=True)


@pytest.fixture(scope="module")
def dask_workers():
    distributed = pytest.importorskip("distributed")
    # One worker process running two tasks at once: each fit gets half of the worker's cores. Its
    # pools start with every core (Dask's nanny would start them at 1; an operator may not).
    every_core = {name: str(max(2, usable_cores())) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  protocol="tcp", dashboard_address=None, env=every_core) as cluster:
        yield cluster.scheduler_address


@pytest.mark.dask_cluster
def test_dask_tasks_fit_with_their_workers_share(tmp_path, dask_workers):
    journal = tmp_path / "fits.jsonl"
    result = _tune(journal, n_jobs=2, dask_address=dask_workers)
    assert result.summary.backend.startswith("dask(")
    entries = read(journal)
    assert all(e["pid"] != os.getpid() for e in entries)
    _assert_bounded(entries, threads_per_fit(usable_cores(), parallel=2), env=False)


def test_registered_estimators_use_one_thread_unless_asked():
    """An estimator's own n_jobs never exceeds the threads per fit (at least 1) by default."""
    from mcp_server.estimators import REGISTRY, build_model

    for name, spec in REGISTRY.items():
        for task in spec.tasks:
            try:
                model = build_model(name, task, {})
            except ImportError:  # an optional library that is not installed
                continue
            n_jobs = model.named_steps["model"].get_params().get("n_jobs")
            assert n_jobs in (None, 1), (name, task, n_jobs)
