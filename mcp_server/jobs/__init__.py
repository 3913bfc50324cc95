"""Server-side jobs: long work (tuning, pipelines) that outlives the request that started it.

A ``JobManager`` lives in the server process, not in a request or a connection, so a job started
by one call can be polled, awaited or cancelled by any later call. Work runs in daemon threads
(scikit-learn releases the GIL in its heavy loops); at most ``max_concurrent`` jobs run at once and
the rest wait in FIFO order. Cancellation and timeouts are cooperative: the work receives a
``JobContext`` whose ``cancel_event`` it checks between trials or stages (``should_stop()``).

    manager = JobManager(max_concurrent=2, job_timeout=3600)
    job_id = manager.submit("tune", lambda job: work(on_progress=job.report, stop=job.cancel_event), {"dataset": "iris"})
    snapshot = manager.wait(job_id, timeout=30)      # JobSnapshot: state, progress, events, result, error
"""

from mcp_server.jobs._manager import JobContext, JobManager
from mcp_server.jobs._types import (
    JobCancelledError,
    JobFailedError,
    JobEvent,
    JobProgress,
    JobSnapshot,
    JobState,
)

__all__ = [
    "JobCancelledError",
    "JobFailedError",
    "JobContext",
    "JobEvent",
    "JobManager",
    "JobProgress",
    "JobSnapshot",
    "JobState",
]
