"""Halving's options, rung schedule and the fidelity (bracket, rung, resource) of a trial."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_server.error_handling import InvalidRequestError

ROWS = "n_samples"
PERCENT = "_percent"  # resource = this share of each candidate's own (searched) trees / iterations
# 5, not scikit-learn's 3: on the seed grid (27 candidates) factor 5 reached GridSearchCV's best
# on every seed in a median 0.24x its time, factor 3 in 0.45x (docs/benchmarks.md, section 9).
# Where 5 leaves fewer than two rungs (small data, short forests) the default falls back to 3.
DEFAULT_FACTOR = 5
FALLBACK_FACTOR = 3
# Smallest default rung: trees / boosting iterations, and training rows per fold (per class for
# classification). Measured on the seed grid: 40 rows per fold at the first rung still ranked
# max_depth=5 first on every seed (docs/tuning.md).
DEFAULT_MIN_TREES = 10
DEFAULT_MIN_ROWS = 20
MIN_ROWS_PER_CLASS = 10
DEFAULT_RANDOM_CANDIDATES = 27
CANDIDATES = ("auto", "grid", "random", "bayesian")
MODEL_SHARE = 0.5  # bayesian candidates: this share of a later bracket comes from the GP, the rest is random


@dataclass(frozen=True)
class HalvingOptions:
    """How successive halving runs.

    factor: each rung keeps the best 1/factor of its candidates and gives them factor times more
        resource (default None: 5, or 3 where 5 would leave fewer than two rungs or change the resource).
    min_resource: the first rung's resource floor (training rows per fold, trees or iterations);
        default: 10 trees / iterations, or max(20, 10 per class) rows.
    resource: "auto" (trees for forests, iterations for boosting, else training rows), "n_samples",
        or the name of an estimator parameter such as "n_estimators" / "max_iter".
    candidates: "grid", "random", "bayesian" or "auto" (grid when every dimension is a list of
        choices, else random). "bayesian" (as BOHB): from the second bracket on, half of a bracket's
        candidates are proposed by a Gaussian process fitted on the scores of the highest rung with
        enough trials, the other half are random.
    n_candidates: candidates in a random bracket (default: what fits max_trials, else 27).
    """

    factor: float | None = None
    min_resource: int | None = None
    resource: str = "auto"
    candidates: str = "auto"
    n_candidates: int | None = None

    def __post_init__(self) -> None:
        if self.factor is not None and (
                not isinstance(self.factor, numbers.Real) or isinstance(self.factor, bool) or not 1 < self.factor <= 10):
            raise InvalidRequestError(f"halving factor must be a number > 1 and <= 10, got {self.factor!r}")
        for name in ("min_resource", "n_candidates"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
                raise InvalidRequestError(f"halving {name} must be an integer >= 1, got {value!r}")
        if self.candidates not in CANDIDATES:
            raise InvalidRequestError(f"halving candidates must be one of {', '.join(CANDIDATES)}, got {self.candidates!r}")
        if not isinstance(self.resource, str) or not self.resource:
            raise InvalidRequestError(f"halving resource must be 'auto', 'n_samples' or a parameter name, got {self.resource!r}")


def candidates_kind(candidates: str, space: Any) -> str:
    """The candidates a bracket draws: "auto" is grid when every dimension is a list of choices, else random."""
    if candidates != "auto":
        return candidates
    from mcp_server.hyperparameter_tuning._space import CategoricalDimension

    return "grid" if all(isinstance(d, CategoricalDimension) for d in space) else "random"


def coerce_halving(value: HalvingOptions | Mapping[str, Any] | None) -> HalvingOptions:
    if value is None:
        return HalvingOptions()
    if isinstance(value, HalvingOptions):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"factor", "min_resource", "resource", "candidates", "n_candidates"}
        if unknown:
            raise InvalidRequestError(f"unknown halving option(s) {sorted(unknown)}; valid: factor, min_resource, "
                                      "resource, candidates, n_candidates")
        return HalvingOptions(**value)
    raise InvalidRequestError(f"halving must be a dict or HalvingOptions, got {value!r}")


def rung_resources(max_resource: int, min_resource: int, factor: float, n_candidates: int) -> list[int]:
    """The resource of every rung (last = max_resource), as scikit-learn's 'exhaust' schedule:
    as many rungs as both the resource range and the candidate count allow."""
    possible = 1
    while max_resource / factor ** possible >= min_resource - 1e-9:
        possible += 1
    required, n = 1, n_candidates
    while n > 1 and required < 64:
        n = math.ceil(n / factor)
        required += 1
    n_rungs = max(1, min(possible, required))
    return [max(min_resource, int(round(max_resource / factor ** (n_rungs - 1 - k)))) for k in range(n_rungs)]


def rung_sizes(n_candidates: int, factor: float, n_rungs: int) -> list[int]:
    sizes = [n_candidates]
    for _ in range(n_rungs - 1):
        sizes.append(max(1, math.ceil(sizes[-1] / factor)))
    return sizes


@dataclass(frozen=True)
class Fidelity:
    """Where a trial sits in successive halving (recorded on the trial and its MLflow run)."""

    bracket: int
    rung: int
    n_rungs: int
    resource: int
    resource_name: str

    @property
    def final(self) -> bool:
        return self.rung == self.n_rungs - 1

    def describe(self) -> str:
        if self.resource_name.endswith(PERCENT):
            what = f"{self.resource}% of {self.resource_name[: -len(PERCENT)]}"
        else:
            what = f"{self.resource} {'rows per fold' if self.resource_name == ROWS else self.resource_name}"
        return f"rung {self.rung + 1}/{self.n_rungs} ({what})"


@dataclass
class HalvingSchedule:
    """Resource range of one search; the strategy derives each bracket's rungs from it."""

    max_resource: int
    min_resource: int
    factor: float = DEFAULT_FACTOR
    resource_name: str = ROWS
    n_candidates: int = DEFAULT_RANDOM_CANDIDATES  # random brackets
    candidates: str = "auto"
    repeat: bool = False  # random: start a new bracket when one ends

    def rungs(self, n_candidates: int) -> list[int]:
        return rung_resources(self.max_resource, self.min_resource, self.factor, n_candidates)

    def bracket_trials(self, n_candidates: int) -> int:
        return sum(rung_sizes(n_candidates, self.factor, len(self.rungs(n_candidates))))

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resource_name, "factor": self.factor, "min_resource": self.min_resource,
                "max_resource": self.max_resource, "candidates": self.candidates,
                "n_candidates": self.n_candidates, "repeat_brackets": self.repeat}


def default_schedule() -> HalvingSchedule:
    """An abstract budget (1..81) for a strategy used on its own (no estimator to plan against)."""
    return HalvingSchedule(max_resource=81, min_resource=1, resource_name="budget")
