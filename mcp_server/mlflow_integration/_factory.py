"""Opening a tracker (MLflow, or in memory for mock mode), and the start-up sweep that needs one."""

from __future__ import annotations

import logging

from mcp_server.settings import Settings

from ._recovery import remove_dead_leases
from ._store import count_running_runs
from ._tracker import MLflowExperimentTracker

logger = logging.getLogger(__name__)


def get_mlflow_tracker(
    experiment_name: str = "nba_model_training",
    tracking_uri: str | None = None,
    mock_mode: bool = False,
    *,
    settings: Settings | None = None,
) -> MLflowExperimentTracker:
    """A tracker bound to ``experiment_name`` (the seed's entry point): on the configured MLflow
    store, or with ``mock_mode`` an ``InMemoryTracker``."""
    if mock_mode:
        from ._memory import InMemoryTracker  # imports mlflow's entities

        return InMemoryTracker(experiment_name, settings=settings)
    return MLflowExperimentTracker(experiment_name, tracking_uri, settings=settings)


def reap_orphaned_runs(settings) -> list[str]:
    """End KILLED the RUNNING runs, in every experiment of the store, whose owning process died.

    A server killed mid-search (SIGKILL, OOM, power loss) leaves its runs RUNNING forever; every
    run records its owner, so a starting server ends those of dead processes and leaves the runs
    of live servers sharing the store alone. On a sqlite store with no RUNNING run (the usual
    start) this costs one query and never imports mlflow.
    """
    leases = settings.data_home / "leases"
    if count_running_runs(str(settings.tracking_uri)) == 0:
        remove_dead_leases(leases)
        return []
    tracker = get_mlflow_tracker(settings.experiment_name, settings=settings)
    try:
        reaped = tracker.reap_orphaned_runs(experiment_ids=tracker.all_experiment_ids())
    finally:
        tracker.close()
    remove_dead_leases(leases)  # their runs are ended: the files may go
    if reaped:
        logger.warning(
            "ended %d orphaned run(s) KILLED (their server process died): %s", len(reaped), ", ".join(reaped))
    return reaped
