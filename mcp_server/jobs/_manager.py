"""JobManager: runs submitted work in threads with bounded concurrency, progress, cancel, timeouts."""

from __future__ import annotations

import collections
import logging
import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_server.error_handling import (
    InvalidRequestError,
    MCPServerError,
    NotFoundError,
    ResourceLimitError,
    error_recorder,
)
from mcp_server.jobs._types import (
    JobCancelledError,
    JobEvent,
    JobFailedError,
    JobProgress,
    JobSnapshot,
    JobState,
)
from mcp_server.threads import job_share, limit_threads, threads_per_fit, usable_cores

logger = logging.getLogger("mcp_server.jobs")


class JobContext:
    """What the work sees of its job: progress reporting and the cooperative stop signal."""

    def __init__(self, job: _Job, manager: JobManager) -> None:
        self._job = job
        self._manager = manager

    @property
    def job_id(self) -> str:
        return self._job.job_id

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the job is cancelled or timed out; check it between trials or stages."""
        return self._job.cancel_event

    def should_stop(self) -> bool:
        return self._job.cancel_event.is_set()

    def report(self, current: float, total: float | None = None, message: str = "") -> None:
        """Record progress; the message also goes to the job's event log."""
        self._manager._update(self._job, progress=JobProgress(current, total, message), event=message)

    def log(self, message: str) -> None:
        self._manager._update(self._job, event=message)


@dataclass
class _Job:
    job_id: str
    kind: str
    fn: Callable[[JobContext], Any]
    params: dict[str, Any]
    owner: str | None
    state: JobState = JobState.QUEUED
    progress: JobProgress = field(default_factory=JobProgress)
    events: list[JobEvent] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    version: int = 0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    timed_out: bool = False
    grace_armed: bool = False
    released: bool = False  # its slot was given back (by the work ending or by abandonment)
    done: threading.Event = field(default_factory=threading.Event)
    # The submitting caller's context (who asked, through which tool): the work runs inside it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class JobManager:
    """Runs submitted work in threads with bounded concurrency, progress, cancel and timeouts."""

    def __init__(
        self,
        *,
        max_concurrent: int = 2,
        job_timeout: float | None = 3600.0,
        max_queued: int = 100,
        max_kept: int = 500,
        max_events: int = 1000,
        max_per_owner: int | None = None,
        stop_grace: float | None = 10.0,
        cores: int | None = None,
    ) -> None:
        """``cores``: the cores the jobs share (settings.cores; default: this machine's usable cores)."""
        if max_concurrent < 1:
            raise InvalidRequestError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if job_timeout is not None and job_timeout <= 0:
            raise InvalidRequestError(f"job_timeout must be positive, got {job_timeout}")
        self.max_concurrent = max_concurrent
        self.job_timeout = job_timeout
        self.max_queued = max_queued
        self.max_kept = max_kept
        self.max_events = max_events
        self.max_per_owner = max_per_owner
        self.stop_grace = stop_grace
        # Each running job's share of the native threads (architecture rule 19): its fits divide it.
        self.threads_per_job = threads_per_fit(cores or usable_cores(), concurrent_jobs=max_concurrent)
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._pending: collections.deque[str] = collections.deque()
        self._running = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False

    # --- public API -----------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        fn: Callable[[JobContext], Any],
        params: Mapping[str, Any] | None = None,
        *,
        owner: str | None = None,
    ) -> str:
        """Queue ``fn(job_context)``; returns the job id at once."""
        job = _Job(
            job_id=uuid.uuid4().hex[:12], kind=kind, fn=fn, params=dict(params or {}), owner=owner
        )
        with self._lock:
            if self._closed:
                raise ResourceLimitError("the job manager is shut down; no new jobs are accepted")
            if len(self._pending) >= self.max_queued:
                raise ResourceLimitError(
                    f"at most {self.max_queued} jobs may wait in the queue, got one more"
                )
            if self.max_per_owner is not None:
                active = sum(1 for j in self._jobs.values() if j.owner == owner and not j.state.is_terminal)
                if active >= self.max_per_owner:
                    raise ResourceLimitError(
                        f"at most {self.max_per_owner} jobs per principal may be queued or running "
                        f"(settings.max_jobs_per_principal); {owner!r} has {active}: wait for one or cancel it"
                    )
            self._jobs[job.job_id] = job
            self._pending.append(job.job_id)
            self._add_event(job, f"queued {kind} job")
            self._forget_old_jobs()
            self._start_pending()
        return job.job_id

    def get(self, job_id: str) -> JobSnapshot:
        with self._lock:
            return self._snapshot(self._find(job_id))

    def list(
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 50
    ) -> list[JobSnapshot]:
        """Most recent first."""
        with self._lock:
            jobs = [
                j
                for j in reversed(self._jobs.values())
                if (state is None or j.state == state) and (kind is None or j.kind == kind)
            ]
            return [self._snapshot(j) for j in jobs[:limit]]

    def cancel(self, job_id: str) -> JobSnapshot:
        """Ask a job to stop: a queued job is cancelled at once, a running one after its current step."""
        with self._lock:
            job = self._find(job_id)
            if job.state.is_terminal:
                return self._snapshot(job)
            job.cancel_requested = True
            job.cancel_event.set()
            if job.state == JobState.QUEUED:
                self._pending.remove(job.job_id)
                self._finish(job, JobState.CANCELLED, error="cancelled before it started")
            else:
                self._add_event(job, "cancellation requested; stopping the work in progress")
                self._arm_grace(job)
            return self._snapshot(job)

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job ends or ``timeout`` seconds pass; returns its snapshot either way."""
        with self._lock:
            job = self._find(job_id)
        job.done.wait(timeout)
        return self.get(job_id)

    def wait_for_change(self, job_id: str, version: int, timeout: float) -> JobSnapshot:
        """Block until the job's version passes ``version`` (progress, event or state) or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            job = self._find(job_id)
            while job.version <= version and not job.state.is_terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._snapshot(job)

    @property
    def running_count(self) -> int:
        with self._lock:
            return self._running

    @property
    def queued_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def shutdown(self, *, cancel: bool = True, timeout: float | None = 10.0) -> None:
        """Refuse new jobs; optionally cancel the rest and wait for running work to stop."""
        with self._lock:
            self._closed = True
            jobs = [j for j in self._jobs.values() if not j.state.is_terminal]
        if cancel:
            for job in jobs:
                self.cancel(job.job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in jobs:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            job.done.wait(remaining)

    # --- internals (call with the lock held unless noted) -----------------------------------
    def _find(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job_id {job_id!r} does not name a known job")
        return job

    def _snapshot(self, job: _Job) -> JobSnapshot:
        return JobSnapshot(
            job_id=job.job_id,
            kind=job.kind,
            state=job.state,
            params=dict(job.params),
            owner=job.owner,
            progress=job.progress,
            events=tuple(job.events),
            result=job.result,
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            version=job.version,
        )

    def _add_event(self, job: _Job, message: str, progress: JobProgress | None = None) -> None:
        seq = job.events[-1].seq + 1 if job.events else 1
        job.events.append(JobEvent(time.time(), message, seq, progress))
        if len(job.events) > self.max_events:
            del job.events[: len(job.events) - self.max_events]
        job.version += 1
        self._changed.notify_all()

    def _update(self, job: _Job, *, progress: JobProgress | None = None, event: str = "") -> None:
        # Called from the worker thread.
        with self._lock:
            if progress is not None:
                job.progress = progress
            if event:
                self._add_event(job, event, progress)
            else:
                job.version += 1
                self._changed.notify_all()

    def _forget_old_jobs(self) -> None:
        finished = [j.job_id for j in self._jobs.values() if j.state.is_terminal]
        for job_id in finished[: max(0, len(self._jobs) - self.max_kept)]:
            del self._jobs[job_id]

    def _start_pending(self) -> None:
        while self._pending and self._running < self.max_concurrent:
            job = self._jobs[self._pending.popleft()]
            job.state = JobState.RUNNING
            job.started_at = time.time()
            self._running += 1
            self._add_event(job, "started")
            threading.Thread(
                target=self._run, args=(job,), name=f"job-{job.kind}-{job.job_id}", daemon=True
            ).start()

    def _finish(self, job: _Job, state: JobState, *, result: Any = None, error: str | None = None) -> None:
        job.state = state
        job.result = result
        job.error = error
        job.finished_at = time.time()
        self._add_event(job, f"{state.value.lower()}" + (f": {error}" if error else ""))
        job.done.set()

    def _on_timeout(self, job: _Job) -> None:
        with self._lock:
            if job.state != JobState.RUNNING:
                return
            job.timed_out = True
            job.cancel_event.set()
            self._add_event(job, f"timed out after {self.job_timeout:g} s; stopping the work in progress")
            self._arm_grace(job)

    def _arm_grace(self, job: _Job) -> None:
        """Lock held. Work that ignores the stop signal for ``stop_grace`` seconds is abandoned:
        the job ends and its slot goes to the next one, so no job can hold a slot for good."""
        if self.stop_grace is None or job.grace_armed:
            return
        job.grace_armed = True
        timer = threading.Timer(self.stop_grace, self._abandon, args=(job,))
        timer.daemon = True
        timer.start()

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            if job.state != JobState.RUNNING or job.released:
                return
            job.released = True
            self._running -= 1
            logger.warning("job %s (%s) did not stop within %g s; its slot is released", job.job_id, job.kind,
                           self.stop_grace)
            reason = (f"job exceeded job_timeout_seconds={self.job_timeout:g}" if job.timed_out
                      else "cancelled")
            self._finish(job, JobState.FAILED if job.timed_out else JobState.CANCELLED,
                         error=f"{reason}; the work did not stop within {self.stop_grace:g} s and was abandoned")
            if not self._closed:
                self._start_pending()

    def _call(self, job: _Job) -> Any:
        # The job's share holds for every fit it starts, and bounds its own thread's pools too
        # (leak screens, Bayesian proposals and unisolated fits run there).
        with job_share(self.threads_per_job), limit_threads(self.threads_per_job):
            return job.fn(JobContext(job, self))

    def _run(self, job: _Job) -> None:
        # Runs in the job's own thread, without the lock.
        timer = None
        if self.job_timeout is not None:
            timer = threading.Timer(self.job_timeout, self._on_timeout, args=(job,))
            timer.daemon = True
            timer.start()
        result: Any = None
        error: str | None = None
        try:
            result = job.context.run(self._call, job)
            failed = False
        except JobCancelledError:
            failed = False
        except JobFailedError as exc:
            failed, error, result = True, str(exc), exc.result
            logger.info("job %s (%s) failed: %s", job.job_id, job.kind, exc)
        except MCPServerError as exc:
            failed, error = True, str(exc)
            logger.info("job %s (%s) failed: %s", job.job_id, job.kind, exc)
        except Exception as exc:  # the job fails; the server keeps serving
            # Details stay in the log; callers get an id to quote (like unexpected tool errors).
            record = error_recorder.record(exc, context=f"job {job.kind} {job.job_id}")
            failed = True
            error = f"internal error (error id {record.error_id}); the details are in the server log"
            logger.exception("job %s (%s) crashed [error id %s]", job.job_id, job.kind, record.error_id)
        finally:
            if timer is not None:
                timer.cancel()
        with self._lock:
            if job.released:  # abandoned after the stop grace: the job already ended
                return
            job.released = True
            self._running -= 1
            if job.timed_out:
                self._finish(
                    job,
                    JobState.FAILED,
                    result=result,
                    error=f"job exceeded job_timeout_seconds={self.job_timeout:g}",
                )
            elif job.cancel_requested:
                self._finish(job, JobState.CANCELLED, result=result, error=error)
            elif failed:
                self._finish(job, JobState.FAILED, result=result, error=error)
            else:
                self._finish(job, JobState.SUCCEEDED, result=result)
            if not self._closed:
                self._start_pending()
