"""JobManager: states, progress, cooperative cancel, bounded concurrency, timeouts, survival."""

from __future__ import annotations

import threading
import time

import pytest

from mcp_server.error_handling import (
    ExecutionError,
    InvalidRequestError,
    NotFoundError,
    ResourceLimitError,
)
from mcp_server.jobs import JobContext, JobManager, JobState


def steps_work(n: int, *, delay: float = 0.01):
    """Work that reports progress per step and stops cooperatively when asked."""

    def work(job: JobContext) -> dict:
        done = 0
        for i in range(n):
            if job.should_stop():
                break
            time.sleep(delay)
            done = i + 1
            job.report(done, n, f"step {done}/{n}")
        return {"steps_done": done}

    return work


def blocking_work(release: threading.Event):
    def work(job: JobContext) -> str:
        while not release.wait(0.01):
            if job.should_stop():
                return "stopped"
        return "released"

    return work


@pytest.fixture
def manager():
    m = JobManager(max_concurrent=2, job_timeout=30)
    yield m
    m.shutdown(timeout=5)


def test_job_succeeds_with_result_progress_and_events(manager):
    job_id = manager.submit("count", steps_work(3), {"n": 3}, owner="alice")
    snap = manager.wait(job_id, timeout=5)
    assert snap.state is JobState.SUCCEEDED
    assert snap.result == {"steps_done": 3}
    assert (snap.progress.current, snap.progress.total, snap.progress.message) == (3, 3, "step 3/3")
    messages = [e.message for e in snap.events]
    assert messages[0] == "queued count job" and "step 2/3" in messages and messages[-1] == "succeeded"
    assert snap.params == {"n": 3} and snap.owner == "alice"
    assert [e.seq for e in snap.events] == list(range(1, len(snap.events) + 1))
    assert [e.progress.current for e in snap.events if e.progress] == [1, 2, 3]
    assert snap.finished_at >= snap.started_at >= snap.created_at


@pytest.mark.parametrize(
    ("exc", "expected_error"),
    [
        (ExecutionError("stage train failed: boom"), "stage train failed: boom"),
        (RuntimeError("kaput"), "internal error (error id "),
    ],
)
def test_failing_work_marks_job_failed_and_manager_keeps_working(manager, exc, expected_error):
    def work(job):
        raise exc

    snap = manager.wait(manager.submit("bad", work), timeout=5)
    assert snap.state is JobState.FAILED and snap.error.startswith(expected_error)
    assert "kaput" not in snap.error  # unexpected details stay in the server log
    assert manager.wait(manager.submit("good", steps_work(1)), timeout=5).state is JobState.SUCCEEDED


def test_cancel_running_job_stops_cooperatively(manager):
    release = threading.Event()
    job_id = manager.submit("block", blocking_work(release))
    _wait_for_state(manager, job_id, JobState.RUNNING)
    manager.cancel(job_id)
    snap = manager.wait(job_id, timeout=5)
    assert snap.state is JobState.CANCELLED
    assert snap.result == "stopped"  # a partial result is kept
    assert any("cancellation requested" in e.message for e in snap.events)


def test_concurrency_is_bounded_and_queue_is_fifo():
    manager = JobManager(max_concurrent=1, job_timeout=30)
    release = threading.Event()
    first = manager.submit("block", blocking_work(release))
    second = manager.submit("count", steps_work(1))
    third = manager.submit("count", steps_work(1))
    _wait_for_state(manager, first, JobState.RUNNING)
    assert manager.get(second).state is JobState.QUEUED
    assert (manager.running_count, manager.queued_count) == (1, 2)
    # A queued job is cancelled immediately, without ever running.
    assert manager.cancel(third).state is JobState.CANCELLED
    release.set()
    assert manager.wait(second, timeout=5).state is JobState.SUCCEEDED
    assert manager.get(third).started_at is None
    manager.shutdown()


def test_timeout_signals_work_and_fails_job():
    manager = JobManager(max_concurrent=1, job_timeout=0.2)
    snap = manager.wait(manager.submit("block", blocking_work(threading.Event())), timeout=5)
    assert snap.state is JobState.FAILED
    assert snap.error == "job exceeded job_timeout_seconds=0.2"
    manager.shutdown()


def test_wait_returns_running_snapshot_when_time_runs_out(manager):
    release = threading.Event()
    job_id = manager.submit("block", blocking_work(release))
    start = time.monotonic()
    assert manager.wait(job_id, timeout=0.1).state in (JobState.QUEUED, JobState.RUNNING)
    assert time.monotonic() - start < 2
    release.set()
    assert manager.wait(job_id, timeout=5).state is JobState.SUCCEEDED


def test_wait_for_change_wakes_on_progress(manager):
    job_id = manager.submit("count", steps_work(5, delay=0.05))
    first = manager.get(job_id)
    changed = manager.wait_for_change(job_id, first.version, timeout=5)
    assert changed.version > first.version


def test_list_filters_and_orders_newest_first(manager):
    a = manager.submit("tune", steps_work(1))
    b = manager.submit("pipeline", steps_work(1))
    manager.wait(a, timeout=5), manager.wait(b, timeout=5)
    assert [s.job_id for s in manager.list()] == [b, a]
    assert [s.job_id for s in manager.list(kind="tune")] == [a]
    assert [s.job_id for s in manager.list(state=JobState.SUCCEEDED, limit=1)] == [b]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: m.get("nope"), NotFoundError),
        (lambda m: m.cancel("nope"), NotFoundError),
        (lambda m: m.wait("nope", 0), NotFoundError),
    ],
)
def test_unknown_job_ids_are_not_found(manager, call, error):
    with pytest.raises(error, match="job_id 'nope'"):
        call(manager)


def test_limits_are_enforced():
    with pytest.raises(InvalidRequestError, match="max_concurrent must be at least 1, got 0"):
        JobManager(max_concurrent=0)
    manager = JobManager(max_concurrent=1, max_queued=1)
    release = threading.Event()
    manager.submit("block", blocking_work(release))
    _wait_for_state(manager, manager.list()[0].job_id, JobState.RUNNING)
    manager.submit("count", steps_work(1))
    with pytest.raises(ResourceLimitError, match="at most 1 jobs may wait"):
        manager.submit("count", steps_work(1))
    release.set()
    manager.shutdown()
    with pytest.raises(ResourceLimitError, match="shut down"):
        manager.submit("count", steps_work(1))


def test_finished_jobs_beyond_max_kept_are_forgotten():
    manager = JobManager(max_concurrent=1, max_kept=2)
    ids = []
    for _ in range(4):
        ids.append(manager.submit("count", steps_work(1, delay=0)))
        manager.wait(ids[-1], timeout=5)
    assert [s.job_id for s in manager.list()] == [ids[-1], ids[-2]]
    manager.shutdown()


def _wait_for_state(manager: JobManager, job_id: str, state: JobState, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while manager.get(job_id).state is not state:
        assert time.monotonic() < deadline, f"job never reached {state}"
        time.sleep(0.005)
