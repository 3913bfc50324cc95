"""Running slots shared fairly between principals (``JobManager``), with real threads and stepped work.

A developer's 4 long jobs held both slots and an analyst's 1-trial job waited for them to end
(issue 29). Now the developer's most recent job gives its slot up at its next step, waits paused,
and resumes when a slot frees; the analyst's job starts within one step.
"""

from __future__ import annotations

import threading
import time

import pytest

from mcp_server.error_handling import ResourceLimitError
from mcp_server.jobs import JobManager, JobState

STEP_SECONDS = 0.3


def stepped(steps: int, started: dict | None = None, key: str | None = None):
    """Work of ``steps`` steps (trials) of STEP_SECONDS, reporting each; stops when cancelled."""

    def work(job) -> int:
        if started is not None:
            started[key] = time.perf_counter()
        for step in range(steps):
            if job.should_stop():
                return step
            time.sleep(STEP_SECONDS)
            job.report(step + 1, steps, f"trial {step + 1}/{steps}")
        return steps

    return work


def test_an_analysts_job_starts_within_one_step_while_a_developer_holds_every_slot():
    manager = JobManager(max_concurrent=2, job_timeout=None, max_per_owner=4)
    dev = [manager.submit("tune", stepped(12), owner="dev") for _ in range(4)]
    deadline = time.monotonic() + 5
    while manager.running_count < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    started: dict = {}
    submitted = time.perf_counter()
    analyst = manager.submit("tune", stepped(1, started, "analyst"), owner="ana")
    done = manager.wait(analyst, timeout=10)
    waited = started["analyst"] - submitted
    assert done.state is JobState.SUCCEEDED and waited < STEP_SECONDS + 0.25, waited
    snapshots = [manager.get(j) for j in dev]
    paused = [s for s in snapshots if any("paused" in e.message for e in s.events)]
    assert len(paused) == 1 and any("resumed" in e.message for e in paused[0].events), [s.events for s in snapshots]
    finals = [manager.wait(j, timeout=60) for j in dev]
    assert [f.state for f in finals] == [JobState.SUCCEEDED] * 4 and [f.result for f in finals] == [12] * 4
    assert manager.running_count == 0 and manager.queued_count == 0
    manager.shutdown(timeout=2)


def test_a_single_principal_keeps_every_slot_and_one_slot_is_never_taken_away():
    alone = JobManager(max_concurrent=2, job_timeout=None)
    jobs = [alone.submit("tune", stepped(3), owner="dev") for _ in range(3)]
    assert [alone.wait(j, timeout=20).state for j in jobs] == [JobState.SUCCEEDED] * 3
    assert not any("paused" in e.message for j in jobs for e in alone.get(j).events)
    alone.shutdown(timeout=2)

    single = JobManager(max_concurrent=1, job_timeout=None)
    first = single.submit("tune", stepped(4), owner="dev")
    queued = single.submit("tune", stepped(4), owner="dev")
    time.sleep(0.1)
    other = single.submit("tune", stepped(1), owner="ana")
    assert single.wait(other, timeout=20).state is JobState.SUCCEEDED
    # One slot: dev's running job is never paused, and ana's job goes before dev's queued one.
    assert single.get(other).started_at < single.get(queued).started_at
    assert not any("paused" in e.message for e in single.get(first).events)
    single.shutdown(timeout=5)


def test_a_paused_job_stops_when_cancelled_or_at_shutdown():
    manager = JobManager(max_concurrent=2, job_timeout=None)
    dev = [manager.submit("tune", stepped(50), owner="dev") for _ in range(2)]
    time.sleep(0.1)
    gate = threading.Event()
    analyst = manager.submit("tune", lambda job: gate.wait(10), owner="ana")
    deadline = time.monotonic() + 5
    while not any(any("paused" in e.message for e in manager.get(j).events) for j in dev):
        assert time.monotonic() < deadline, "no job paused"
        time.sleep(0.02)
    paused = next(j for j in dev if any("paused" in e.message for e in manager.get(j).events))
    started = time.perf_counter()
    assert manager.cancel(paused).state is JobState.RUNNING  # its thread wakes up to stop
    assert manager.wait(paused, timeout=5).state is JobState.CANCELLED and time.perf_counter() - started < 1
    assert manager.running_count == 2  # the analyst's job and dev's other one
    gate.set()
    assert manager.wait(analyst, timeout=5).state is JobState.SUCCEEDED
    manager.shutdown(cancel=True, timeout=5)
    assert manager.running_count == 0


def test_a_principals_queue_is_bounded_with_the_limit_named():
    manager = JobManager(max_concurrent=1, job_timeout=None, max_per_owner=3)
    gate = threading.Event()
    for _ in range(3):
        manager.submit("tune", lambda job: gate.wait(5), owner="dev")
    with pytest.raises(ResourceLimitError, match=r"at most 3 jobs per principal .*settings.max_jobs_per_principal"):
        manager.submit("tune", lambda job: None, owner="dev")
    assert manager.wait(manager.submit("tune", lambda job: 1, owner="ana"), timeout=0.1).state is not JobState.FAILED
    gate.set()
    manager.shutdown(timeout=5)
