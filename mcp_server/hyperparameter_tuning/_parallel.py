"""Where trials run: in this thread, in a joblib pool (threads or loky processes), or on a Dask cluster.

Only evaluation travels; results come back to the loop, which records and logs in this process.
Every task runs with its native thread pools bounded (``mcp_server.threads``, architecture rule 19):
the job's share divided among the search's parallel trials, or on Dask the worker machine's share.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp_server.error_handling import ConfigurationError, ExecutionError, InvalidRequestError
from mcp_server.hyperparameter_tuning._tasks import (
    BatchRunner,
    Task,
    StreamRunner,
    run_sequentially,
    stream_sequentially,
)
from mcp_server.threads import call_limited, fit_threads, thread_env, threads_per_fit, usable_cores

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "threading", "loky", "process")
# "process": trials run in worker processes owned by this search, which a stop (cancel, job timeout,
# shutdown) kills at once: the fit in flight ends within STOP_POLL_SECONDS plus a kill, not when
# the trial would have finished. What the server uses for every job (settings.isolate_trials).
STOP_POLL_SECONDS = 0.05
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


class ExecutionInterrupted(Exception):
    """The search was stopped while trials were running: their workers were killed, results lost."""


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
        with _killable_execution(n_jobs, should_stop, threads) as ex:
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


class KillablePool:
    """Worker processes of one search; ``kill()`` ends them at once, fits in flight included.

    The waiting side polls ``should_stop`` every STOP_POLL_SECONDS; when it turns true the workers
    are killed and ``ExecutionInterrupted`` is raised, so a cancel or a job timeout ends a fit that
    would run for hours within a fraction of a second (scikit-learn's own loops cannot be stopped
    from another thread). A worker that dies by itself (out of memory) fails the search with a
    clear message instead of hanging it.
    """

    def __init__(self, n_workers: int, should_stop: Callable[[], bool] | None, threads: int = 1) -> None:
        self.n_workers, self.threads = n_workers, threads  # threads: native threads per fit
        self._should_stop = should_stop or (lambda: False)
        self._executor = _SPARE.take(threads) if n_workers == 1 else _new_executor(n_workers, threads)
        self._killed = False
        _LIVE_POOLS.add(self)

    def kill(self) -> None:
        self._killed = True  # never handed back as the spare
        self._executor.shutdown(wait=True, kill_workers=True)
        if self.n_workers == 1:
            import threading

            threading.Thread(target=_SPARE.refill, args=(self.threads,), name="warm-spare-worker",
                             daemon=True).start()

    def close(self) -> None:
        # Every result is in: a warm single worker becomes the spare again, others exit in the
        # background (waiting for them cost 0.5-1.2 s).
        if self.n_workers == 1 and not self._killed and _SPARE.give_back(self._executor, self.threads):
            return
        self._executor.shutdown(wait=False)

    def _check_stop(self) -> None:
        if self._should_stop():
            self.kill()
            raise ExecutionInterrupted("the search was stopped; its running trials were ended")

    def _result(self, future):
        from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

        try:
            return future.result()
        except (BrokenProcessPool, ShutdownExecutorError) as exc:
            self._check_stop()
            from mcp_server.error_handling import ExecutionError

            from mcp_server.workers import memory_limit_message

            raise ExecutionError(
                f"a trial's worker process died ({type(exc).__name__}: {exc}); "
                f"a fit may have run out of memory: {memory_limit_message()}"
            ) from None

    def stream(self, tasks: Iterable[Task]) -> Iterator[tuple[int, Any]]:
        """Submit lazily, at most 2 x n_workers in flight; yield results as they complete."""
        from concurrent.futures import FIRST_COMPLETED, wait

        pending: dict[Any, int] = {}
        source = iter(enumerate(tasks))
        exhausted = False
        while True:
            self._check_stop()
            while not exhausted and len(pending) < 2 * self.n_workers:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, (fn, args) = item
                pending[self._executor.submit(_in_worker, self.threads, fn, *args)] = index
            if not pending:
                return
            done, _ = wait(pending, timeout=STOP_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                yield index, self._result(future)

    def run(self, tasks: list[Task]) -> list[Any]:
        results = dict(self.stream(tasks))
        return [results[i] for i in range(len(tasks))]


# A worker starts a Python interpreter and imports scikit-learn: 2-8 s on the shared 2-core box.
# So a single-worker executor (n_jobs=1, the server's default) that ends without a kill is kept as
# the spare and reused by the next search or fit; a killed one is replaced by a spare that starts
# warming at once. Idle, the worker exits after SPARE_IDLE_SECONDS (the next use starts it again).
SPARE_IDLE_SECONDS = 600


def _warm_worker() -> bool:
    import sklearn.ensemble  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    import mcp_server.hyperparameter_tuning._cv  # noqa: F401

    return True


def _in_worker(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """A task as a worker runs it: native pools bounded, a MemoryError naming the memory limit."""
    from mcp_server.workers import explain_memory_errors

    return explain_memory_errors(call_limited, threads, fn, *args)


class _SpawnerThread:
    """One thread that lives as long as the server and starts every worker process.

    A worker's parent-death signal (``mcp_server.workers``) fires when the *thread* that forked it
    exits, not only the process: workers started from a job thread or a short-lived helper thread
    would be killed when that thread ends. So every spawn (loky's ``_adjust_process_count``, also
    called later to replace a worker) runs here, and the signal fires only with the server.
    """

    def __init__(self) -> None:
        import queue
        import threading

        self._calls: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: Any = None

    def run(self, fn: Callable[[], Any]) -> Any:
        import threading
        from concurrent.futures import Future

        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="worker-spawner", daemon=True)
                self._thread.start()
        if threading.current_thread() is self._thread:
            return fn()
        done: Future = Future()
        self._calls.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._calls.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                done.set_exception(exc)


_SPAWNER = _SpawnerThread()


def _executor_class():
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    class WorkerPoolExecutor(ProcessPoolExecutor):
        """loky's executor whose workers are started by ``_SPAWNER`` (the caller holds loky's
        process-management lock meanwhile, which the spawn itself never takes)."""

        def _adjust_process_count(self) -> None:
            _SPAWNER.run(super()._adjust_process_count)

    return WorkerPoolExecutor


def _new_executor(n_workers: int, threads: int, *, idle_timeout: float | None = None):
    from mcp_server.workers import init_worker, initializer_args

    # The thread variables are set before the worker imports numpy: its pools start at that size.
    # init_worker: the worker dies with this process and its memory is bounded (mcp_server.workers).
    executor = _executor_class()(max_workers=n_workers, timeout=idle_timeout, env=thread_env(threads),
                                 initializer=init_worker, initargs=initializer_args())
    for _ in range(n_workers):
        executor.submit(_warm_worker)  # start the workers and their imports now, in parallel with the caller
    return executor


def _worker_key(threads: int) -> tuple:
    from mcp_server.workers import initializer_args

    return threads, initializer_args()[1]


class _SpareExecutor:
    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._ready = None
        self._key: tuple = ()  # what the spare's worker was started with (threads per fit, memory limit)
        self._closed = False  # the process is shutting down: no new spare

    def take(self, threads: int):
        """The warm executor if one is ready for ``threads`` per fit, else a new one."""
        with self._lock:
            executor, self._ready = self._ready, None
            stale = executor is not None and self._key != _worker_key(threads)
        if stale:  # its worker was started for another share or limit: a new one starts right
            executor.shutdown(wait=False, kill_workers=True)
            executor = None
        if executor is None:
            executor = _new_executor(1, threads, idle_timeout=SPARE_IDLE_SECONDS)
        return executor

    def refill(self, threads: int) -> None:
        """Start warming a spare now (after a kill: the next queued job should not start cold)."""
        with self._lock:
            if self._ready is None and not self._closed:
                self._ready = _new_executor(1, threads, idle_timeout=SPARE_IDLE_SECONDS)
                self._key = _worker_key(threads)

    def give_back(self, executor, threads: int) -> bool:
        """Keep a healthy, finished executor as the spare if there is none; False: the caller closes it."""
        with self._lock:
            if self._ready is not None or self._closed:
                return False
            self._ready, self._key = executor, _worker_key(threads)
            return True

    def close(self, *, final: bool = False) -> None:
        """Kill the spare; ``final`` (the process exits): never start another."""
        with self._lock:
            self._closed = self._closed or final
            executor, self._ready = self._ready, None
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)


_SPARE = _SpareExecutor()
_LIVE_POOLS: weakref.WeakSet = weakref.WeakSet()


def shutdown_workers(*, final: bool = False) -> None:
    """Kill every worker process of this module (the spare and running pools): a process that exits
    must not leave workers behind holding its stdout and stderr open (an MCP client waits for EOF)."""
    for pool in list(_LIVE_POOLS):
        try:
            pool._executor.shutdown(wait=True, kill_workers=True)  # wait: the kill happens in its thread
        except Exception:  # noqa: BLE001, S110 - best effort on the way out
            pass
    _SPARE.close(final=final)


@contextmanager
def _killable_execution(
    n_jobs: int, should_stop: Callable[[], bool] | None, threads: int
) -> Iterator[Execution]:
    pool = KillablePool(max(1, n_jobs), should_stop, threads)
    started = time.perf_counter()
    try:
        yield Execution(pool.run, pool.n_workers, f"process(n_jobs={pool.n_workers})", pool.stream)
    except BaseException:
        pool.kill()
        raise
    else:
        pool.close()
    finally:
        logger.debug("killable pool lived %.2f s", time.perf_counter() - started)


def run_stoppable(
    fn: Callable[..., Any], *args: Any, should_stop: Callable[[], bool] | None, threads: int | None = None
) -> Any:
    """``fn(*args)`` in a killable worker process (``fn`` at module level, arguments picklable);
    ``ExecutionInterrupted`` as soon as ``should_stop()`` turns true, the worker killed.
    ``threads``: the fit's native threads; default: the current job's whole share."""
    with _killable_execution(1, should_stop, threads if threads is not None else fit_threads(1)) as ex:
        return ex.runner([(fn, args)])[0]
