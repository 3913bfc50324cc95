"""Features that give the target away: a copy of it, one column that predicts it almost alone, a
difference, sum or ratio of two that does, or a weighted sum of several (``_linear_leaks``).

target_copy  a feature that is the target re-encoded (one-to-one)
target_leak  a feature that alone predicts the target almost perfectly (cross-validated)
pair_leak    a difference, sum or ratio of two features that alone predicts the target
linear_leak  a sparse linear model of the numeric features not named above predicts it (stricter bar)

The single-feature screen is a per-bin model: a numeric column is cut into quantile bins (text into
its most frequent values), each bin predicts the training folds' target mean, scored by 3-fold CV
(ROC AUC for two classes, balanced accuracy for more, R² for numbers; for numbers also the squared
correlation). Cost is bounded: at most ``max_rows`` sampled rows, ``MAX_SCREENED_COLUMNS`` columns,
pairs among the ``PAIR_CANDIDATES`` most predictive numeric columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_server.data_validation_pipeline._leakage import MIN_ROWS, quoted
from mcp_server.data_validation_pipeline._linear_leaks import linear_leaks
from mcp_server.data_validation_pipeline._result import Issue
from mcp_server.data_validation_pipeline._schema import dtype_kind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_BINS = 64
SCREEN_FOLDS = 3
MAX_SCREENED_COLUMNS = 300
PAIR_CANDIDATES = 10  # the most predictive numeric features, each paired with every numeric feature
PAIR_PARTNERS = 3  # per candidate and operation: partners kept by correlation, then scored by CV


class _Scorer:
    """Cross-validated per-bin model of the target on a fixed sample of rows."""

    def __init__(self, y: pd.Series, task: str, seed: int = 0) -> None:
        import numpy as np

        self.task = task
        self.n = len(y)
        rng = np.random.default_rng(seed)
        self.fold = rng.permutation(np.arange(self.n) % SCREEN_FOLDS)
        if task == "classification":
            codes, self.classes = y.factorize(sort=True)
            self.y = codes.astype(int)
            self.metric = "roc_auc" if len(self.classes) == 2 else "balanced_accuracy"
        else:
            self.y = y.to_numpy(dtype=float)
            self.metric = "r2"

    def score(self, codes: np.ndarray, n_codes: int) -> float:
        import numpy as np

        predictions = np.empty(self.n)
        n_classes = len(self.classes) if self.task == "classification" else 0
        for fold in range(SCREEN_FOLDS):
            train, test = self.fold != fold, self.fold == fold
            if n_classes > 2:
                counts = np.zeros((n_codes, n_classes))
                np.add.at(counts, (codes[train], self.y[train]), 1)
                prior = np.bincount(self.y[train], minlength=n_classes)
                predictions[test] = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), prior.argmax())[codes[test]]
                continue
            sums = np.bincount(codes[train], weights=self.y[train], minlength=n_codes)
            counts = np.bincount(codes[train], minlength=n_codes)
            overall = self.y[train].mean()
            predictions[test] = ((sums + overall) / (counts + 1))[codes[test]]  # one pseudo-row of the mean
        if self.task == "regression":
            residual = ((self.y - predictions) ** 2).sum()
            total = ((self.y - self.y.mean()) ** 2).sum()
            return float(1 - residual / total) if total > 0 else 0.0
        if n_classes > 2:
            hits = predictions.astype(int) == self.y
            return float(np.mean([hits[self.y == c].mean() for c in range(n_classes)]))
        return _auc(self.y, predictions)


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (ties share ranks): sklearn's value without its per-call checks."""
    import numpy as np

    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bin_codes(series: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes: quantile bins for numbers, the most frequent values for text; NaN its own code."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return np.zeros(len(values), dtype=int), 1
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, MAX_BINS + 1)[1:-1]))
        codes = np.searchsorted(edges, values, side="right")
        codes[~np.isfinite(values)] = len(edges) + 1
        return codes, len(edges) + 2
    codes, uniques = pd.factorize(series, sort=False)
    if len(uniques) >= MAX_BINS:
        frequent = np.argsort(-np.bincount(codes[codes >= 0], minlength=len(uniques)), kind="stable")[: MAX_BINS - 2]
        remap = np.full(len(uniques), MAX_BINS - 2)
        remap[frequent] = np.arange(len(frequent))
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        n_codes = MAX_BINS
    else:
        n_codes = len(uniques) + 1
    codes = np.where(codes >= 0, codes, n_codes - 1)
    return codes.astype(int), n_codes


def _linear_r2(x: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    mask = np.isfinite(x)
    if mask.sum() < MIN_ROWS or np.ptp(x[mask]) == 0 or np.ptp(y[mask]) == 0:
        return 0.0
    return float(np.corrcoef(x[mask], y[mask])[0, 1] ** 2)


def _is_target_copy(x: pd.Series, y: pd.Series) -> bool:
    """One value of x per target value and the reverse: the target under another name."""
    import numpy as np
    import pandas as pd

    n = y.nunique()
    if x.nunique() != n or n < 2:
        return False
    x_codes, y_codes = pd.factorize(x)[0], pd.factorize(y)[0]
    return len(np.unique(x_codes * (n + 1) + y_codes)) == n


def leak_findings(
    df: pd.DataFrame, target: str, features: list[str], *, task: str, threshold: float, max_rows: int,
    seed: int = 0, linear: bool = True,
) -> list[Issue]:
    """Features (and pairs of numeric features) that alone predict ``target`` at ``threshold`` or better,
    and (``linear``) numeric features that do together under a linear model."""
    import numpy as np

    labelled = np.flatnonzero(df[target].notna().to_numpy())
    if len(labelled) > max_rows:  # sample the rows before copying any column
        labelled = np.sort(np.random.default_rng(seed).choice(labelled, max_rows, replace=False))
    rows = df[[*features[:MAX_SCREENED_COLUMNS], target]].iloc[labelled]
    if len(rows) < MIN_ROWS * SCREEN_FOLDS or rows[target].nunique() < 2:
        return []
    scorer = _Scorer(rows[target], task, seed)
    issues: list[Issue] = []
    numeric_scores: dict[str, float] = {}
    for name in features[:MAX_SCREENED_COLUMNS]:
        series = rows[name]
        if task == "classification" and _is_target_copy(series, rows[target]):
            issues.append(Issue(
                column=name, rule="target_copy", severity="error", count=len(rows), drop=[name],
                message=f"column {quoted(name)} is the target {target!r} re-encoded (one value per class); "
                        f"drop it (drop=[{quoted(name)}])"))
            continue
        codes, n_codes = _bin_codes(series)
        score = scorer.score(codes, n_codes)
        if task == "regression" and dtype_kind(series) in {"int", "float"}:
            score = max(score, _linear_r2(series.to_numpy(dtype=float), scorer.y))
        if score >= threshold:
            issues.append(Issue(
                column=name, rule="target_leak", severity="error", count=len(rows), drop=[name],
                score=round(score, 4),
                message=f"column {quoted(name)} alone predicts {target!r} with cross-validated {scorer.metric} "
                        f"{score:.4f} (threshold {threshold}): it is, or is computed from, the answer; "
                        f"drop it (drop=[{quoted(name)}])"))
        elif dtype_kind(series) in {"int", "float"}:
            numeric_scores[name] = score
    pairs = _pair_leaks(rows, target, numeric_scores, scorer, task=task, threshold=threshold)
    if not linear:
        return issues + pairs
    paired = {c for issue in pairs for c in issue.drop}  # a leak already named is not named again
    unexplained = {c: s for c, s in numeric_scores.items() if c not in paired}
    return issues + pairs + linear_leaks(rows, target, unexplained, scorer, threshold=threshold)


def _combine(op: str, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    import numpy as np

    if op == "-":
        return x - z
    if op == "+":
        return x + z
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(z != 0, x / z, np.nan)


def _pair_leaks(rows: pd.DataFrame, target: str, numeric_scores: dict[str, float], scorer: _Scorer, *,
                task: str, threshold: float) -> list[Issue]:
    """Differences, sums and ratios that predict the target though neither column does alone.

    Each of the ``PAIR_CANDIDATES`` most predictive columns is combined with every numeric column at
    once; the ``PAIR_PARTNERS`` combinations most correlated with the target (a vectorized linear
    prefilter) are scored by the per-bin CV model."""
    import numpy as np
    import pandas as pd

    names = list(numeric_scores)
    if len(names) < 2:
        return []
    matrix = rows[names].to_numpy(dtype=float)
    matrix = np.where(np.isfinite(matrix), matrix, np.nanmean(np.where(np.isfinite(matrix), matrix, np.nan), axis=0))
    y = scorer.y.astype(float)
    y_centered = (y - y.mean()) / (y.std() or 1.0)
    candidates = sorted(names, key=lambda c: -numeric_scores[c])[:PAIR_CANDIDATES]
    issues: list[Issue] = []
    flagged: set[frozenset[str]] = set()
    for a in candidates:
        x = matrix[:, names.index(a)]
        for op in ("-", "+", "/"):
            combined = _combine(op, x[:, None], matrix)
            combined = np.where(np.isfinite(combined), combined, 0.0)
            spread = combined.std(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                corr = np.abs(((combined - combined.mean(axis=0)) * y_centered[:, None]).mean(axis=0) / spread)
            corr[~np.isfinite(corr)] = 0.0
            corr[names.index(a)] = 0.0
            for j in np.argsort(-corr)[:PAIR_PARTNERS]:
                b = names[j]
                if frozenset((a, b)) in flagged or corr[j] == 0.0:
                    continue
                values = combined[:, j]
                codes, n_codes = _bin_codes(pd.Series(values))
                score = scorer.score(codes, n_codes)
                if task == "regression":
                    score = max(score, _linear_r2(values, scorer.y))
                if score < threshold:
                    continue
                flagged.add(frozenset((a, b)))
                issues.append(Issue(
                    column=a, rule="pair_leak", severity="error", count=len(rows), drop=[a, b],
                    score=round(score, 4),
                    message=f"{quoted(a)} {op} {quoted(b)} alone predicts {target!r} with cross-validated "
                            f"{scorer.metric} {score:.4f} (threshold {threshold}), though neither does alone: "
                            f"together they rebuild the answer; drop them (drop=[{quoted(a)}, {quoted(b)}])"))
    return issues
