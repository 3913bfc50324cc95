"""JobManager: runs submitted work in threads with bounded concurrency, progress, cancel, timeouts."""

from __future__ import annotations

import collections
import logging
import contextvars
import enum
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_server import operator_metrics
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


class _AnyOwner(enum.Enum):
    ANY = "any"


ANY_OWNER = _AnyOwner.ANY  # JobManager.list's default: every principal's jobs (None is "no owner")


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
        """Record progress; the message also goes to the job's event log. A progress report is a
        step boundary (a trial, a stage): where a job asked to share its slot gives it up."""
        self._manager._update(self._job, progress=JobProgress(current, total, message), event=message)
        if total is None or current < total:  # after the last step there is no slot to hand over
            self._manager._yield_point(self._job)

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
    cause: BaseException | None = None  # the library error of a FAILED job
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    version: int = 0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    timed_out: bool = False
    grace_armed: bool = False
    released: bool = False  # the job has ended (by the work ending or by abandonment)
    holding: bool = False  # it holds a running slot now
    yield_requested: bool = False  # asked to give its slot to another principal at its next step
    paused: bool = False  # gave its slot up (fair sharing): its thread waits for one again
    resume: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # The submitting caller's context (who asked, through which tool): the work runs inside it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class JobManager:
    """Runs submitted work in threads with bounded concurrency, progress, cancel and timeouts.

    Slots are shared fairly between principals (owners). A free slot goes to the waiting job whose
    owner holds the fewest slots, then whose owner was served longest ago (round robin); of one
    owner's jobs a paused one first, then in submission order. And while other principals have jobs
    waiting, no principal keeps more than ``max(1, slots - principals waiting)`` slots: the excess
    jobs (the most recently started first) give their slot up at their next step
    (``JobContext.report``: a trial, a stage), wait paused (still RUNNING, an event says so) and
    resume when a slot frees. Measured before: a developer's 4 slow jobs held both slots and an
    analyst's 1-trial job waited for them to end (up to job_timeout_seconds). With a single slot,
    jobs are never paused; principals alternate. A paused job's time still counts against its
    timeout and its search's budget.
    """

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
        self._served: dict[str | None, int] = {}  # owner -> when a slot last went to it (a counter)
        self._served_count = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        operator_metrics.watch_jobs(self)

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
        self, *, state: JobState | None = None, kind: str | None = None, limit: int = 50,
        owner: str | None | _AnyOwner = ANY_OWNER,
    ) -> list[JobSnapshot]:
        """Most recent first; ``owner``: only that principal's jobs (None: jobs without an owner)."""
        with self._lock:
            jobs = [
                j
                for j in reversed(self._jobs.values())
                if (state is None or j.state == state) and (kind is None or j.kind == kind)
                and (owner is ANY_OWNER or j.owner == owner)
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
                job.resume.set()  # a paused job wakes up to stop
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

    def active_counts(self) -> dict[tuple[str, str], int]:
        """(kind, "queued" | "running") -> jobs in that state now (what the operator's gauges show)."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for job in self._jobs.values():
                if not job.state.is_terminal:
                    key = (job.kind, job.state.value.lower())
                    counts[key] = counts.get(key, 0) + 1
        return counts

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
                self.cancel(job.job_id)  # a paused job is woken to stop
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
            cause=job.cause,
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
            job = self._next_fair()
            self._pending.remove(job.job_id)
            job.holding = True
            self._running += 1
            if job.paused:
                job.paused = False
                self._add_event(job, "resumed: a slot is free again")
                job.resume.set()
                continue
            job.state = JobState.RUNNING
            job.started_at = time.time()
            self._add_event(job, "started")
            job.thread = threading.Thread(
                target=self._run, args=(job,), name=f"job-{job.kind}-{job.job_id}", daemon=True
            )
            job.thread.start()
        self._share_slots()

    def _holding(self, owner: str | None) -> int:
        return sum(1 for j in self._jobs.values() if j.holding and j.owner == owner)

    def _next_fair(self) -> _Job:
        """The waiting job whose owner holds the fewest slots, then was served longest ago (round
        robin); of that owner's jobs a paused one first, then the oldest."""
        order = {job_id: i for i, job_id in enumerate(self._pending)}
        held: dict[str | None, int] = {}
        for job_id in self._pending:
            owner = self._jobs[job_id].owner
            if owner not in held:
                held[owner] = self._holding(owner)
        job = min((self._jobs[j] for j in self._pending),
                  key=lambda job: (held[job.owner], self._served.get(job.owner, -1), not job.paused, order[job.job_id]))
        self._served_count += 1
        self._served[job.owner] = self._served_count
        return job

    def _fair_cap(self, owner: str | None) -> int | None:
        """The slots ``owner`` may keep while others wait; None when nobody else waits."""
        others = {self._jobs[j].owner for j in self._pending} - {owner}
        return max(1, self.max_concurrent - len(others)) if others else None

    def _share_slots(self) -> None:
        """Every slot taken and other principals waiting: ask each principal's excess jobs (the most
        recently started first) to give their slot up at their next step."""
        if not self._pending or self._closed:
            return
        for owner in {j.owner for j in self._jobs.values() if j.holding}:
            cap = self._fair_cap(owner)
            if cap is None:
                continue
            mine = [j for j in self._jobs.values() if j.holding and j.owner == owner]
            excess = len(mine) - cap - sum(j.yield_requested for j in mine)
            for job in sorted((j for j in mine if not j.yield_requested and not j.cancel_event.is_set()),
                              key=lambda j: j.started_at or 0.0, reverse=True)[:max(0, excess)]:
                job.yield_requested = True
                self._add_event(job, "other principals are waiting: this job gives its slot up after its current step")

    def _yield_point(self, job: _Job) -> None:
        """Called from the job's own thread at a step boundary: give the slot up if asked and it still
        helps, wait (paused) for a slot, and go on. A cancel or a timeout wakes it to stop."""
        if not job.yield_requested or threading.current_thread() is not job.thread:
            return
        with self._lock:
            job.yield_requested = False
            cap = self._fair_cap(job.owner)
            if job.cancel_event.is_set() or self._closed or cap is None or self._holding(job.owner) <= cap:
                return  # whoever waited is gone, or the job is stopping anyway
            job.holding, job.paused = False, True
            self._running -= 1
            job.resume.clear()
            self._pending.appendleft(job.job_id)
            self._add_event(job, "paused: its slot went to another principal's job (fair sharing); "
                                 "it resumes when a slot frees")
            logger.info("job %s (%s) of %r paused for fair sharing", job.job_id, job.kind, job.owner)
            self._start_pending()
        while not job.resume.wait(0.5):
            if job.cancel_event.is_set():
                break
        with self._lock:
            if job.paused:  # woken to stop (cancel, timeout, shutdown): it stops without a slot
                job.paused = False
                if job.job_id in self._pending:
                    self._pending.remove(job.job_id)

    def _give_slot_back(self, job: _Job) -> None:
        if job.holding:
            job.holding = False
            self._running -= 1
        if job.paused and job.job_id in self._pending:
            self._pending.remove(job.job_id)
        job.paused = False

    def _finish(self, job: _Job, state: JobState, *, result: Any = None, error: str | None = None) -> None:
        job.state = state
        job.result = result
        job.error = error
        job.finished_at = time.time()
        self._add_event(job, f"{state.value.lower()}" + (f": {error}" if error else ""))
        job.done.set()
        outcome = ("timeout" if job.timed_out else "failed") if state is JobState.FAILED else (
            "completed" if state is JobState.SUCCEEDED else "cancelled")
        operator_metrics.job_ended(job.kind, outcome, created=job.created_at, started=job.started_at,
                                   finished=job.finished_at)

    def _on_timeout(self, job: _Job) -> None:
        with self._lock:
            if job.state != JobState.RUNNING:
                return
            job.timed_out = True
            job.cancel_event.set()
            job.resume.set()
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
            self._give_slot_back(job)
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
        cause: BaseException | None = None
        try:
            result = job.context.run(self._call, job)
            failed = False
        except JobCancelledError:
            failed = False
        except JobFailedError as exc:
            failed, error, result = True, str(exc), exc.result
            logger.info("job %s (%s) failed: %s", job.job_id, job.kind, exc)
        except MCPServerError as exc:
            failed, error, cause = True, str(exc), exc
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
            self._give_slot_back(job)
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
                job.cause = cause
            else:
                self._finish(job, JobState.SUCCEEDED, result=result)
            if not self._closed:
                self._start_pending()
