"""States, policies and result records of a hyperparameter search (plain data, JSON-friendly)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from mcp_server.evaluation import ModelWarning, SplitRecord


class SearchedData(NamedTuple):
    """The rows a search used, recorded as its parent run's dataset input."""

    name: str
    source: Any  # mlflow_integration.DatasetSource
    frame: Any  # features and target of the searched rows
    target: str


class TrialState(str, Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"  # stopped after some folds because it could not plausibly win
    FAILED = "FAILED"  # raised; recorded with its error, never the best


class Direction(str, Enum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    @classmethod
    def from_maximize(cls, maximize: bool) -> Direction:
        return cls.MAXIMIZE if maximize else cls.MINIMIZE

    @property
    def sign(self) -> float:
        """Multiplier that turns a score into "higher is better"."""
        return 1.0 if self is Direction.MAXIMIZE else -1.0


class OnTrialError(str, Enum):
    RECORD = "record"  # record the trial FAILED and go on
    RAISE = "raise"  # record it, end the search and re-raise


class StopReason(str, Enum):
    EXHAUSTED = "exhausted"  # the strategy has no candidate left
    MAX_TRIALS = "max_trials"
    TIMEOUT = "timeout"
    EARLY_STOPPING = "early_stopping"
    CANCELLED = "cancelled"
    ERROR = "error"  # a trial raised under OnTrialError.RAISE


class TrialRecord(BaseModel):
    """One evaluated candidate. ``score`` is the mean of ``fold_scores`` (over the folds that ran)."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=0)
    params: dict[str, Any]
    state: TrialState
    score: float | None = None
    std: float | None = None
    fold_scores: list[float] = Field(default_factory=list)
    duration_seconds: float = 0.0
    error: str | None = None
    run_id: str | None = None  # MLflow child run, when logged
    # Successive halving: the bracket, rung and resource (rows per fold, trees, iterations) it ran at.
    bracket: int | None = None
    rung: int | None = None
    resource: int | None = None

    def to_seed_dict(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "params": dict(self.params),
            "score": self.score,
            "std": self.std,
            "fold_scores": list(self.fold_scores),
            "state": self.state.value,
            "duration_seconds": self.duration_seconds,
            "error": self.error,
            **({"rung": self.rung, "resource": self.resource} if self.rung is not None else {}),
        }


class TuningProgress(BaseModel):
    """What the on_trial callback receives beside the trial: enough for "trial 7/30, best roc_auc 0.742"."""

    n_trials_done: int
    max_trials: int | None
    best_score: float | None
    best_params: dict[str, Any] | None
    scoring: str
    elapsed_seconds: float
    rung: str | None = None  # successive halving: "rung 2/4 (357 rows per fold)"

    def message(self) -> str:
        """Read by people: an error scorer's value as the error ("best rmse 1.73", the MLflow name)."""
        from mcp_server.logged_values import logged_score

        name, sign = logged_score(self.scoring)
        total = f"/{self.max_trials}" if self.max_trials else ""
        best = "n/a" if self.best_score is None else f"{sign * self.best_score:.4g}"
        rung = f"{self.rung}, " if self.rung else ""
        return f"{rung}trial {self.n_trials_done}{total}, best {name} {best}"


class TuningSummary(BaseModel):
    strategy: str
    seed: int
    direction: Direction
    scoring: str
    cv: str
    total_trials: int  # every recorded trial, including ones read back on resume
    n_trials_run: int  # trials evaluated by this call
    n_complete: int
    n_failed: int
    n_pruned: int
    best_score: float | None
    best_params: dict[str, Any] | None
    mean_score: float | None  # over COMPLETE trials
    std_score: float | None
    stopped_early: bool
    stopped_reason: StopReason
    elapsed_seconds: float
    n_fold_fits: int  # fold fits actually run by this call
    n_fold_fits_saved: int  # fold fits pruning skipped in this call
    fell_back_to_random: bool = False
    n_jobs: int = 1
    backend: str = "sequential"
    resumed_from: str | None = None
    n_resumed_trials: int = 0
    halving: str | None = None  # successive halving: its schedule (resource, factor, min/max resource) as JSON


class FamilyResult(BaseModel):
    """One model family of an ``estimator="auto"`` search: its trials and best cross-validated score."""

    name: str
    n_trials: int
    best_score: float | None = None
    best_trial: int | None = None
    seconds: float = 0.0


class EnsembleMember(BaseModel):
    # One model of a weighted ensemble: an allow-listed estimator, its params and its weight. A comment,
    # not a docstring: run_pipeline's schema inlines this model.

    model_config = ConfigDict(extra="forbid")

    estimator: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict, max_length=50)
    weight: float = Field(gt=0, le=1)
    trial: int | None = None  # the search trial it comes from
    cv_score: float | None = None  # its own score on the search's folds


class EnsembleResult(BaseModel):
    """A weighted ensemble of a search's best trials (greedy selection on their out-of-fold
    predictions) that beat the best of them on the search's folds."""

    members: list[EnsembleMember]
    cv_score: float = Field(description="Mean over the search's folds of the ensemble's score, as trials are scored")
    cv_std: float
    fold_scores: list[float]
    best_member_cv_score: float = Field(description="The best single member, scored on the same predictions")
    best_member_fold_scores: list[float]
    best_member_trial: int
    n_candidates: int = Field(description="Trials whose out-of-fold predictions were computed")
    rounds: int
    seconds: float

    def weights(self) -> dict[str, float]:
        """``{"<estimator>#<trial>": weight}``, heaviest first."""
        ordered = sorted(self.members, key=lambda m: -m.weight)
        return {f"{m.estimator}#{m.trial}": m.weight for m in ordered}


class TuningResult(BaseModel):
    best_params: dict[str, Any] | None
    best_score: float | None
    best_trial: TrialRecord | None
    trials: list[TrialRecord]
    summary: TuningSummary
    seed: int
    parent_run_id: str | None = None
    split: SplitRecord | None = Field(default=None, description="The holdout kept out of the search, if any")
    warnings: list[ModelWarning] = Field(default_factory=list)
    estimator: str | None = Field(
        default=None, description="The allow-listed estimator best_params belong to (estimator='auto': the winner)")
    families: list[FamilyResult] = Field(
        default_factory=list, description="estimator='auto': every family tried, its trials and best CV score")
    baseline_score: float | None = Field(
        default=None, description="A trivial model (prior class / mean) cross-validated on the same folds and scoring")
    ensemble: EnsembleResult | None = Field(
        default=None, description="estimator='auto': the weighted ensemble of the best trials, when it beat the best "
        "single trial on the same folds (run_pipeline(from_search=...) then trains it)")

    @property
    def flagged(self) -> bool:
        """True when any warning says the best score should not be trusted as it stands."""
        return bool(self.warnings)

    def top(self, n: int) -> list[TrialRecord]:
        """The n best COMPLETE trials, best first (halving: trials on a larger resource first)."""
        sign = self.summary.direction.sign
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and _finite(t.score)]
        return sorted(complete, key=lambda t: (-resource_rank(t), -sign * t.score, t.number))[:n]

    def to_seed_dict(self) -> dict[str, Any]:
        """The seed's result form: ``{"params", "score", ...}``."""
        best = self.best_trial
        return {
            "params": dict(self.best_params or {}),
            "score": self.best_score,
            "std": best.std if best else None,
            "fold_scores": list(best.fold_scores) if best else [],
            "trial": best.number if best else None,
            "seed": self.seed,
            "parent_run_id": self.parent_run_id,
            "summary": self.summary.model_dump(mode="json"),
            "warnings": [w.model_dump() for w in self.warnings],
        }


def resource_rank(trial: TrialRecord) -> float:
    """Successive halving compares scores only at the same resource: a trial on more rows / trees
    outranks any trial on fewer. Trials of other strategies ran on the full resource."""
    return math.inf if trial.resource is None else float(trial.resource)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
