"""Where trials run: in this thread, in a joblib pool (threads or loky processes), or on a Dask cluster.

Only evaluation travels; results come back to the loop, which records and logs in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mcp_server.error_handling import ConfigurationError, InvalidRequestError
from mcp_server.hyperparameter_tuning._tasks import (
    BatchRunner,
    StreamRunner,
    run_sequentially,
    stream_sequentially,
)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "threading", "loky")
# "auto": loky processes for sklearn fold fits (NBA seed grid, 2 cores: loky 18.4 s, threads 22.1 s,
# sequential 29.6 s), threads for whole trials with pruning (threads 10.6 s, loky 16.2 s) and for
# the caller's own train_fn / eval_fn (closures and shared state keep working). See docs/tuning.md.
DEFAULT_BACKEND = "auto"
DASK_CONNECT_TIMEOUT_SECONDS = 10
# Measured on the seed grid (loky, n_jobs=2): pre-dispatching 2 × n_jobs tasks 15.7–16.1 s, only
# n_jobs 17.2–20.9 s (workers wait for the parent between tasks). One task per dispatch (vs joblib's
# "auto" grouping, same speed) keeps the pull-ahead, and so the work past a stop, to 2 × n_jobs tasks.
PRE_DISPATCH = "2*n_jobs"
TASKS_PER_DISPATCH = 1


@dataclass(frozen=True)
class Execution:
    runner: BatchRunner
    batch_size: int
    description: str
    stream: StreamRunner = stream_sequentially


def check_n_jobs(n_jobs: int | None) -> int:
    import os

    if n_jobs is None:
        return 1
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0 or n_jobs < -1:
        raise InvalidRequestError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


def _indexed(index, fn, *args):
    return index, fn(*args)


def _joblib_runners(parallel, *, wrap=None) -> tuple[BatchRunner, StreamRunner]:
    """Both runners on one ``Parallel(return_as="generator_unordered")``, whose pool outlives the calls.

    joblib pulls the next task from the iterable in its dispatch thread each time a worker frees
    up (after pre-dispatching 2 × n_jobs), so the stream keeps every worker busy.
    """
    from joblib import delayed

    def stream(tasks):
        calls = (
            delayed(_indexed)(index, wrap, fn, *args) if wrap is not None else delayed(_indexed)(index, fn, *args)
            for index, (fn, args) in enumerate(tasks)
        )
        return parallel(calls)

    def run(tasks):
        results = dict(stream(tasks))
        return [results[i] for i in range(len(tasks))]

    return run, stream


def _local_nested_parallelism(fn, *args):
    """Run a task with the estimator's own n_jobs on local threads.

    joblib runs Dask tasks inside ``parallel_config(backend="dask")``, so an estimator's inner
    Parallel (RandomForest with n_jobs=None) was dispatched back to the cluster; measured here,
    that changed 9 of 15 repeated searches' fold scores. Local threads keep fits deterministic.
    """
    import joblib

    with joblib.parallel_config(backend="threading"):
        return fn(*args)


@contextmanager
def execution(
    *, n_jobs: int, backend: str = DEFAULT_BACKEND, dask_address: str | None = None, prefer_processes: bool = False
) -> Iterator[Execution]:
    if dask_address:
        with _dask_execution(dask_address, n_jobs) as ex:
            yield ex
        return
    if backend not in BACKENDS:
        raise InvalidRequestError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if n_jobs == 1:
        yield Execution(run_sequentially, 1, "sequential")
        return
    if backend == "auto":
        backend = "loky" if prefer_processes else "threading"
    from joblib import Parallel

    # One pool reused for every call of the search.
    with Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered",
                  pre_dispatch=PRE_DISPATCH, batch_size=TASKS_PER_DISPATCH) as parallel:
        runner, stream = _joblib_runners(parallel)
        yield Execution(runner, n_jobs, f"joblib-{backend}(n_jobs={n_jobs})", stream)


@contextmanager
def _dask_execution(address: str, n_jobs: int) -> Iterator[Execution]:
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:
        raise ConfigurationError(
            f"a Dask scheduler address is configured ({address}) but dask.distributed is not installed: {exc}"
        ) from None
    try:
        client = Client(address, set_as_default=False, timeout=DASK_CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        batch = n_jobs if n_jobs > 1 else n_workers
        with joblib.parallel_config(backend="dask", client=client):
            with joblib.Parallel(n_jobs=batch, return_as="generator_unordered",
                                 pre_dispatch=PRE_DISPATCH, batch_size=TASKS_PER_DISPATCH) as parallel:
                runner, stream = _joblib_runners(parallel, wrap=_local_nested_parallelism)
                yield Execution(runner, batch, f"dask({address}, batch={batch})", stream)
    finally:
        client.close()
