"""The columns a fitted model leans on most, named when its score looks too good to be true.

Permutation importance on (a sample of) the holdout rows: model-agnostic, measured on rows the
model did not train on, and it works through the preprocessing Pipeline because it shuffles the
raw columns. Only computed for a flagged model, so its cost (a few predictions per column) is paid
when it explains something.
"""

from __future__ import annotations

from typing import Any

MAX_ROWS = 2000
TOP = 3
REPEATS = 3


def leaning_columns(model: Any, X: Any, y: Any, *, top: int = TOP, seed: int = 0) -> list[str]:
    """Up to ``top`` columns of ``X`` whose shuffling costs the model the most (positive drops only)."""
    import numpy as np
    from sklearn.inspection import permutation_importance

    if len(X) > MAX_ROWS:
        rows = np.random.default_rng(seed).choice(len(X), MAX_ROWS, replace=False)
        X, y = X.iloc[rows], y.iloc[rows]
    try:
        result = permutation_importance(model, X, y, n_repeats=REPEATS, random_state=seed)
    except (ValueError, TypeError):  # a model that cannot be scored this way: name nothing rather than fail
        return []
    order = np.argsort(-result.importances_mean)
    return [str(X.columns[i]) for i in order[:top] if result.importances_mean[i] > 0]
