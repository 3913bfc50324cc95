"""The names a search writes to MLflow, read by its logger and by resume (one place)."""

from __future__ import annotations

from mcp_server.logged_values import logged_score

KIND_TAG = "nba_mcp.kind"
PARENT_KIND = "tuning_search"
CHILD_KIND = "tuning_trial"
TRIAL_NUMBER_TAG = "nba_mcp.trial_number"
TRIAL_STATE_TAG = "nba_mcp.trial_state"
FIDELITY_TAGS = {"bracket": "nba_mcp.bracket", "rung": "nba_mcp.rung"}
SEARCH_TAG = "nba_mcp.search"  # JSON: the search's counters and timings (bookkeeping, not metrics)
NOTE_TAG = "mlflow.note.content"
SOURCE_TAG = "mlflow.source.name"
LIBRARY_SOURCE = "mcp_server.hyperparameter_tuning"
# Parent params that say what was searched, copied onto every trial so each run names them.
CONTEXT_PARAMS = ("estimator", "dataset", "target")
# Parent params a resumed search must match, or it would mix two different searches.
RESUME_KEYS = ("strategy", "halving", "space", "cv_folds", "scoring", "seed", "direction", "split.kind", "split.column",
               "split.test_size", "split.seed", "split.gap")
MAX_PARAM = 6000


def cv_metric_names(scoring: str) -> dict[str, str]:
    """The metric names of a search scored by ``scoring`` (one place, read by logging and resume);
    their values are the scorer's times ``logged_score(scoring)[1]``."""
    name, _ = logged_score(scoring)
    return {
        "mean": f"cv_{name}_mean", "std": f"cv_{name}_std", "fold": f"cv_{name}_fold",
        "partial": f"partial_cv_{name}_mean", "best": f"best_cv_{name}",
        "trials_mean": f"trials_cv_{name}_mean", "trials_std": f"trials_cv_{name}_std",
        "trivial": f"trivial_cv_{name}", "ensemble": f"ensemble_cv_{name}",
        "ensemble_std": f"ensemble_cv_{name}_std", "ensemble_best_member": f"ensemble_best_member_cv_{name}",
    }
