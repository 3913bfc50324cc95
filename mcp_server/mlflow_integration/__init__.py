"""Experiment tracking on MLflow (``MlflowClient`` with explicit run ids) or in memory (mock mode).

    from mcp_server.mlflow_integration import get_mlflow_tracker
    tracker = get_mlflow_tracker(experiment_name="nba_model_training", mock_mode=True)
    with tracker.start_run("baseline_model") as run_id:
        tracker.log_params({"n_estimators": 100})
        tracker.log_metric("accuracy", 0.92)
"""

import os as _os

# MLflow must never write to stdout (the MCP stdio channel) nor phone home; these are read by
# MLflow itself, so they have to be environment variables, set before it is first imported.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
_os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from ._compare import compare_runs, comparison_frame, is_bookkeeping, lower_is_better  # noqa: E402
from ._factory import get_mlflow_tracker, reap_orphaned_runs  # noqa: E402
from ._origin import NOTE_TAG, RunOrigin, current_origin, recording_as  # noqa: E402
from ._protocol import Tracker  # noqa: E402
from ._recovery import OWNER_TAG, hold_lease, owner  # noqa: E402
from ._store import create_sqlite_store, ensure_sqlite_migrated, is_migrated  # noqa: E402
from ._tracker import MLflowExperimentTracker  # noqa: E402
from ._types import DatasetRef, DatasetSource, MetricPoint, RunMetadata, RunStatus  # noqa: E402

__all__ = [
    "InMemoryTracker",
    "NOTE_TAG",
    "Tracker",
    "OWNER_TAG",
    "RunOrigin",
    "current_origin",
    "recording_as",
    "MLflowExperimentTracker",
    "MetricPoint",
    "RunMetadata",
    "DatasetRef",
    "DatasetSource",
    "RunStatus",
    "compare_runs",
    "comparison_frame",
    "create_sqlite_store",
    "ensure_sqlite_migrated",
    "hold_lease",
    "is_migrated",
    "owner",
    "reap_orphaned_runs",
    "get_mlflow_tracker",
    "is_bookkeeping",
    "lower_is_better",
]


def __getattr__(name: str):
    # InMemoryTracker imports mlflow's entities: loaded on first use, like every tracker.
    if name == "InMemoryTracker":
        from ._memory import InMemoryTracker

        return InMemoryTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
