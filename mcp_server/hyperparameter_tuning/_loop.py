"""The one search loop: propose -> evaluate (fold by fold, maybe pruned) -> record -> log -> report
-> check early stopping, budgets and cancellation. Both the callable and the estimator path use it.

Two ways to keep the workers busy, one bookkeeping: everything that records, logs or calls back
happens here, in the calling thread, in trial-number order, so results match a sequential run.

* Rolling (grid / random without pruning, n_jobs > 1): the candidates are known up front, so every
  (candidate, fold) task goes to one ``StreamRunner`` that hands the next task to whichever worker
  frees up, as GridSearchCV does. Nothing waits for a batch. A trial is recorded once all its folds
  are back and every earlier trial is recorded; anything dispatched past a stop is discarded.
* Batched (Bayesian, which needs results before proposing more; pruning, which needs the earlier
  trials' folds; n_jobs=1): ``batch_size`` candidates at a time through a ``BatchRunner``.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from mcp_server import operator_metrics
from mcp_server.hyperparameter_tuning._worker_pool import ExecutionInterrupted
from mcp_server.hyperparameter_tuning._pruning import Pruner
from mcp_server.hyperparameter_tuning._strategies import SearchStrategy
from mcp_server.hyperparameter_tuning._tasks import (
    BatchRunner,
    FoldOutcome,
    StreamRunner,
    Task,
    TrialOutcome,
    combine_folds,
    run_fold,
    run_sequentially,
    run_trial,
)
from mcp_server.hyperparameter_tuning._types import (
    Direction,
    OnTrialError,
    StopReason,
    TrialRecord,
    TrialState,
    TuningProgress,
    resource_rank,
)

if TYPE_CHECKING:
    from mcp_server.hyperparameter_tuning._search import SearchRequest

logger = logging.getLogger(__name__)


class SearchCancelled(Exception):
    """Raise from an on_trial callback (or return False) to stop the search after the current trial."""


ALL_CANDIDATES = 2**31  # "ask for every remaining candidate" for strategies that propose ahead


@dataclass
class LoopOutcome:
    trials: list[TrialRecord]
    stop_reason: StopReason
    n_trials_run: int = 0
    n_fold_fits: int = 0
    n_fold_fits_saved: int = 0
    elapsed_seconds: float = 0.0
    error: BaseException | None = None


def _fidelity_of(trial: TrialRecord) -> Any:
    if trial.rung is None:
        return None
    from mcp_server.hyperparameter_tuning._halving import Fidelity

    return Fidelity(trial.bracket or 0, trial.rung, 0, trial.resource or 0, "")


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
    config: SearchRequest  # direction, scoring, budgets, patience, pruner, on_trial_error
    batch_size: int = 1  # candidates proposed at a time (the execution's worker count)
    runner: BatchRunner = run_sequentially
    stream: StreamRunner | None = None  # None: always batched
    previous: list[TrialRecord] = field(default_factory=list)  # read back on resume
    on_record: Callable[[TrialRecord], None] | None = None  # logging, in the caller's process
    on_trial: Callable[[TrialRecord, TuningProgress], Any] | None = None
    should_stop: Callable[[], bool] | None = None
    next_number: int = 0  # numbers of failed resumed trials are not reused
    # time.monotonic() past which no trial (no fold) starts; None: the loop's start + config.timeout.
    deadline: float | None = None

    def __post_init__(self) -> None:
        self.trials: list[TrialRecord] = list(self.previous)
        self.next_number = max([self.next_number, *(t.number + 1 for t in self.trials)])
        self._sign = self.config.direction.sign
        self._best: float | None = None  # signed
        self._since_improvement = 0
        self._fidelity = getattr(self.strategy, "fidelity", None)  # successive halving: rung and resource
        restore = getattr(self.strategy, "restore", None)
        for trial in self.trials:  # the strategy learns the resumed trials first
            if restore is not None:
                restore(_fidelity_of(trial), trial.params, self._signed(trial))
            else:
                self.strategy.tell(trial.params, self._signed(trial))
            self._update_best(trial)
        self._since_improvement = 0

    def _family(self, trial: TrialRecord) -> str:
        """The allow-listed estimator family a trial fitted (a portfolio names it in the params;
        a callable search has none: "other")."""
        from mcp_server.estimators import REGISTRY
        from mcp_server.hyperparameter_tuning._portfolio import FAMILY_KEY

        family = trial.params.get(FAMILY_KEY) if getattr(self.config, "portfolio", None) else self.config.objective
        return family if family in REGISTRY else operator_metrics.OTHER

    def _signed(self, trial: TrialRecord) -> float | None:
        return None if trial.state is TrialState.FAILED or trial.score is None else self._sign * trial.score

    def _update_best(self, trial: TrialRecord) -> None:
        if not self._full_resource(trial):
            return  # halving: a lower rung's score neither improves the best nor spends patience
        if trial.state is TrialState.COMPLETE and trial.score is not None:
            signed = self._sign * trial.score
            if self._best is None or signed > self._best + self.config.min_delta:
                self._best = signed
                self._since_improvement = 0
                return
            # A better score within min_delta still becomes the best, without resetting patience.
            self._best = max(self._best, signed)
        self._since_improvement += 1

    def _full_resource(self, trial: TrialRecord) -> bool:
        return trial.resource is None or trial.resource >= getattr(self.strategy, "max_resource", 0)

    def best_trial(self) -> TrialRecord | None:
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and t.score is not None]
        if not complete:
            return None
        return max(complete, key=lambda t: (resource_rank(t), self._sign * t.score, -t.number))

    def _history(self) -> list[list[float]]:
        return [[self._sign * s for s in t.fold_scores] for t in self.trials
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.fold_scores]

    def _progress(self, started: float, rung: str | None = None) -> TuningProgress:
        best = self.best_trial()
        return TuningProgress(
            n_trials_done=len(self.trials), max_trials=self.config.max_trials,
            best_score=best.score if best else None, best_params=best.params if best else None,
            scoring=self.config.scoring, elapsed_seconds=round(time.monotonic() - started, 3), rung=rung,
        )

    def _evaluator_for(self, params: dict[str, Any]) -> Any:
        fidelity = self._fidelity(params) if self._fidelity is not None else None
        return self.evaluator if fidelity is None else self.evaluator.at(fidelity.resource)

    def _stop_before_batch(self, started: float) -> StopReason | None:
        cfg = self.config
        if self.should_stop is not None and self.should_stop():
            return StopReason.CANCELLED
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return StopReason.TIMEOUT
        if cfg.max_trials is not None and len(self.trials) >= cfg.max_trials:
            return StopReason.MAX_TRIALS
        if cfg.patience is not None and self._since_improvement >= cfg.patience:
            return StopReason.EARLY_STOPPING
        return None

    def run(self) -> LoopOutcome:
        cfg = self.config
        started = time.monotonic()
        if self.deadline is not None:
            self._deadline = self.deadline
        else:
            self._deadline = started + cfg.timeout if cfg.timeout is not None else None
        out = LoopOutcome(trials=self.trials, stop_reason=StopReason.EXHAUSTED)
        while True:
            reason = self._stop_before_batch(started)
            if reason is not None:
                out.stop_reason = reason
                break
            rolling = self._rolling()
            n = self.batch_size
            if rolling:  # the whole remaining list: early stopping is checked trial by trial as results arrive
                n = cfg.max_trials - len(self.trials) if cfg.max_trials is not None else ALL_CANDIDATES
            else:
                if cfg.max_trials is not None:
                    n = min(n, cfg.max_trials - len(self.trials))
                if cfg.patience is not None:  # don't start trials past the patience limit
                    n = min(n, cfg.patience - self._since_improvement)
            candidates = self.strategy.ask(n)
            if not candidates:
                out.stop_reason = StopReason.EXHAUSTED
                break
            try:
                if rolling:
                    stop = self._run_rolling(candidates, out, started)
                else:
                    stop = self._record_batch(self._evaluate(candidates), out, started)
            except ExecutionInterrupted:
                # A stoppable executor killed the trials in flight (a cancel, or the deadline); the
                # recorded ones stand.
                cancelled = self.should_stop is not None and self.should_stop()
                stop = StopReason.TIMEOUT if self._past_deadline() and not cancelled else StopReason.CANCELLED
            if stop is not None:
                out.stop_reason = stop
                break
        out.elapsed_seconds = time.monotonic() - started
        return out

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _not_after(self) -> float | None:
        """The deadline on the wall clock: workers may be other processes or hosts."""
        return None if self._deadline is None else time.time() + (self._deadline - time.monotonic())

    def _evaluate(self, candidates: list[dict[str, Any]]) -> list[TrialOutcome]:
        n_folds = self.evaluator.n_folds
        not_after = self._not_after()  # no fold starts past the deadline: a trial cut short is dropped
        if self.config.pruner is None and self.batch_size > 1 and n_folds > 1:
            # Fold-level tasks balance the pool far better than whole trials of unequal cost.
            fold_task = partial(run_fold, not_after=not_after)
            tasks = [(fold_task, (self._evaluator_for(c), c, k)) for c in candidates for k in range(n_folds)]
            folds = self.runner(tasks)
            return [combine_folds(c, folds[i * n_folds:(i + 1) * n_folds]) for i, c in enumerate(candidates)]
        history = self._history()
        trial_task = partial(run_trial, not_after=not_after)
        tasks = [(trial_task, (self._evaluator_for(c), c, self.config.pruner, history, self._sign)) for c in candidates]
        return self.runner(tasks)

    def _rolling(self) -> bool:
        cfg = self.config
        return (
            self.stream is not None and cfg.pruner is None and self.batch_size > 1
            and getattr(self.strategy, "proposes_ahead", False)
        )

    def _run_rolling(self, candidates: list[dict[str, Any]], out: LoopOutcome, started: float) -> StopReason | None:
        """Dispatch every (candidate, fold) task through the stream runner; record trials in order.

        The task generator runs in the runner's dispatch thread when a worker frees up, so it only
        reads ``halt`` and the clock: no trial starts once the timeout has passed (started ones
        finish), and nothing at all is dispatched after a stop decided here (cancellation, early
        stopping, on_trial, the failure policy). Results of tasks already running are drained and
        dropped, so the recorded trials are exactly the ones a sequential run would record.
        """
        n_folds = self.evaluator.n_folds
        # The workers check every fold against the wall clock (they may be other processes or hosts).
        fold_task = partial(run_fold, not_after=self._not_after())
        halt = threading.Event()

        def tasks() -> Iterator[Task]:
            for params in candidates:
                if halt.is_set() or self._past_deadline():
                    return
                for fold in range(n_folds):
                    if halt.is_set():
                        return
                    yield fold_task, (self.evaluator, params, fold)

        folds: list[list[FoldOutcome | None]] = [[None] * n_folds for _ in candidates]
        missing = [n_folds] * len(candidates)
        n_started = len(candidates)  # lowered when a first fold arrives too late to start its trial
        next_trial = 0
        stop: StopReason | None = None
        for index, fold_outcome in self.stream(tasks()):
            if stop is not None:
                continue  # draining work dispatched before the stop
            trial, fold = divmod(index, n_folds)
            if fold_outcome.too_late:
                n_started = min(n_started, trial)
                halt.set()  # the timeout has passed: start nothing more (the loop reports TIMEOUT)
            folds[trial][fold] = fold_outcome
            missing[trial] -= 1
            while stop is None and next_trial < n_started and missing[next_trial] == 0:
                stop = self._record_one(combine_folds(candidates[next_trial], folds[next_trial]), out, started)
                folds[next_trial] = []  # free the fold results early
                next_trial += 1
                if stop is None and self._patience_spent():
                    stop = StopReason.EARLY_STOPPING
            if stop is None and self.should_stop is not None and self.should_stop():
                stop = StopReason.CANCELLED
            if stop is not None:
                halt.set()
        if stop is None and n_started < len(candidates):
            stop = StopReason.TIMEOUT
        return stop

    def _patience_spent(self) -> bool:
        return self.config.patience is not None and self._since_improvement >= self.config.patience

    def _record_batch(self, outcomes: list[TrialOutcome], out: LoopOutcome, started: float) -> StopReason | None:
        stop: StopReason | None = None
        for outcome in outcomes:
            if outcome.too_late:  # cut short by the deadline: not a result, and the search is over
                stop = stop or StopReason.TIMEOUT
                continue
            reason = self._record_one(outcome, out, started, notify=stop is None)
            if stop is None:
                stop = reason
        return stop

    def _record_one(
        self, outcome: TrialOutcome, out: LoopOutcome, started: float, *, notify: bool = True
    ) -> StopReason | None:
        """Record, tell, log and report one finished trial; the stop it calls for, if any."""
        record = make_record(self.next_number, outcome)
        fidelity = self._fidelity(record.params) if self._fidelity is not None else None
        if fidelity is not None:
            record.bracket, record.rung, record.resource = fidelity.bracket, fidelity.rung, fidelity.resource
        self.next_number += 1
        self.trials.append(record)
        out.n_trials_run += 1
        out.n_fold_fits += len(outcome.fold_scores) + (1 if outcome.state is TrialState.FAILED else 0)
        out.n_fold_fits_saved += outcome.folds_saved
        tell_cost = getattr(self.strategy, "tell_cost", None)  # cost-aware strategies (the portfolio)
        if tell_cost is not None:
            tell_cost(record.params, record.duration_seconds)
        self.strategy.tell(record.params, self._signed(record))
        self._update_best(record)
        # Counted here, in the server's process, wherever the folds ran (worker processes, Dask).
        operator_metrics.trial_recorded(record.state.value.lower(), family=self._family(record),
                                        seconds=record.duration_seconds)
        if self.on_record is not None:
            self.on_record(record)
        if outcome.state is TrialState.FAILED:
            logger.warning("trial %d failed: %s", record.number, record.error)
            if self.config.on_trial_error is OnTrialError.RAISE and notify:
                out.error = outcome.exception or RuntimeError(outcome.error)
                return StopReason.ERROR
        if self.on_trial is not None and notify:
            try:
                rung = fidelity.describe() if fidelity is not None else None
                if self.on_trial(record, self._progress(started, rung)) is False:
                    return StopReason.CANCELLED
            except SearchCancelled:
                return StopReason.CANCELLED
        return None
