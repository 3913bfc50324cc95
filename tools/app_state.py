"""The server's state: settings, the job manager, the data catalog and one tracker per experiment.

One ``AppState`` per server process, created by ``build_server`` and handed to every tool as the
lifespan context (``state_of(ctx)``); it is built outside the lifespan because stdio and SSE enter
the lifespan once per connection, and jobs must outlive the connection that started them. The
catalog and trackers import heavy libraries (mlflow, pandas, scikit-learn), so they are built on
first use, never at import time: a freshly spawned server answers ``tools/list`` fast.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mcp_server.jobs import JobManager
from mcp_server.settings import Settings

if TYPE_CHECKING:
    from mcp_server import rbac
    from mcp_server.datasets import DatasetCatalog
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)
# Of a shutdown's urgent window: what is kept to end the runs the jobs have not ended themselves
# (a flush, one query and ~20 ms per run on local sqlite: 0.1-0.5 s measured on the loaded 2-core
# box). A stopped search ends its parent within ~0.5 s of the cancel, then writes its summary and
# plot; those need not hold the shutdown.
RUN_ENDING_RESERVE = 0.8


class AppState:
    def __init__(self, settings: Settings, *, jobs: JobManager | None = None) -> None:
        self.settings = settings
        self.jobs = jobs or JobManager(
            max_concurrent=settings.max_concurrent_jobs,
            job_timeout=settings.job_timeout_seconds,
            max_queued=settings.max_queued_jobs,
            max_per_owner=settings.max_jobs_per_principal,
            stop_grace=settings.job_stop_grace_seconds,
            cores=settings.cores,
        )
        from mcp_server import workers

        workers.configure(memory_limit_mb=settings.worker_memory_limit_mb)  # the workers started from now on
        self.started_at = time.time()
        self.tool_permissions: dict[str, rbac.Permission] = {}
        self._lock = threading.Lock()
        self._trackers: dict[str, Tracker] = {}
        self._resuming: set[str] = set()  # parent runs of searches being resumed by a job here

    @property
    def uptime_seconds(self) -> float:
        return time.time() - self.started_at

    @cached_property
    def catalog(self) -> DatasetCatalog:
        from mcp_server.datasets import DatasetCatalog

        return DatasetCatalog(self.settings)

    def tracker(self, experiment_name: str | None = None) -> Tracker:
        """The MLflow tracker bound to ``experiment_name`` (default: settings.experiment_name)."""
        name = experiment_name or self.settings.experiment_name
        with self._lock:
            tracker = self._trackers.get(name)
        if tracker is None:
            from mcp_server.mlflow_integration import get_mlflow_tracker

            tracker = get_mlflow_tracker(name, settings=self.settings)
            with self._lock:
                tracker = self._trackers.setdefault(name, tracker)
        return tracker

    @staticmethod
    def _stop_workers(*, final: bool) -> None:
        """Kill the trial and fit worker processes, if any were started (they hold our stdout)."""
        import sys

        if "mcp_server.hyperparameter_tuning._worker_pool" in sys.modules:  # else no worker was started
            from mcp_server.hyperparameter_tuning import shutdown_workers

            shutdown_workers(final=final)

    def claim_resume(self, run_id: str) -> None:
        """Refuse a second resume of a search whose resume this server has accepted and not finished."""
        from mcp_server.error_handling import ConflictError

        # Claimed while a call checks and queues it, then by the queued or running job itself.
        with self._lock:
            busy = run_id in self._resuming or any(
                s.params.get("resume_from") == run_id and not s.state.is_terminal
                for s in self.jobs.list(kind="tune", limit=self.jobs.max_kept)
            )
            if busy:
                raise ConflictError(
                    f"resume_from={run_id!r} is already being resumed by another job; wait for it to end"
                )
            self._resuming.add(run_id)

    def release_resume(self, run_id: str) -> None:
        with self._lock:
            self._resuming.discard(run_id)

    def end_work_now(self, deadline: float, *, reason: str) -> list[str]:
        """The urgent part of a shutdown, done by ``deadline`` (``time.monotonic()``): every job
        cancelled and the worker processes killed, the jobs given until RUN_ENDING_RESERVE before
        the deadline to end their own runs (KILLED, best score so far), then whatever this process
        still has RUNNING ended KILLED (the best score so far is on a search's parent already:
        it is logged as it improves). Returns the runs ended here."""
        started = time.monotonic()
        self.jobs.shutdown(cancel=True, timeout=0)  # cancel first: a job then reads its killed workers as a stop
        self._stop_workers(final=True)
        killed = time.monotonic()
        self.jobs.shutdown(cancel=True, timeout=max(0.0, deadline - RUN_ENDING_RESERVE - time.monotonic()))
        logger.debug("workers killed in %.2f s, jobs waited for %.2f s", killed - started, time.monotonic() - killed)
        with self._lock:
            trackers = list(self._trackers.values())
        ended: list[str] = []
        for tracker in trackers:
            if time.monotonic() >= deadline:
                logger.warning("no time left to end the runs of experiment %s now", tracker.experiment_name)
                continue
            try:
                tracker.flush()
                ended += tracker.end_own_runs(reason=reason)
            except Exception:  # noqa: BLE001 - a dead store must not stop the shutdown
                logger.exception("could not end the runs of experiment %s", tracker.experiment_name)
        return ended

    def close(self, timeout: float | None = None, *, reason: str = "the server stopped",
              exiting: bool = False) -> list[str]:
        """Stop every job (their runs end KILLED with what they had), then end KILLED whatever this
        process still has RUNNING, within about ``timeout`` seconds; returns the runs ended here."""
        timeout = self.settings.shutdown_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.jobs.shutdown(cancel=True, timeout=timeout * 0.6)
        with self._lock:
            trackers = list(self._trackers.values())
        self._stop_workers(final=exiting)
        ended: list[str] = []
        for tracker in trackers:
            try:
                tracker.close()  # flushes buffered trial writes
                if time.monotonic() < deadline:
                    ended += tracker.end_own_runs(reason=reason)  # its experiment, never creating it
            except Exception:  # noqa: BLE001 - a dead store must not stop the shutdown
                logger.exception("could not end the runs of experiment %s at shutdown", tracker.experiment_name)
        if ended:
            logger.warning("ended %d run(s) KILLED at shutdown: %s", len(ended), ", ".join(ended))
        return ended


def state_of(ctx: Any) -> AppState:
    """The server's state, from a tool's ``Context`` (the lifespan context ``build_server`` yields)."""
    return ctx.request_context.lifespan_context
