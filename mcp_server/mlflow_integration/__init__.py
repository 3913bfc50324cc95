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

from ._compare import compare_runs, comparison_frame, lower_is_better  # noqa: E402
from ._origin import NOTE_TAG, RunOrigin, current_origin, recording_as  # noqa: E402
from ._recovery import OWNER_TAG  # noqa: E402
from ._store import create_sqlite_store  # noqa: E402
from ._tracker import MLflowExperimentTracker, get_mlflow_tracker  # noqa: E402
from ._types import DatasetRef, DatasetSource, MetricPoint, RunMetadata, RunStatus  # noqa: E402

__all__ = [
    "NOTE_TAG",
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
    "get_mlflow_tracker",
    "lower_is_better",
]
