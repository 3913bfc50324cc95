"""Native thread pools (OpenMP, BLAS) sized so that fits share the machine (architecture rule 19).

    concurrent jobs × parallel trials × threads per fit ≤ cores

Unbounded, every fit starts one OpenMP / BLAS thread per core; two HistGradientBoosting tuning
jobs at once then took 91 s instead of 9 s (OpenMP threads spin while they wait, so oversubscribed
pools slow every fit down instead of sharing the cores). So:

* the JobManager gives each job its share, ``cores // max_concurrent_jobs`` (``job_share``), and
  bounds the job's own thread with it;
* a search divides its job's share among its parallel trials (``fit_threads(n_jobs)``) and runs
  every task inside ``limit_threads`` (``call_limited``), wherever the task runs: the job's thread,
  a joblib thread, a loky or killable worker process (whose environment, ``thread_env``, is set
  before numpy loads there), or a Dask task (sized to the Dask worker's own machine);
* outside a job (plain library use) the share is the machine's usable cores;
* a limit already in force (the caller's own ``threadpool_limits``, a worker's environment) is
  never raised.

A low layer: imports nothing from the rest of the package (threadpoolctl only when a limit is set).
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# What a worker process reads when its native libraries load (joblib's loky backend sets the same).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS",
)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container or ``taskset`` may give
    fewer than the machine has), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def threads_per_fit(cores: int, *, concurrent_jobs: int = 1, parallel: int = 1) -> int:
    """The largest thread count with concurrent_jobs × parallel × threads ≤ cores; at least 1."""
    return max(1, int(cores) // (max(1, int(concurrent_jobs)) * max(1, int(parallel))))


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that bound a new process's native pools (set before numpy loads)."""
    return {name: str(max(1, int(threads))) for name in THREAD_ENV_VARS}


# --- the current job's share --------------------------------------------------------------------

_JOB_SHARE: contextvars.ContextVar[int | None] = contextvars.ContextVar("nba_mcp_job_threads", default=None)


@contextmanager
def job_share(threads: int) -> Iterator[int]:
    """Within the block (the job's thread), fits share ``threads`` native threads among them."""
    token = _JOB_SHARE.set(max(1, int(threads)))
    try:
        yield max(1, int(threads))
    finally:
        _JOB_SHARE.reset(token)


def current_share() -> int:
    """The current job's threads, or the machine's usable cores outside a job."""
    share = _JOB_SHARE.get()
    return share if share is not None else usable_cores()


def fit_threads(parallel: int = 1) -> int:
    """Threads per fit when ``parallel`` fits of the current job run at once."""
    return threads_per_fit(current_share(), parallel=parallel)


# --- limiting the pools of this process ---------------------------------------------------------

_lock = threading.Lock()
_controller: Any = None
_controller_modules = -1
# OpenMP's limit belongs to the calling thread (libgomp and libomp keep it per thread), BLAS pools
# are process-wide: while scopes overlap (jobs in threads), BLAS holds the smallest active limit and
# the last scope out restores what was there before the first.
_blas_limits: list[int] = []
_blas_original: Any = None
_blas_ceiling = 0  # BLAS's own limit before the first scope: no scope raises it


@contextmanager
def _controlling_blas() -> Iterator[None]:
    """threadpoolctl >= 3.8 lets one thread at a time set OpenBLAS's process-wide pool and silently
    ignores the others (measured: a job thread's limit held, its trial threads' were dropped). Every
    change here is serialized under ``_lock``, so take control for the change and hand it back."""
    import threadpoolctl

    release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    try:
        yield
    finally:
        if release is not None:
            release(force=True)


def _current_controller() -> Any:
    """threadpoolctl's scan of the loaded libraries costs ~4 ms: scan again only after new imports
    (which is when a native library can have been loaded). Lock held."""
    global _controller, _controller_modules
    if _controller is None or len(sys.modules) != _controller_modules:
        from threadpoolctl import ThreadpoolController

        _controller, _controller_modules = ThreadpoolController(), len(sys.modules)
    return _controller


def _limit_in_force(pools: Any) -> int:
    """The smallest limit the ``pools`` hold now (a caller's own threadpool_limits, a worker's
    environment): bounding never raises it (raising slowed a benchmark's one-thread searches down)."""
    return min((n for n in (lib.num_threads for lib in pools.lib_controllers) if n), default=sys.maxsize)


@contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Bound OpenMP (this thread) and BLAS (this process) to ``threads`` while the block runs."""
    global _blas_original, _blas_ceiling
    threads = max(1, int(threads))
    with _lock:
        controller = _current_controller()
        # Separate selections: a limiter restores every library it holds, in the calling thread.
        blas, openmp_pools = controller.select(user_api="blas"), controller.select(user_api="openmp")
        openmp = openmp_pools.limit(limits=min(threads, _limit_in_force(openmp_pools)))
        if _blas_original is None:
            _blas_ceiling = _limit_in_force(blas)  # what held before any scope of ours
        target = min(threads, _blas_ceiling)
        _blas_limits.append(target)
        with _controlling_blas():
            if _blas_original is None:
                _blas_original = blas.limit(limits=target)  # remembers the limits from before
            else:
                blas.limit(limits=min(_blas_limits))
    try:
        yield
    finally:
        with _lock:
            openmp.restore_original_limits()
            _blas_limits.remove(target)
            with _controlling_blas():
                if _blas_limits:
                    blas.limit(limits=min(_blas_limits))
                else:
                    _blas_original.restore_original_limits()
                    _blas_original = None


def call_limited(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with the pools bounded: the unit shipped to workers (module level, so picklable)."""
    with limit_threads(threads):
        return fn(*args)
