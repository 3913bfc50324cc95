"""Job tools (get_job, list_jobs, cancel_job) and the helper long-running tools wait with.

Long work (tuning, pipelines) runs as a server-side job. The starting tool waits up to
``wait_seconds`` while relaying the job's progress as MCP progress notifications; if the job is
not done by then, it returns the job id and the progress so far, and the agent polls ``get_job``.
Waiting polls with ``anyio.sleep``: the event loop stays free and the wait can be cancelled.
"""

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_server import rbac
from mcp_server.error_handling import NotFoundError, PermissionDeniedError, TrackingUnavailableError
from mcp_server.jobs import JobContext, JobSnapshot, JobState
from tools.app_state import AppState, state_of
from tools.fields import JobId, WaitSeconds
from tools.registration import READ_ONLY, UPDATES, ml_tool

POLL_INTERVAL_SECONDS = 0.1
RECENT_EVENTS = 10

JobStateName = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


class JobProgressView(BaseModel):
    current: float
    total: float | None = None
    message: str = ""


class JobView(BaseModel):
    """A job as a client sees it: state and progress; ``result`` once it has succeeded (or was
    cancelled with a partial result). What it was asked to do is not repeated on every poll."""

    job_id: str
    kind: str
    state: JobStateName
    done: bool
    progress: JobProgressView
    recent_events: list[str] = Field(description=f"The last {RECENT_EVENTS} events, oldest first")
    error: str | None = None
    owner: str | None = None
    created_at: datetime
    elapsed_seconds: float
    result: dict[str, Any] | None = None
    hint: str | None = Field(default=None, description="What to do next")


class JobEntry(JobView):
    params: dict[str, Any] = Field(description="What the job was asked to do")


class JobList(BaseModel):
    jobs: list[JobEntry]
    running: int
    queued: int


def job_view(snapshot: JobSnapshot, *, include_result: bool = True) -> dict[str, Any]:
    """The fields of a ``JobView``."""
    result = snapshot.result if include_result else None
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    hint = None
    if not snapshot.state.is_terminal:
        hint = f"job still {snapshot.state.value.lower()}: call get_job with job_id={snapshot.job_id!r} (or cancel_job)"
    return {
        "job_id": snapshot.job_id,
        "kind": snapshot.kind,
        "state": snapshot.state.value,
        "done": snapshot.state.is_terminal,
        "progress": JobProgressView(
            current=snapshot.progress.current,
            total=snapshot.progress.total,
            message=snapshot.progress.message,
        ),
        "recent_events": [e.message for e in snapshot.events[-RECENT_EVENTS:]],
        "error": snapshot.error,
        "owner": snapshot.owner,
        "created_at": datetime.fromtimestamp(snapshot.created_at, tz=timezone.utc),
        "elapsed_seconds": round(snapshot.elapsed_seconds, 3),
        "result": result,
        "hint": hint,
    }


async def wait_for_job(
    app: AppState, job_id: str, wait_seconds: float, ctx: Context | None, *, started_here: bool = True
) -> JobSnapshot:
    """Wait up to ``wait_seconds`` for the job, relaying progress to the caller.

    ``started_here``: the call that started the job relays all of its progress, and if the caller
    cancels that request while waiting, the job is cancelled too (nobody is left to receive its
    result; a job started with ``wait_seconds=0`` is never tied to a request). A later poll
    (get_job) relays only new progress and never cancels the job when it is abandoned.
    """
    deadline = anyio.current_time() + wait_seconds
    events = app.jobs.get(job_id).events
    last_seq = events[-1].seq if not started_here and events else 0
    try:
        while True:
            snapshot = app.jobs.get(job_id)
            if ctx is not None:
                # Relay every progress step since the last poll (one per trial or stage), in order.
                for event in snapshot.events:
                    if event.seq > last_seq and event.progress is not None:
                        p = event.progress
                        await ctx.report_progress(p.current, p.total, p.message)
            if snapshot.events:
                last_seq = snapshot.events[-1].seq
            remaining = deadline - anyio.current_time()
            if snapshot.state.is_terminal or remaining <= 0:
                return snapshot
            await anyio.sleep(min(POLL_INTERVAL_SECONDS, remaining))
    except anyio.get_cancelled_exc_class():
        if started_here and wait_seconds > 0:
            app.jobs.cancel(job_id)
        raise


def current_principal_id() -> str | None:
    principal = rbac.current_principal()
    return principal.id if principal else None


async def start_job(
    app: AppState, kind: str, work: Callable[[JobContext], Any], request: BaseModel, wait_seconds: float | None, ctx: Context,
    *, on_queued: Callable[[], None] | None = None,
) -> JobView:
    """Queue ``work`` as the caller's job, wait for it (``wait_for_job``) and return its view; a
    job that failed within the wait raises a tool error with the job's message."""
    params = request.model_dump(mode="json", exclude_none=True)
    try:
        # The job runs in the caller's context: its runs name the caller and the tool.
        job_id = app.jobs.submit(kind, work, params, owner=current_principal_id())
    finally:
        if on_queued is not None:
            on_queued()  # queued or refused: from now on the job list tells what is in progress
    wait = app.settings.default_wait_seconds if wait_seconds is None else wait_seconds
    snapshot = await wait_for_job(app, job_id, wait, ctx)
    if snapshot.state is JobState.FAILED:
        message = f"job {job_id} failed: {snapshot.error}"
        if isinstance(snapshot.cause, TrackingUnavailableError):  # the store, not the work: "unavailable"
            raise TrackingUnavailableError(message)
        raise ToolError(message)
    return JobView(**job_view(snapshot))


RECENT_IDS_SHOWN = 5


def known_job(app: AppState, job_id: str) -> JobSnapshot:
    """The job ``job_id`` names; an unknown id is answered with the caller's most recent job ids
    (an agent that lost or misspelt an id gets it back in one retry)."""
    try:
        return app.jobs.get(job_id)
    except NotFoundError as exc:
        recent = app.jobs.list(owner=current_principal_id(), limit=RECENT_IDS_SHOWN)
        shown = ", ".join(f"{s.job_id} ({s.kind}, {s.state.value.lower()})" for s in recent)
        listed = (f"your recent jobs: {shown}; list_jobs shows them with what each was asked to do" if recent
                  else "you have no jobs on this server (tune_hyperparameters and run_pipeline start one)")
        raise NotFoundError(f"{exc}; {listed}",
                            fix="call list_jobs to see your jobs" if recent else None,
                            did_you_mean=_closest_id(job_id, [s.job_id for s in recent])) from None


def _closest_id(job_id: str, ids: list[str]) -> str | None:
    """A recent id sharing the first characters (a truncated or mistyped id), else the only one."""
    same_start = [i for i in ids if i[:4] == job_id[:4]]
    return same_start[0] if same_start else (ids[0] if len(ids) == 1 else None)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def get_job(job_id: JobId, ctx: Context, wait_seconds: WaitSeconds = 0.0) -> JobView:
    """Get a job's state, progress and, once finished, its result; optionally wait for it first."""
    app = state_of(ctx)
    known_job(app, job_id)  # unknown id -> NotFoundError (with the caller's recent ids) before waiting
    snapshot = await wait_for_job(app, job_id, wait_seconds, ctx, started_here=False) if wait_seconds else app.jobs.get(job_id)
    return JobView(**job_view(snapshot))


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def list_jobs(
    ctx: Context,
    state: Annotated[JobStateName | None, Field(description="Only jobs in this state")] = None,
    kind: Annotated[Literal["tune", "pipeline"] | None, Field(description="Only jobs of this kind")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="At most this many, newest first")] = 20,
) -> JobList:
    """List recent jobs, newest first, with what each was asked to do (get_job gives a result)."""
    app = state_of(ctx)
    snapshots = app.jobs.list(state=JobState(state) if state else None, kind=kind, limit=limit)
    return JobList(
        jobs=[JobEntry(**job_view(s, include_result=False), params=s.params) for s in snapshots],
        running=app.jobs.running_count,
        queued=app.jobs.queued_count,
    )


@ml_tool(permission=rbac.Permission.EXECUTE, annotations=UPDATES)
async def cancel_job(job_id: JobId, ctx: Context) -> JobView:
    """Cancel a job: it stops after its current trial or stage and its MLflow runs end KILLED."""
    app = state_of(ctx)
    snapshot = known_job(app, job_id)
    principal = rbac.current_principal()
    if snapshot.owner != (principal.id if principal else None) and not rbac.authorize(principal, rbac.Permission.DELETE):
        raise PermissionDeniedError()  # someone else's job: needs the delete permission
    return JobView(**job_view(app.jobs.cancel(job_id)))


TOOLS = (get_job, list_jobs, cancel_job)
