"""Worker processes that a stop kills at once: trials and pipeline fits of the server's jobs.

``KillablePool`` runs tasks in loky worker processes owned by one search or fit; a stop (cancel,
job timeout, shutdown) kills them, so the fit in flight ends within STOP_POLL_SECONDS plus a kill,
not when the trial would have finished. A warm single-worker executor is kept as the spare between
jobs. Every worker is forked by one long-lived thread and runs ``mcp_server.workers.init_worker``
first: it dies with the server and its memory is bounded.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mcp_server.hyperparameter_tuning._tasks import Execution, Task
from mcp_server.threads import call_limited, fit_threads, thread_env

logger = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.05


class ExecutionInterrupted(Exception):
    """The search was stopped while trials were running: their workers were killed, results lost."""


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
def killable_execution(
    n_jobs: int, should_stop: Callable[[], bool] | None, threads: int
) -> Iterator[Execution]:
    """An ``Execution`` on a ``KillablePool`` of ``n_jobs`` workers, killed if the block raises."""
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
    with killable_execution(1, should_stop, threads if threads is not None else fit_threads(1)) as ex:
        return ex.runner([(fn, args)])[0]
