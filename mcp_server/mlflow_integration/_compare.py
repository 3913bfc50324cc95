"""Side-by-side comparison of runs: metric values, differences, best run, differing params."""

from __future__ import annotations

from typing import Any

from ._types import RunMetadata

# Metrics where smaller is better; everything else (accuracy, f1, roc_auc, r2, neg_* scores) is maximised.
_LOWER_IS_BETTER = ("loss", "error", "rmse", "mse", "mae", "mape", "duration", "time")


# How a run went rather than how good its model is: stage timings, counts, durations.
BOOKKEEPING_PREFIXES = ("stage.", "timing.", "system/")
BOOKKEEPING_METRICS = frozenset({
    "duration_seconds", "elapsed_seconds", "n_folds_run", "folds_done", "n_trials", "n_trials_run", "n_complete",
    "n_failed", "n_pruned", "n_fold_fits", "n_fold_fits_saved", "n_resumed_trials", "n_train", "n_test", "resource",
})


def is_bookkeeping(metric: str) -> bool:
    return metric.startswith(BOOKKEEPING_PREFIXES) or metric in BOOKKEEPING_METRICS


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return not name.startswith("neg_") and any(token in name for token in _LOWER_IS_BETTER)


def compare_runs(runs: list[RunMetadata], *, include_bookkeeping: bool = False) -> dict[str, Any]:
    """Structured comparison; ``["metrics"][m]["diff"][run_id]`` is the difference from the first run.
    Model metrics only, unless ``include_bookkeeping`` (stage timings, counts, durations)."""
    ids = [r.run_id for r in runs]
    metrics: dict[str, Any] = {}
    for key in sorted({k for r in runs for k in r.metrics if include_bookkeeping or not is_bookkeeping(k)}):
        values = {r.run_id: r.metrics.get(key) for r in runs}
        present = {rid: v for rid, v in values.items() if v is not None}
        base = values[ids[0]] if ids else None
        pick = min if lower_is_better(key) else max
        metrics[key] = {
            "values": values,
            "diff": {rid: (v - base if v is not None and base is not None else None) for rid, v in values.items()},
            "best_run": pick(present, key=present.get) if present else None,
            "higher_is_better": not lower_is_better(key),
        }
    param_keys = sorted({k for r in runs for k in r.params})
    differ = {k: {r.run_id: r.params.get(k) for r in runs} for k in param_keys}
    return {
        "runs": [{"run_id": r.run_id, "run_name": r.run_name, "status": r.status.value} for r in runs],
        "metrics": metrics,
        "params_differ": {k: v for k, v in differ.items() if len(set(v.values())) > 1},
        "params_same": {k: next(iter(v.values())) for k, v in differ.items() if len(set(v.values())) == 1},
    }


def comparison_frame(runs: list[RunMetadata]):
    """A pandas view: one row per run, ``params.*`` and ``metrics.*`` columns."""
    import pandas as pd

    rows = []
    for r in runs:
        row: dict[str, Any] = {"run_id": r.run_id, "run_name": r.run_name, "status": r.status.value}
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("run_id")
