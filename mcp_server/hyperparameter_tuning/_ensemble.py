"""Ensembles from out-of-fold predictions (Caruana et al. 2004), after an ``estimator="auto"`` search.

AutoGluon's ``greedy_ensemble/ensemble_selection.py`` (and auto-sklearn's) is the model, written anew:

1. ``ensemble_candidates``: the best trial of each family, then the next best overall, distinct,
   up to ``MAX_MEMBERS``.
2. ``out_of_fold``: each candidate refitted on exactly the search's folds (its family's pipeline,
   as the evaluator fits it), predicting each fold's validation rows — class probabilities for a
   classifier, predictions for a regressor. Group and time folds stay what they were. Candidates
   whose cost (their trial's) would not end before the deadline are skipped. The refits run one
   at a time in the calling thread, native pools bounded to the job's share.
3. ``greedy_selection``: ``ROUNDS`` rounds of adding, with replacement, the candidate that makes the
   averaged ensemble score best; ties go to a candidate already chosen (then to the better single
   model); only the best prefix of the trajectory is kept; weights = counts / total.
4. The ensemble and each member are scored the way every trial is: the search's scorer on each
   fold's validation rows, averaged over the folds. The ensemble wins only if its score beats the
   best member's (on the very same predictions) by more than ``WIN_MARGIN`` of that member's fold
   std: the weights were chosen on those rows, so a smaller gain is what the selection itself buys.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from mcp_server.hyperparameter_tuning._cv import take
from mcp_server.hyperparameter_tuning._portfolio import FAMILY_KEY, split_family
from mcp_server.hyperparameter_tuning._types import EnsembleMember, EnsembleResult, TrialRecord, TrialState
from mcp_server.threads import fit_threads, limit_threads

logger = logging.getLogger(__name__)

MAX_MEMBERS = 6  # candidates whose out-of-fold predictions are computed
ROUNDS = 25  # greedy selection rounds (AutoGluon's default ensemble_size is 25 too)
# Share of an auto search's time budget kept for the out-of-fold refits and the selection.
BUDGET_SHARE = 0.12
# A gain over the best member must exceed this share of that member's fold-score std: the weights
# are chosen on the rows that score them (selection among 25^6 weightings fits some noise), and a
# tenth of the fold spread is about the gain such a selection shows on a target no blend helps.
WIN_MARGIN = 0.1
# A refit costs about its trial (the same fits, here one fold after the other): this much slack.
COST_SLACK = 1.25


def ensemble_candidates(trials: Sequence[TrialRecord], *, sign: float, limit: int = MAX_MEMBERS) -> list[TrialRecord]:
    """The best trial of each family (best family first), then the next best overall, distinct."""
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.score is not None
                and np.isfinite(t.score) and FAMILY_KEY in t.params]
    ranked = sorted(complete, key=lambda t: (-sign * t.score, t.number))
    chosen: list[TrialRecord] = []
    seen: set[str] = set()
    families: set[str] = set()
    for trial in ranked:  # first pass: each family's best
        key = repr(sorted(trial.params.items()))
        if trial.params[FAMILY_KEY] not in families and key not in seen:
            chosen.append(trial)
            seen.add(key)
            families.add(trial.params[FAMILY_KEY])
    for trial in ranked:  # then the best of the rest
        key = repr(sorted(trial.params.items()))
        if key not in seen:
            chosen.append(trial)
            seen.add(key)
    chosen = chosen[:limit]
    return sorted(chosen, key=lambda t: (-sign * t.score, t.number))


def out_of_fold(evaluator: Any, params: dict[str, Any], *, classes: np.ndarray | None,
                deadline: float | None = None, should_stop: Callable[[], bool] | None = None) -> list[np.ndarray] | None:
    """Per fold of the evaluator, the candidate's predictions on that fold's validation rows
    (probabilities over ``classes`` for a classifier); None if the deadline passed, or a stop came,
    between folds."""
    from sklearn.base import clone

    family, rest = split_family(params)
    inner = evaluator.evaluators[family]
    out = []
    for train_idx, val_idx in inner.splits:
        if (deadline is not None and time.monotonic() > deadline) or (should_stop is not None and should_stop()):
            return None
        model = clone(inner.estimator).set_params(**{inner.param_names.get(k, k): v for k, v in rest.items()})
        model.fit(take(inner.X, train_idx), take(inner.y, train_idx))
        X_val = take(inner.X, val_idx)
        if classes is None:
            out.append(np.asarray(model.predict(X_val), dtype=float))
            continue
        proba = np.zeros((len(val_idx), len(classes)))
        columns = np.searchsorted(classes, np.asarray(model.classes_))
        proba[:, columns] = np.asarray(model.predict_proba(X_val))
        out.append(proba)
    return out


class _FixedOutputs(BaseEstimator):
    """An "estimator" whose outputs are given: a scorer scores them exactly as it scores a fitted
    model (response method, positive class, thresholds), with row positions as X."""

    def __init__(self, outputs: Any = None, classes: Any = None) -> None:
        self.outputs, self.classes = outputs, classes

    def _rows(self, X: Any) -> np.ndarray:
        return np.asarray(X)[:, 0]


class _FixedRegressor(RegressorMixin, _FixedOutputs):
    def predict(self, X: Any) -> np.ndarray:
        return self.outputs[self._rows(X)]


class _FixedClassifier(ClassifierMixin, _FixedOutputs):
    @property
    def classes_(self) -> np.ndarray:
        return self.classes

    def predict(self, X: Any) -> np.ndarray:
        return self.classes[np.argmax(self.outputs[self._rows(X)], axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.outputs[self._rows(X)]


def fold_scorer(scorer: Any, y_folds: Sequence[np.ndarray], classes: np.ndarray | None) -> Callable:
    """``score(predictions per fold) -> scores per fold``, with the search's scorer."""

    def score(predictions: Sequence[np.ndarray]) -> list[float]:
        scores = []
        for y_val, outputs in zip(y_folds, predictions):
            rows = np.arange(len(y_val)).reshape(-1, 1)
            fixed = _FixedRegressor(outputs) if classes is None else _FixedClassifier(outputs, classes)
            scores.append(float(scorer(fixed, rows, y_val)))
        return scores

    return score


def greedy_selection(predictions: Sequence[Sequence[np.ndarray]], score: Callable[[list[np.ndarray]], float], *,
                     rounds: int = ROUNDS) -> tuple[np.ndarray, list[float]]:
    """Caruana's selection with replacement over candidates' per-fold predictions (best candidate
    first). ``score`` maps per-fold ensemble predictions to one number, higher is better.
    -> (weights over the candidates, summing to 1, from the best prefix; the score trajectory)."""
    n = len(predictions)
    if n == 0:
        raise ValueError("greedy selection needs at least one candidate")
    n_folds = len(predictions[0])
    total = [np.zeros_like(predictions[0][f], dtype=float) for f in range(n_folds)]
    counts = np.zeros(n, dtype=int)
    picks: list[int] = []
    trajectory: list[float] = []
    for size in range(1, rounds + 1):
        scores = np.array([score([(total[f] + predictions[m][f]) / size for f in range(n_folds)]) for m in range(n)])
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        best = scores.max()
        tied = [m for m in range(n) if scores[m] == best]
        pick = max(tied, key=lambda m: (counts[m] > 0, -m))  # an already chosen one, then the better single
        counts[pick] += 1
        picks.append(pick)
        trajectory.append(float(best))
        total = [total[f] + predictions[pick][f] for f in range(n_folds)]
    keep = int(np.argmax(trajectory)) + 1  # the first best: the smallest ensemble reaching it
    weights = np.bincount(picks[:keep], minlength=n).astype(float) / keep
    return weights, trajectory


def build_ensemble(trials: Sequence[TrialRecord], evaluator: Any, *, scorer: Any, sign: float, task: str,
                   deadline: float | None = None, should_stop: Callable[[], bool] | None = None,
                   rounds: int = ROUNDS,
                   margin: float = WIN_MARGIN) -> EnsembleResult | None:
    """The weighted ensemble of the search's best trials, if it beats the best of them on the
    search's folds; None otherwise (or when fewer than two candidates could be refitted in time)."""
    started = time.monotonic()
    candidates = ensemble_candidates(trials, sign=sign)
    if len(candidates) < 2:
        return None
    first = next(iter(evaluator.evaluators.values()))
    y = np.asarray(first.y)
    classes = np.unique(y) if task == "classification" else None
    y_folds = [y[val] for _, val in first.splits]
    members, predictions = [], []
    for trial in candidates:
        if should_stop is not None and should_stop():
            return None
        cost = COST_SLACK * trial.duration_seconds
        found = None
        if deadline is not None and time.monotonic() + cost > deadline:
            logger.info("ensemble: trial %d left out (~%.1f s, %.1f s left)", trial.number, cost,
                        deadline - time.monotonic())
        else:
            try:
                with limit_threads(fit_threads(1)):  # one fit at a time: the job's share (rule 19)
                    found = out_of_fold(evaluator, trial.params, classes=classes, deadline=deadline,
                                        should_stop=should_stop)
            except Exception as exc:  # a candidate that fit in the search but not here: leave it out
                logger.warning("ensemble: trial %d could not be refitted: %r", trial.number, exc)
        if found is None and trial is candidates[0]:
            # Without the search's best trial the blend is judged against a lesser member and can
            # "win" while worse than the best (all_seasons: 1.094 beat its members, not LightGBM's 0.981).
            logger.info("ensemble: the search's best trial %d could not be refitted in time; it stands", trial.number)
            return None
        if found is not None:
            members.append(trial)
            predictions.append(found)
    if len(members) < 2:
        return None
    per_fold = fold_scorer(scorer, y_folds, classes)
    weights, trajectory = greedy_selection(predictions, lambda p: sign * statistics.fmean(per_fold(p)),
                                           rounds=rounds)
    if np.count_nonzero(weights) < 2:
        return None
    blend = [sum(w * predictions[m][f] for m, w in enumerate(weights) if w) for f in range(len(y_folds))]
    ensemble_scores = per_fold(blend)
    single = [per_fold(p) for p in predictions]
    best = max(range(len(members)), key=lambda m: (sign * statistics.fmean(single[m]), -m))
    best_scores = single[best]
    gain = sign * (statistics.fmean(ensemble_scores) - statistics.fmean(best_scores))
    noise = statistics.pstdev(best_scores) if len(best_scores) > 1 else 0.0
    logger.info("ensemble: %s vs best member %s (gain %.4g, margin %.4g) in %.1f s",
                statistics.fmean(ensemble_scores), statistics.fmean(best_scores), gain, margin * noise,
                time.monotonic() - started)
    if not gain > margin * noise or not gain > 0:
        return None
    return EnsembleResult(
        members=[EnsembleMember(estimator=split_family(t.params)[0], params=split_family(t.params)[1],
                                weight=float(w), trial=t.number, cv_score=statistics.fmean(single[m]))
                 for m, (t, w) in enumerate(zip(members, weights)) if w > 0],
        cv_score=statistics.fmean(ensemble_scores),
        cv_std=statistics.pstdev(ensemble_scores) if len(ensemble_scores) > 1 else 0.0,
        fold_scores=ensemble_scores,
        best_member_cv_score=statistics.fmean(best_scores),
        best_member_fold_scores=best_scores,
        best_member_trial=members[best].number,
        n_candidates=len(members),
        rounds=rounds,
        seconds=round(time.monotonic() - started, 3),
    )
