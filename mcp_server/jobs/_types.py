"""Value types of jobs: states, progress, events and the snapshot handed to callers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mcp_server.error_handling import MCPServerError


class JobState(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobCancelledError(MCPServerError):
    """Raised by work that notices its job was cancelled (``JobContext.should_stop()``)."""


class JobFailedError(MCPServerError):
    """Raised by work that ended without doing its job but has a result worth keeping (a pipeline
    stopped by validation: its run id, stages and findings). The job ends FAILED with this message
    as its error and ``result`` as its result."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class JobProgress:
    current: float = 0.0
    total: float | None = None
    message: str = ""


@dataclass(frozen=True)
class JobEvent:
    """One line of a job's log; ``seq`` increases by one per event, ``progress`` is set when the
    event came with a progress report (so a reader can relay every step, not just the latest)."""

    timestamp: float
    message: str
    seq: int = 0
    progress: JobProgress | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state, safe to hand to another thread."""

    job_id: str
    kind: str
    state: JobState
    params: dict[str, Any]
    owner: str | None
    progress: JobProgress
    events: tuple[JobEvent, ...]
    result: Any
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    version: int
    # The library error a FAILED job raised (None for other ends): callers map its kind, not its text.
    cause: BaseException | None = None

    @property
    def elapsed_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at
