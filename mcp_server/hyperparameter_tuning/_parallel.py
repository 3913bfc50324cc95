"""Where trials run: in this thread, in a joblib pool (threads or loky processes), or on a Dask cluster.

Only evaluation travels; results come back to the loop, which records and logs in this process.
Every task runs with its native thread pools bounded (``mcp_server.threads``, architecture rule 19):
the job's share divided among the search's parallel trials, or on Dask the worker machine's share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from mcp_server.error_handling import ConfigurationError, ExecutionError, InvalidRequestError
from mcp_server.hyperparameter_tuning._tasks import (
    BatchRunner,
    Execution,
    Task,
    StreamRunner,
    run_sequentially,
    stream_sequentially,
)
from mcp_server.hyperparameter_tuning._worker_pool import killable_execution
from mcp_server.threads import call_limited, fit_threads, threads_per_fit, usable_cores

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "threading", "loky", "process")
# "process": trials run in worker processes owned by this search, which a stop (cancel, job timeout,
# shutdown) kills at once (``_worker_pool``). What the server uses for every job (settings.isolate_trials).
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


def _bounded(tasks: Iterable[Task], threads: int) -> Iterator[Task]:
    """Each task under the fit's thread limit, wherever it lands (lazily: the loop's task stream is)."""
    return ((call_limited, (threads, fn, *args)) for fn, args in tasks)


def _dask_worker_threads() -> int:
    """Threads per fit on a Dask worker: its tasks share the worker's machine (``nthreads`` at once),
    whatever the server's cores; the server cannot know that machine."""
    from distributed import get_worker

    try:
        running = get_worker().state.nthreads
    except ValueError:  # not inside a worker (a synchronous scheduler): one fit at a time
        running = 1
    return threads_per_fit(usable_cores(), parallel=running)


def _local_nested_parallelism(fn, *args):
    """Run a task with the estimator's own n_jobs on local threads, native pools bounded.

    joblib runs Dask tasks inside ``parallel_config(backend="dask")``, so an estimator's inner
    Parallel (RandomForest with n_jobs=None) was dispatched back to the cluster; measured here,
    that changed 9 of 15 repeated searches' fold scores. Local threads keep fits deterministic.
    """
    import joblib

    with joblib.parallel_config(backend="threading"):
        return call_limited(_dask_worker_threads(), fn, *args)


@contextmanager
def execution(
    *, n_jobs: int, backend: str = DEFAULT_BACKEND, dask_address: str | None = None, prefer_processes: bool = False,
    should_stop: Callable[[], bool] | None = None, threads: int | None = None,
) -> Iterator[Execution]:
    """``threads``: native threads per fit; default: the current job's share over ``n_jobs`` fits."""
    threads = threads if threads is not None else fit_threads(max(1, n_jobs))
    if dask_address:
        with _dask_execution(dask_address, n_jobs) as ex:
            yield ex
        return
    if backend not in BACKENDS:
        raise InvalidRequestError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "process":
        with killable_execution(n_jobs, should_stop, threads) as ex:
            yield ex
        return
    if n_jobs == 1:
        yield Execution(lambda tasks: run_sequentially(list(_bounded(tasks, threads))), 1, "sequential",
                        lambda tasks: stream_sequentially(_bounded(tasks, threads)))
        return
    if backend == "auto":
        backend = "loky" if prefer_processes else "threading"
    from joblib import Parallel
    from joblib.parallel import LokyBackend

    # loky sets the thread variables in its workers' environment before they import anything.
    chosen = LokyBackend(inner_max_num_threads=threads) if backend == "loky" else backend
    # One pool reused for every call of the search.
    with Parallel(n_jobs=n_jobs, backend=chosen, return_as="generator_unordered",
                  pre_dispatch=PRE_DISPATCH, batch_size=TASKS_PER_DISPATCH) as parallel:
        runner, stream = _joblib_runners(parallel, wrap=partial(call_limited, threads))
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
    watch = _SchedulerWatch(client, address)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        batch = n_jobs if n_jobs > 1 else n_workers
        with joblib.parallel_config(backend="dask", client=client):
            with joblib.Parallel(n_jobs=batch, return_as="generator_unordered",
                                 pre_dispatch=PRE_DISPATCH, batch_size=TASKS_PER_DISPATCH) as parallel:
                runner, stream = _joblib_runners(parallel, wrap=_local_nested_parallelism)
                yield Execution(watch.runner(stream), batch, f"dask({address}, batch={batch})", watch.stream(stream))
    except Exception as exc:
        watch.check(cause=exc, failed=True)  # a failure caused by the lost scheduler says so
        raise
    finally:
        client.close()


class DaskSchedulerLostError(ExecutionError):
    """The search's Dask scheduler stopped answering mid-search and did not come back."""


class _SchedulerWatch:
    """Turns a scheduler lost mid-search into a clear error instead of a silent change of engine.

    Measured: when the scheduler is SIGKILLed, the client gives up after its reconnect timeout
    (DASK_CONNECT_TIMEOUT_SECONDS) and closes; joblib then ran the remaining tasks one by one in the
    server's own process (a 60-trial search "on dask" finished locally 30 s later), or the job ended
    "internal error". The watch checks the client before each task is dispatched and after each
    result, and raises ``DaskSchedulerLostError`` naming the address and how long it waited.
    """

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address = client, address
        self.last_answer = time.monotonic()

    def check(self, cause: BaseException | None = None, *, failed: bool = False) -> None:
        """Raise if the client gave up on the scheduler; ``failed`` (the search raised): also while
        it is still trying to reconnect, since the failure came from the lost connection."""
        if self.client.status == "running" or (self.client.status == "connecting" and not failed):
            return
        waited = time.monotonic() - self.last_answer
        raise DaskSchedulerLostError(
            f"the Dask scheduler at {self.address} was lost mid-search: no answer for {waited:.0f} s "
            f"(the client gives up after {DASK_CONNECT_TIMEOUT_SECONDS} s without it; client status "
            f"{self.client.status!r}); the trials recorded so far stand: start the scheduler again and resume "
            "the search (resume_from)"
        ) from cause

    def _guarded(self, tasks: Iterable[Task]) -> Iterator[Task]:
        for task in tasks:
            self.check()
            yield task

    def stream(self, stream: StreamRunner) -> StreamRunner:
        def watched(tasks: Iterable[Task]) -> Iterator[tuple[int, Any]]:
            for item in stream(self._guarded(tasks)):
                self.check()
                if self.client.status == "running":  # not a task joblib ran here while reconnecting
                    self.last_answer = time.monotonic()
                yield item

        return watched

    def runner(self, stream: StreamRunner) -> BatchRunner:
        watched = self.stream(stream)

        def run(tasks: list[Task]) -> list[Any]:
            results = dict(watched(tasks))
            return [results[i] for i in range(len(tasks))]

        return run
