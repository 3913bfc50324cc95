"""Several numeric features that rebuild the target together: a weighted sum no single column or
pair shows (a team's and its opponent's field goals, threes and free throws decide who won).

linear_leak  a sparse linear model of the numeric features predicts the target almost perfectly,
             cross-validated on the leak screen's rows and folds; the finding names the columns
             that carry the weight and says to drop them

The model: L1 logistic regression (liblinear; one per class against the rest for up to
``MAX_CLASSES`` classes) or Lasso for numbers, on standardized columns (mean-imputed), scored like
the other screens (ROC AUC, balanced accuracy, R²). The penalty is per row (``PENALTY`` on the
mean loss), so it does not fade as the sample grows; it keeps the weights sparse enough to name
the columns.

A model of all columns at once is expected to do well on honest data, so its bar is stricter than
one column's: ``1 - (1 - leak_threshold) / STRICTNESS`` (0.999 at the default 0.98). Measured here:
honest data reach at most 0.996 (breast cancer ROC AUC 0.994–0.996 over penalties 10x apart),
the rookies' first-season stats 0.755 (5-year career), ``all_seasons`` points R² 0.87; six shooting
counts that rebuild both scores reach 0.99999–1.0, and a margin rebuilt from them R² 1.0; RAPTOR's
ratings blended from their box and on/off parts (0.85 box + 0.21 on/off) R² 0.9997–0.9999. Below
``MIN_ROWS`` a model of many columns can look perfect on a small fold by chance (wine, 178 rows:
balanced accuracy 0.986–0.995), so small tables are left to the single-column and pair screens.

The columns named: those with a weight, heaviest first (mean absolute standardized weight over the
folds, the largest over classes), the fewest that hold ``WEIGHT_MASS`` of the total, at most
``MAX_NAMED``; refit alone, they must reach the bar too, else every weighted column (up to
``MAX_NAMED``) is named. Columns a single-column or pair finding already names are left out
beforehand, so the same leak is never reported twice.

Cost is bounded: the screen's sampled rows, at least ``MIN_ROWS`` of them, at most
``MAX_COLUMNS`` columns (the most predictive alone first) and one per ``ROWS_PER_COLUMN`` rows,
limited solver iterations (a fit that has not converged still gives its weights). It adds 8–40% to
the leak screen (benchmark ``honest_evaluation``: 1.39x on the game log it exists for, 1.14x on
``all_seasons``, 1.09x on 100k rows x 52 columns); the first call imports scikit-learn's linear models.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from mcp_server.data_validation_pipeline._leakage import quoted
from mcp_server.data_validation_pipeline._result import Issue

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIN_ROWS = 300
ROWS_PER_COLUMN = 10
MAX_COLUMNS = 60
MAX_CLASSES = 5
STRICTNESS = 20
PENALTY = 1 / 300  # L1 weight on the mean loss (liblinear's C = 1 / (PENALTY * rows))
LASSO_ALPHA = 1e-3  # on the standardized target
MAX_ITER = 300  # liblinear's
LASSO_MAX_ITER = 1000  # coordinate descent sweeps over the precomputed Gram matrix (~10 µs each at 20 columns)
WEIGHT_MASS = 0.95
MAX_NAMED = 10


def linear_bar(threshold: float) -> float:
    """The score the linear model must reach: the leak threshold's error shrunk ``STRICTNESS`` times."""
    return 1 - (1 - threshold) / STRICTNESS


def linear_leaks(rows: pd.DataFrame, target: str, candidates: dict[str, float], scorer: Any, *,
                 threshold: float) -> list[Issue]:
    """A ``linear_leak`` finding when the numeric ``candidates`` (column -> its single-column score)
    together predict the target at ``linear_bar(threshold)``; ``scorer`` gives the target codes,
    folds, task and metric of the screen."""
    n_classes = len(scorer.classes) if scorer.task == "classification" else 0
    if len(rows) < MIN_ROWS or n_classes > MAX_CLASSES:
        return []
    limit = min(MAX_COLUMNS, len(rows) // ROWS_PER_COLUMN)
    names = sorted(candidates, key=lambda c: -candidates[c])[:limit]
    matrix, names = _standardized(rows, names)
    if len(names) < 2:
        return []
    bar = linear_bar(threshold)
    score, weights = _cross_validated(matrix, scorer, n_classes)
    if score < bar:
        return []
    named = _carrying(weights)
    if len(named) < int((weights > 0).sum()):
        named_score, _ = _cross_validated(matrix[:, named], scorer, n_classes)
        if named_score < bar:
            named = [int(i) for i in (-weights).argsort(kind="stable")[:MAX_NAMED] if weights[i] > 0]
    columns = [names[i] for i in named]
    listed = ", ".join(map(quoted, columns))
    model = "Lasso regression" if scorer.task == "regression" else "L1 logistic regression"
    return [Issue(
        column=columns[0], rule="linear_leak", severity="error", count=len(rows), drop=columns, score=round(score, 4),
        message=f"columns {listed} together predict {target!r} with a cross-validated linear model ({model}, "
                f"{scorer.metric} {score:.4f}, threshold {bar:.4g}), though no single column, sum, difference or ratio "
                f"of two does: a weighted sum of them rebuilds the answer; drop them (drop=[{listed}])")]


def _standardized(rows: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The columns as floats, missing values at the column mean, scaled to unit variance; constant
    and empty columns left out."""
    import numpy as np

    matrix = rows[names].to_numpy(dtype=float, copy=True)
    matrix[~np.isfinite(matrix)] = np.nan
    filled = np.isfinite(matrix).any(axis=0)
    matrix, names = matrix[:, filled], [n for n, keep in zip(names, filled) if keep]
    means = np.nanmean(matrix, axis=0)
    matrix = np.where(np.isnan(matrix), means, matrix) - means
    spread = matrix.std(axis=0)
    varies = spread > 1e-12 * np.maximum(np.abs(means), 1.0)
    return matrix[:, varies] / spread[varies], [n for n, keep in zip(names, varies) if keep]


def _cross_validated(matrix: np.ndarray, scorer: Any, n_classes: int) -> tuple[float, np.ndarray]:
    """Out-of-fold score on the screen's folds, and each column's mean absolute weight."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso, LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

    y, folds = scorer.y, np.unique(scorer.fold)
    if scorer.task == "regression":
        y = (y - y.mean()) / (y.std() or 1.0)
    outputs = n_classes if n_classes > 2 else 1  # one model per class against the rest, or one
    predictions = np.zeros((len(y), outputs))
    weights = np.zeros((len(folds), matrix.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iterations are capped on purpose
        for k, fold in enumerate(folds):
            train, test = scorer.fold != fold, scorer.fold == fold
            fold_weights = []
            for c in range(outputs):
                if scorer.task == "regression":
                    model = Lasso(alpha=LASSO_ALPHA, precompute=True, max_iter=LASSO_MAX_ITER)
                    model.fit(matrix[train], y[train])
                    predictions[test, 0] = model.predict(matrix[test])
                    fold_weights.append(np.abs(model.coef_))
                    continue
                labels = (y[train] == c).astype(int) if outputs > 1 else y[train]
                if labels.min() == labels.max():
                    predictions[test, c] = -1e9 if labels.max() == 0 else 1e9
                    continue
                model = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=1 / (PENALTY * train.sum()),
                                           max_iter=MAX_ITER).fit(matrix[train], labels)
                predictions[test, c] = model.decision_function(matrix[test])
                fold_weights.append(np.abs(model.coef_[0]))
            if fold_weights:
                weights[k] = np.max(fold_weights, axis=0)
    if scorer.task == "regression":
        score = r2_score(y, predictions[:, 0])
    elif outputs > 1:
        score = balanced_accuracy_score(y, predictions.argmax(axis=1))
    else:
        score = roc_auc_score(y, predictions[:, 0])
    return float(score), weights.mean(axis=0)


def _carrying(weights: np.ndarray) -> list[int]:
    """Indices of the heaviest weights holding ``WEIGHT_MASS`` of the total, at most ``MAX_NAMED``."""
    import numpy as np

    order = [int(i) for i in (-weights).argsort(kind="stable") if weights[i] > 0]
    mass = np.cumsum(weights[order]) / weights.sum()
    return order[: min(int(np.searchsorted(mass, WEIGHT_MASS - 1e-9)) + 1, MAX_NAMED)]
