"""Warnings that travel with a tuning or pipeline result, and the score rules that raise them.

A result with any warning is *flagged*: its model is registered but never takes an alias by
itself; ``promote_model`` then needs ``force=true`` and a reason, both recorded.

leak_suspect            data checks found identifiers, dates or leaks, and ``leak_check='warn'`` trained anyway
near_perfect_score      a bounded score (roc_auc, accuracy, f1, r2, …) at or above ``near_perfect_score``
cv_test_gap             the holdout score is far below the cross-validated one
small_test_set          too few holdout rows (or minority-class rows) to trust the test score
accuracy_on_imbalanced  accuracy judged on classes where always answering the majority scores high
many_classes            a classification target with hundreds of classes (an id or a number?)
entity_overlap          a random split put the same entity (player, game) on both sides of the holdout
no_holdout              the search saw every row (``test_size=0``): no later test score on this data is honest
below_baseline          the model does not beat a trivial one (prior class / mean) on the same rows by more
                        than their noise, or ranks below chance
duplicate_rows          the job dropped more than ``DUPLICATE_SHARE`` of the rows as full-row duplicates
holdout_reused          models of one name were judged on the same holdout more than ``holdout_reuse_limit`` times
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import pandas as pd

    from mcp_server.data_validation_pipeline import Issue
    from mcp_server.evaluation._split import SplitRecord

WarningCode = Literal[
    "leak_suspect", "near_perfect_score", "cv_test_gap", "small_test_set", "accuracy_on_imbalanced",
    "many_classes", "entity_overlap", "no_holdout", "below_baseline", "duplicate_rows", "holdout_reused",
]
DEFAULT_NEAR_PERFECT = 0.99
# Higher-is-better scores bounded by 1: the ones where "too good to be true" has a meaning.
_BOUNDED = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "average_precision", "precision", "recall",
            "jaccard", "r2", "explained_variance")
MIN_TEST_ROWS = 30
MIN_TEST_CLASS_ROWS = 5
IMBALANCED_MAJORITY = 0.8
MANY_CLASSES = 100
GAP_ABSOLUTE = 0.05
GAP_RELATIVE_ERROR = 0.25  # error metrics: test worse than CV by more than this fraction
DUPLICATE_SHARE = 0.05
BASELINE_FOLD_Z = 2.0  # fold differences: the mean must exceed this many standard errors


class ModelWarning(BaseModel):
    """One reason not to trust a score as it stands."""

    code: WarningCode
    message: str
    columns: list[str] = Field(default_factory=list)


def is_bounded_score(metric: str) -> bool:
    name = metric.removeprefix("test_").removeprefix("cv_").removeprefix("best_cv_")
    return name.startswith(_BOUNDED) and not name.startswith("neg_")


def near_perfect(metric: str, score: float | None, threshold: float, *, measured_on: str) -> list[ModelWarning]:
    if score is None or not is_bounded_score(metric) or score < threshold:
        return []
    return [ModelWarning(
        code="near_perfect_score",
        message=f"{metric} {score:.4f} on {measured_on} is at or above {threshold}: real tabular problems rarely "
                "score this high; look for a column that encodes the answer (a score, a result, a later "
                "measurement) before trusting it")]


def cv_test_gap(metric: str, cv_mean: float | None, cv_std: float | None, test: float | None,
                *, lower_is_better: bool) -> list[ModelWarning]:
    if cv_mean is None or test is None:
        return []
    spread = 3 * (cv_std or 0.0)
    if lower_is_better:
        worse = test > cv_mean * (1 + GAP_RELATIVE_ERROR) + spread
    else:
        worse = cv_mean - test > max(GAP_ABSOLUTE, spread)
    if not worse:
        return []
    return [ModelWarning(
        code="cv_test_gap",
        message=f"test {metric} {test:.4g} is far {'above' if lower_is_better else 'below'} the cross-validated "
                f"{cv_mean:.4g} ± {cv_std or 0:.2g}: the folds share something the holdout does not (entities, "
                "time, duplicates); try a group or time split")]


def target_warnings(y: pd.Series, task: str, metric: str) -> list[ModelWarning]:
    if task != "classification":
        return []
    counts = y.value_counts(normalize=True)
    found: list[ModelWarning] = []
    if len(counts) >= MANY_CLASSES:
        found.append(ModelWarning(
            code="many_classes", columns=[str(y.name)],
            message=f"target {y.name!r} has {len(counts)} classes: is it an identifier or a number to regress?"))
    bare = metric.removeprefix("test_").removeprefix("cv_")
    if bare == "accuracy" and len(counts) and counts.iloc[0] >= IMBALANCED_MAJORITY:
        found.append(ModelWarning(
            code="accuracy_on_imbalanced", columns=[str(y.name)],
            message=f"always answering {counts.index[0]!r} scores accuracy {counts.iloc[0]:.3f}: judge this model "
                    "by roc_auc, f1 or balanced_accuracy instead"))
    return found


def holdout_warnings(record: SplitRecord, y_test: pd.Series | None, task: str) -> list[ModelWarning]:
    if not record.spec.has_holdout:
        return [ModelWarning(
            code="no_holdout",
            message="test_size=0: every row was used for the search, so no test score on this data set is "
                    "unbiased; keep a holdout (test_size > 0) to measure the chosen model")]
    found: list[ModelWarning] = []
    small = record.n_test < MIN_TEST_ROWS
    if y_test is not None and task == "classification" and not small:
        small = int(y_test.value_counts().min()) < MIN_TEST_CLASS_ROWS or y_test.nunique() < 2
    if small:
        found.append(ModelWarning(
            code="small_test_set",
            message=f"the holdout has {record.n_test} rows"
                    + (" and too few of some class" if record.n_test >= MIN_TEST_ROWS else "")
                    + ": its score can swing widely by chance; use more data or a larger test_size"))
    return found


def entity_overlap(frame: pd.DataFrame, record: SplitRecord, entity_columns: list[str]) -> list[ModelWarning]:
    """Entities of ``entity_columns`` found on both sides of a random holdout."""
    if record.spec.kind != "kfold" or not record.spec.has_holdout:
        return []
    found: list[ModelWarning] = []
    for column in entity_columns:
        if column not in frame.columns:
            continue
        train = set(frame.loc[record.train_rows, column].dropna())
        test = set(frame.loc[record.test_rows, column].dropna())
        shared = len(train & test)
        if shared:
            found.append(ModelWarning(
                code="entity_overlap", columns=[column],
                message=f"{shared} of the {len(test)} {column} values in the holdout also appear in training rows: "
                        "the score rewards recognizing them, not predicting new ones; use "
                        f"split={{'kind': 'group', 'column': {column!r}}}"))
    return found


def leak_suspects(findings: list[Issue]) -> list[ModelWarning]:
    """Error-level data findings kept as warnings (``leak_check='warn'``)."""
    return [ModelWarning(code="leak_suspect", message=issue.message, columns=issue.drop or [issue.column or ""])
            for issue in findings if issue.severity == "error"]


def below_baseline_cv(scoring: str, fold_scores: list[float], baseline_fold_scores: list[float] | None,
                      *, higher_is_better: bool = True) -> list[ModelWarning]:
    """The best trial against a trivial model on the same folds: flagged unless the paired fold
    differences are above zero by more than ``BASELINE_FOLD_Z`` standard errors."""
    import math
    import statistics

    if not baseline_fold_scores or not fold_scores:
        return []
    pairs = [(a, b) for a, b in zip(fold_scores, baseline_fold_scores, strict=False)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 2:
        return []
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (a - b) for a, b in pairs]
    mean = statistics.fmean(differences)
    stderr = statistics.stdev(differences) / math.sqrt(len(differences))
    if mean > BASELINE_FOLD_Z * stderr and mean > 0:
        return []
    model = statistics.fmean(a for a, _ in pairs)
    baseline = statistics.fmean(b for _, b in pairs)
    return [ModelWarning(
        code="below_baseline",
        message=f"the best cross-validated {scoring} {model:.4g} does not beat a trivial model (prior class / mean: "
                f"{baseline:.4g}) on the same {len(pairs)} folds by more than their spread (difference "
                f"{mean:+.3g} ± {stderr:.2g} per fold): the features carry little signal here; try other features "
                "or estimators, check the class balance and the split, or get more data")]


def below_baseline_holdout(metric: str, score: float, baseline: float, low: float, high: float, *,
                           rows: int, baseline_name: str, chance: float | None) -> list[ModelWarning]:
    """The holdout score against a trivial model on the same rows; ``low``/``high``: a paired
    bootstrap interval of (model − baseline), oriented so that positive is better."""
    if chance is not None and score < chance:
        return [ModelWarning(
            code="below_baseline",
            message=f"test {metric} {score:.4g} on the holdout ({rows} rows) is below chance ({chance:g}): the model "
                    "ranks the classes the wrong way round, so something between training and test rows differs "
                    "(labels inverted by the preprocessing, a shifted time period, duplicates); check the data and "
                    "the split before using it")]
    if low > 0:
        return []
    return [ModelWarning(
        code="below_baseline",
        message=f"test {metric} {score:.4g} does not beat a trivial model ({baseline_name}: {baseline:.4g}) on the same "
                f"{rows} holdout rows by more than their noise (paired bootstrap 90% interval of the gain "
                f"{low:+.3g} to {high:+.3g}): the features carry little signal here; try other features or estimators, "
                "check the class balance and the split, or get more data")]
