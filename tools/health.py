"""server_health: is the server well, can it reach its tracking store, how busy is it."""

import re
from typing import Literal

from importlib import metadata

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from mcp_server import monitoring, rbac
from mcp_server.error_handling import error_recorder
from tools.app_state import state_of
from tools.identity import shown_path
from tools.registration import READ_ONLY, ml_tool


class ToolStats(BaseModel):
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


class ServerHealth(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    uptime_seconds: float
    tracking_uri: str = Field(description="Credentials, if any, are masked")
    tracking_reachable: bool
    tracking_error: str | None = None
    jobs_running: int
    jobs_queued: int
    max_concurrent_jobs: int
    tools: dict[str, ToolStats] = Field(description="Per tool: calls, errors, latency percentiles")
    error_counts: dict[str, int] = Field(description="Errors recorded since start, per type")


def server_version() -> str:
    try:
        return metadata.version("nba-mcp")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def masked_uri(uri: str) -> str:
    return re.sub(r"//[^/@]+@", "//***@", uri)


@ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)
async def server_health(ctx: Context) -> ServerHealth:
    """Report the server's version, uptime, tracking store reachability, job load and tool latencies."""
    app = state_of(ctx)
    error = None
    try:
        with anyio.fail_after(app.settings.tracking_timeout_seconds):
            await anyio.to_thread.run_sync(
                lambda: app.tracker().list_experiments(max_results=1), abandon_on_cancel=True
            )
    except TimeoutError:
        error = f"no answer within tracking_timeout_seconds={app.settings.tracking_timeout_seconds:g}"
    except Exception as exc:  # reported, not raised: health must answer when the store is down
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    snapshot = monitoring.snapshot()
    tools = {
        name.removeprefix("tool."): ToolStats(**{k: stats[k] for k in ToolStats.model_fields})
        for name, stats in snapshot["metrics"].items()
        if name.startswith("tool.")
    }
    return ServerHealth(
        status="ok" if error is None else "degraded",
        version=server_version(),
        uptime_seconds=round(app.uptime_seconds, 3),
        tracking_uri=shown_path(masked_uri(str(app.settings.tracking_uri))),
        tracking_reachable=error is None,
        tracking_error=error,
        jobs_running=app.jobs.running_count,
        jobs_queued=app.jobs.queued_count,
        max_concurrent_jobs=app.jobs.max_concurrent,
        tools=tools,
        error_counts=error_recorder.counts(),
    )


TOOLS = (server_health,)
