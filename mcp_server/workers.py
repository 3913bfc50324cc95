"""What every worker process of this server runs first: it dies with the server, and its memory is bounded.

Trial and pipeline fits run in worker processes (``hyperparameter_tuning._worker_pool``). Measured
before this module: after a SIGKILL of the server, a worker went on fitting 4,000 trees for 50 s and
it and two resource trackers were alive 400 s later. Now each worker, in its initializer:

* asks the kernel for SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``): immediate,
  whatever the worker is doing, GIL or not. The kernel's "parent" is the *thread* that forked the
  worker, so the pool spawns every worker from one thread that lives as long as the server
  (``_worker_pool``); otherwise a job thread ending would kill the warm spare it started;
* watches its parent in a daemon thread (a pidfd where the kernel has them, else ``getppid()``
  polled): the portable fallback, and a second line if the signal was lost;
* lowers ``RLIMIT_AS`` to ``worker_memory_limit_mb``, so a runaway fit raises ``MemoryError`` in
  the worker (a failed trial whose error names the limit and the setting) instead of taking the
  machine's memory. Address space, not resident memory: a warm worker maps ~0.6-1.0 GB here.

The resource trackers exit by themselves once the server and the workers are gone: they read a pipe
whose writers are exactly those processes.

A low layer: imports nothing from the rest of the package.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 0.25  # the fallback watch, where no pidfd is available
SETTING = "worker_memory_limit_mb"

_memory_limit_mb: int | None = None  # the server's setting, handed to the workers it starts
_limit_in_this_worker: int | None = None  # set by init_worker: this process is a worker with this limit


def configure(*, memory_limit_mb: int | None) -> None:
    """The server's ``worker_memory_limit_mb`` (None: no limit), applied to workers started from now on."""
    global _memory_limit_mb
    _memory_limit_mb = int(memory_limit_mb) if memory_limit_mb else None


def initializer_args() -> tuple[int, int | None]:
    """What ``init_worker`` needs: this process's pid (the parent to watch) and the memory limit."""
    return os.getpid(), _memory_limit_mb


def init_worker(parent_pid: int, memory_limit_mb: int | None) -> None:
    """The pool's initializer, run first in every worker. Never raises for an optional safeguard:
    an initializer that raises breaks the pool."""
    _die_with_parent(parent_pid)
    if memory_limit_mb:
        _limit_memory(memory_limit_mb)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            logger.warning("no parent-death signal for this worker: %s", exc)
    if os.getppid() != parent_pid:  # the server died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-server", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    try:
        fd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_POLL_SECONDS)
    else:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)  # readable once the process has exited
        while not poller.poll():
            pass
    os._exit(1)


def _limit_memory(memory_limit_mb: int) -> None:
    global _limit_in_this_worker
    try:
        import resource

        limit = int(memory_limit_mb) * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        _limit_in_this_worker = int(memory_limit_mb)
    except (ImportError, ValueError, OSError) as exc:  # not POSIX, or refused
        logger.warning("worker memory limit of %s MB not applied: %s", memory_limit_mb, exc)


def memory_limit_message(limit_mb: int | None = None) -> str:
    limit_mb = limit_mb if limit_mb is not None else (_limit_in_this_worker or _memory_limit_mb)
    return (f"the fit needed more memory than a worker may use ({SETTING}={limit_mb} MB): "
            "lower the sizes in the search space or the data, or raise the setting")


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of a failed fit; a MemoryError in a memory-limited worker names the limit."""
    if isinstance(exc, MemoryError) and _limit_in_this_worker is not None:
        return f"MemoryError: {memory_limit_message(_limit_in_this_worker)} ({exc})"
    return f"{type(exc).__name__}: {exc}"


def explain_memory_errors(fn, *args):
    """``fn(*args)``, a MemoryError raised again with the limit named (the task run in a worker)."""
    try:
        return fn(*args)
    except MemoryError as exc:
        if _limit_in_this_worker is None:
            raise
        raise MemoryError(f"{memory_limit_message(_limit_in_this_worker)} ({exc})") from None
