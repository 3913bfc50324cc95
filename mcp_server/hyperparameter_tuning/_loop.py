"""The one search loop: propose -> evaluate (fold by fold, maybe pruned) -> record -> log -> report
-> check early stopping, budgets and cancellation. Both the callable and the estimator path use it.

Trials run in batches of ``batch_size`` (= n_jobs) through a ``BatchRunner``; everything that
records, logs or calls back happens here, in the calling process, in trial-number order.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_server.hyperparameter_tuning._pruning import Pruner
from mcp_server.hyperparameter_tuning._strategies import SearchStrategy
from mcp_server.hyperparameter_tuning._types import (
    Direction,
    OnTrialError,
    StopReason,
    TrialRecord,
    TrialState,
    TuningProgress,
)

logger = logging.getLogger(__name__)


class SearchCancelled(Exception):
    """Raise from an on_trial callback (or return False) to stop the search after the current trial."""


@dataclass
class TrialOutcome:
    params: dict[str, Any]
    state: TrialState
    fold_scores: list[float]
    duration_seconds: float
    n_folds: int
    error: str | None = None
    exception: BaseException | None = None

    @property
    def folds_saved(self) -> int:
        return self.n_folds - len(self.fold_scores) if self.state is TrialState.PRUNED else 0


def run_trial(
    evaluator: Any,
    params: dict[str, Any],
    pruner: Pruner | None,
    history: Sequence[Sequence[float]],
    sign: float,
) -> TrialOutcome:
    """Evaluate one candidate fold by fold (module level so loky / Dask workers can run it)."""
    started = time.perf_counter()
    scores: list[float] = []
    n_folds = evaluator.n_folds
    try:
        for fold in range(n_folds):
            scores.append(evaluator.evaluate_fold(params, fold))
            is_last = fold == n_folds - 1
            if pruner is not None and not is_last and pruner.should_prune([sign * s for s in scores], history):
                return TrialOutcome(params, TrialState.PRUNED, scores, time.perf_counter() - started, n_folds)
    except Exception as exc:  # noqa: BLE001 - a failing trial is data, the policy decides
        logger.debug("trial %s failed:\n%s", params, traceback.format_exc())
        return TrialOutcome(
            params, TrialState.FAILED, scores, time.perf_counter() - started, n_folds,
            error=f"{type(exc).__name__}: {exc}", exception=exc,
        )
    if not all(math.isfinite(s) for s in scores):
        return TrialOutcome(
            params, TrialState.FAILED, scores, time.perf_counter() - started, n_folds,
            error=f"non-finite fold score in {scores}",
        )
    return TrialOutcome(params, TrialState.COMPLETE, scores, time.perf_counter() - started, n_folds)


@dataclass
class FoldOutcome:
    score: float | None
    duration_seconds: float
    error: str | None = None
    exception: BaseException | None = None


def run_fold(evaluator: Any, params: dict[str, Any], fold: int) -> FoldOutcome:
    """One fold of one candidate: the unit of work when nothing needs folds in order (no pruning)."""
    started = time.perf_counter()
    try:
        score = evaluator.evaluate_fold(params, fold)
    except Exception as exc:  # noqa: BLE001 - a failing trial is data, the policy decides
        logger.debug("fold %d of %s failed:\n%s", fold, params, traceback.format_exc())
        return FoldOutcome(None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}", exc)
    return FoldOutcome(score, time.perf_counter() - started)


def combine_folds(params: dict[str, Any], folds: list[FoldOutcome]) -> TrialOutcome:
    """The trial outcome the sequential path would have produced (it stops at the first failing fold)."""
    scores: list[float] = []
    duration = sum(f.duration_seconds for f in folds)
    for fold in folds:
        if fold.error is not None:
            return TrialOutcome(params, TrialState.FAILED, scores, duration, len(folds),
                                error=fold.error, exception=fold.exception)
        scores.append(fold.score)
    if not all(math.isfinite(s) for s in scores):
        return TrialOutcome(params, TrialState.FAILED, scores, duration, len(folds),
                            error=f"non-finite fold score in {scores}")
    return TrialOutcome(params, TrialState.COMPLETE, scores, duration, len(folds))


BatchRunner = Callable[[list[tuple[Callable, tuple]]], list[Any]]


def run_sequentially(tasks: list[tuple[Callable, tuple]]) -> list[Any]:
    return [fn(*args) for fn, args in tasks]


@dataclass
class LoopConfig:
    direction: Direction
    scoring: str
    max_trials: int | None
    timeout: float | None = None
    patience: int | None = None  # None: no early stopping
    min_delta: float = 0.0
    batch_size: int = 1
    on_trial_error: OnTrialError = OnTrialError.RECORD
    pruner: Pruner | None = None


@dataclass
class LoopOutcome:
    trials: list[TrialRecord]
    stop_reason: StopReason
    n_trials_run: int = 0
    n_fold_fits: int = 0
    n_fold_fits_saved: int = 0
    elapsed_seconds: float = 0.0
    error: BaseException | None = None


def make_record(number: int, outcome: TrialOutcome) -> TrialRecord:
    scores = outcome.fold_scores
    mean = statistics.fmean(scores) if scores else None
    std = statistics.pstdev(scores) if len(scores) > 1 else (0.0 if scores else None)
    return TrialRecord(
        number=number, params=outcome.params, state=outcome.state,
        score=mean if outcome.state is not TrialState.FAILED else None,
        std=std if outcome.state is not TrialState.FAILED else None,
        fold_scores=scores, duration_seconds=round(outcome.duration_seconds, 6), error=outcome.error,
    )


@dataclass
class SearchLoop:
    strategy: SearchStrategy
    evaluator: Any
    config: LoopConfig
    runner: BatchRunner = run_sequentially
    previous: list[TrialRecord] = field(default_factory=list)  # read back on resume
    on_record: Callable[[TrialRecord], None] | None = None  # logging, in the caller's process
    on_trial: Callable[[TrialRecord, TuningProgress], Any] | None = None
    should_stop: Callable[[], bool] | None = None
    next_number: int = 0  # numbers of failed resumed trials are not reused

    def __post_init__(self) -> None:
        self.trials: list[TrialRecord] = list(self.previous)
        self.next_number = max([self.next_number, *(t.number + 1 for t in self.trials)])
        self._sign = self.config.direction.sign
        self._best: float | None = None  # signed
        self._since_improvement = 0
        for trial in self.trials:  # the strategy learns the resumed trials first
            self.strategy.tell(trial.params, self._signed(trial))
            self._update_best(trial)
        self._since_improvement = 0

    def _signed(self, trial: TrialRecord) -> float | None:
        return None if trial.state is TrialState.FAILED or trial.score is None else self._sign * trial.score

    def _update_best(self, trial: TrialRecord) -> None:
        if trial.state is TrialState.COMPLETE and trial.score is not None:
            signed = self._sign * trial.score
            if self._best is None or signed > self._best + self.config.min_delta:
                self._best = signed
                self._since_improvement = 0
                return
            # A better score within min_delta still becomes the best, without resetting patience.
            self._best = max(self._best, signed)
        self._since_improvement += 1

    def best_trial(self) -> TrialRecord | None:
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and t.score is not None]
        if not complete:
            return None
        return max(complete, key=lambda t: (self._sign * t.score, -t.number))

    def _history(self) -> list[list[float]]:
        return [[self._sign * s for s in t.fold_scores] for t in self.trials if t.state is TrialState.COMPLETE]

    def _progress(self, started: float) -> TuningProgress:
        best = self.best_trial()
        return TuningProgress(
            n_trials_done=len(self.trials), max_trials=self.config.max_trials,
            best_score=best.score if best else None, best_params=best.params if best else None,
            scoring=self.config.scoring, elapsed_seconds=round(time.monotonic() - started, 3),
        )

    def _stop_before_batch(self, started: float) -> StopReason | None:
        cfg = self.config
        if self.should_stop is not None and self.should_stop():
            return StopReason.CANCELLED
        if cfg.timeout is not None and time.monotonic() - started >= cfg.timeout:
            return StopReason.TIMEOUT
        if cfg.max_trials is not None and len(self.trials) >= cfg.max_trials:
            return StopReason.MAX_TRIALS
        if cfg.patience is not None and self._since_improvement >= cfg.patience:
            return StopReason.EARLY_STOPPING
        return None

    def run(self) -> LoopOutcome:
        cfg = self.config
        started = time.monotonic()
        out = LoopOutcome(trials=self.trials, stop_reason=StopReason.EXHAUSTED)
        while True:
            reason = self._stop_before_batch(started)
            if reason is not None:
                out.stop_reason = reason
                break
            n = cfg.batch_size
            if cfg.max_trials is not None:
                n = min(n, cfg.max_trials - len(self.trials))
            if cfg.patience is not None:  # don't start trials past the patience limit
                n = min(n, cfg.patience - self._since_improvement)
            candidates = self.strategy.ask(n)
            if not candidates:
                out.stop_reason = StopReason.EXHAUSTED
                break
            stop = self._record_batch(self._evaluate(candidates), out, started)
            if stop is not None:
                out.stop_reason = stop
                break
        out.elapsed_seconds = time.monotonic() - started
        return out

    def _evaluate(self, candidates: list[dict[str, Any]]) -> list[TrialOutcome]:
        n_folds = self.evaluator.n_folds
        if self.config.pruner is None and self.config.batch_size > 1 and n_folds > 1:
            # Fold-level tasks balance the pool far better than whole trials of unequal cost.
            tasks = [(run_fold, (self.evaluator, c, k)) for c in candidates for k in range(n_folds)]
            folds = self.runner(tasks)
            return [combine_folds(c, folds[i * n_folds:(i + 1) * n_folds]) for i, c in enumerate(candidates)]
        history = self._history()
        tasks = [(run_trial, (self.evaluator, c, self.config.pruner, history, self._sign)) for c in candidates]
        return self.runner(tasks)

    def _record_batch(self, outcomes: list[TrialOutcome], out: LoopOutcome, started: float) -> StopReason | None:
        stop: StopReason | None = None
        for outcome in outcomes:
            record = make_record(self.next_number, outcome)
            self.next_number += 1
            self.trials.append(record)
            out.n_trials_run += 1
            out.n_fold_fits += len(outcome.fold_scores) + (1 if outcome.state is TrialState.FAILED else 0)
            out.n_fold_fits_saved += outcome.folds_saved
            self.strategy.tell(record.params, self._signed(record))
            self._update_best(record)
            if self.on_record is not None:
                self.on_record(record)
            if outcome.state is TrialState.FAILED:
                logger.warning("trial %d failed: %s", record.number, record.error)
                if self.config.on_trial_error is OnTrialError.RAISE and stop is None:
                    out.error = outcome.exception or RuntimeError(outcome.error)
                    stop = StopReason.ERROR
            if self.on_trial is not None and stop is None:
                try:
                    if self.on_trial(record, self._progress(started)) is False:
                        stop = StopReason.CANCELLED
                except SearchCancelled:
                    stop = StopReason.CANCELLED
        return stop
