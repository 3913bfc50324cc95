"""The units of work the search loop hands to an executor: a whole trial (fold by fold, so a pruner
can stop it) or a single fold. Module level and free of loop state so loky / Dask workers can run them.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_server.hyperparameter_tuning._pruning import Pruner
from mcp_server.hyperparameter_tuning._types import TrialState
from mcp_server.workers import describe_error

logger = logging.getLogger(__name__)

Task = tuple[Callable, tuple]


@dataclass
class TrialOutcome:
    params: dict[str, Any]
    state: TrialState
    fold_scores: list[float]
    duration_seconds: float
    n_folds: int
    error: str | None = None
    exception: BaseException | None = None
    too_late: bool = False  # a fold would have started past the search's deadline: not a result

    @property
    def folds_saved(self) -> int:
        return self.n_folds - len(self.fold_scores) if self.state is TrialState.PRUNED else 0


def run_trial(
    evaluator: Any,
    params: dict[str, Any],
    pruner: Pruner | None,
    history: Sequence[Sequence[float]],
    sign: float,
    not_after: float | None = None,
) -> TrialOutcome:
    """Evaluate one candidate fold by fold (module level so loky / Dask workers can run it).
    ``not_after`` (wall clock): no fold starts past it, and a trial cut short is ``too_late``."""
    started = time.perf_counter()
    scores: list[float] = []
    n_folds = evaluator.n_folds
    try:
        for fold in range(n_folds):
            if not_after is not None and time.time() >= not_after:
                return TrialOutcome(params, TrialState.FAILED, scores, time.perf_counter() - started, n_folds,
                                    too_late=True)
            scores.append(evaluator.evaluate_fold(params, fold))
            is_last = fold == n_folds - 1
            if pruner is not None and not is_last and pruner.should_prune([sign * s for s in scores], history):
                return TrialOutcome(params, TrialState.PRUNED, scores, time.perf_counter() - started, n_folds)
    except Exception as exc:  # noqa: BLE001 - a failing trial is data, the policy decides
        logger.debug("trial %s failed:\n%s", params, traceback.format_exc())
        return TrialOutcome(
            params, TrialState.FAILED, scores, time.perf_counter() - started, n_folds,
            error=describe_error(exc), exception=exc,
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
    too_late: bool = False  # not run: it would have started a trial after the search's deadline


def run_fold(evaluator: Any, params: dict[str, Any], fold: int, *, not_after: float | None = None) -> FoldOutcome:
    """One fold of one candidate: the unit of work when nothing needs folds in order (no pruning).

    ``not_after`` (wall clock, ``time.time()``; given for every fold when the search has a timeout)
    is checked where the fold runs: a task dispatched ahead of time that only reaches a worker after
    the deadline does not run, and its trial is dropped.
    """
    if not_after is not None and time.time() >= not_after:
        return FoldOutcome(None, 0.0, too_late=True)
    started = time.perf_counter()
    try:
        score = evaluator.evaluate_fold(params, fold)
    except Exception as exc:  # noqa: BLE001 - a failing trial is data, the policy decides
        logger.debug("fold %d of %s failed:\n%s", fold, params, traceback.format_exc())
        return FoldOutcome(None, time.perf_counter() - started, describe_error(exc), exc)
    return FoldOutcome(score, time.perf_counter() - started)


def combine_folds(params: dict[str, Any], folds: list[FoldOutcome]) -> TrialOutcome:
    """The trial outcome the sequential path would have produced (it stops at the first failing fold)."""
    scores: list[float] = []
    duration = sum(f.duration_seconds for f in folds)
    if any(f.too_late for f in folds):
        return TrialOutcome(params, TrialState.FAILED, [], duration, len(folds), too_late=True)
    for fold in folds:
        if fold.error is not None:
            return TrialOutcome(params, TrialState.FAILED, scores, duration, len(folds),
                                error=fold.error, exception=fold.exception)
        scores.append(fold.score)
    if not all(math.isfinite(s) for s in scores):
        return TrialOutcome(params, TrialState.FAILED, scores, duration, len(folds),
                            error=f"non-finite fold score in {scores}")
    return TrialOutcome(params, TrialState.COMPLETE, scores, duration, len(folds))


# A batch runner runs a list of tasks and returns their results in task order.
BatchRunner = Callable[[list[Task]], list[Any]]
# A stream runner pulls tasks lazily from an iterable (as workers free up) and yields
# ``(task index, result)`` pairs in completion order.
StreamRunner = Callable[[Iterable[Task]], Iterator[tuple[int, Any]]]


def run_sequentially(tasks: list[Task]) -> list[Any]:
    return [fn(*args) for fn, args in tasks]


def stream_sequentially(tasks: Iterable[Task]) -> Iterator[tuple[int, Any]]:
    for index, (fn, args) in enumerate(tasks):
        yield index, fn(*args)


@dataclass(frozen=True)
class Execution:
    """Where a search runs its tasks: the runners, how many at once, and a description for the summary."""

    runner: BatchRunner
    batch_size: int
    description: str
    stream: StreamRunner = stream_sequentially
