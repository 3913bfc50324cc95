"""``estimator="auto"``: one search across model families, through the one loop.

A portfolio is a search space whose top dimension is a categorical ``estimator`` (the families of
``estimators.portfolio(task)``) and whose sub-space depends on it (each family's own default
space). scikit-optimize and the grid / random samplers know no conditional dimensions, so the
conditional part lives in a strategy: ``PortfolioStrategy`` proposes ``{"estimator": family,
**params}`` behind the same ask / tell as every other strategy, and ``PortfolioEvaluator``
cross-validates each candidate with its family's pipeline. The loop, the executors, pruning,
budgets and the MLflow layout are the ones every search uses; every trial is a child run whose
``estimator`` param names its family.

Which family goes next (FLAML's estimated cost for improvement, ``flaml/automl``, written anew):

* every family starts at its cheap configuration (``EstimatorSpec.low_cost_params``), cheapest
  family first (``EstimatorSpec.relative_cost``); a family with a strong preset
  (``EstimatorSpec.strong_params``) tries it as its second point;
* then each family's ECI (seconds) is ``max(time since its best was found, time the last
  improvement took, its mean trial cost)``; a family behind the overall best also needs
  ``2 * gap / (its last gain per second)`` (twice its spent time while it has never improved); the
  next family is drawn with probability proportional to ``1 / ECI`` (seeded), so cheap, improving
  families get the trials and a stalled leader lets the others catch up;
* within a family the existing Bayesian searcher (or the random one) proposes, and learns the
  cheap start as its first point.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning._space import SearchSpace, to_native
from mcp_server.hyperparameter_tuning._types import FamilyResult, TrialState

logger = logging.getLogger(__name__)

AUTO = "auto"
FAMILY_KEY = "estimator"  # the categorical dimension: the family's registry name
SEARCHERS = ("bayesian", "random")
# Points of a family's Bayesian searcher drawn at random before its GP proposes (the cheap start is
# one more): a 60 s budget gives a family 5-30 trials, so the GP must start early.
FAMILY_INITIAL_POINTS = 4
# Candidates of a family's random searcher (the loop's budget ends the search long before).
FAMILY_RANDOM_CANDIDATES = 500


@dataclass(frozen=True)
class Family:
    """One family of the portfolio: its registry name, space, cheap start and relative cost."""

    name: str
    space: SearchSpace
    start: dict[str, Any]
    relative_cost: float = 1.0
    strong: dict[str, Any] = field(default_factory=dict)  # the second point, when the family has one

    @property
    def starts(self) -> list[dict[str, Any]]:
        return [self.start, self.strong] if self.strong else [self.start]

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space.to_json(), "start": self.start, "strong": self.strong,
                "relative_cost": self.relative_cost}


@dataclass(frozen=True)
class Portfolio:
    """The families of an ``estimator="auto"`` search and the searcher used within each."""

    families: tuple[Family, ...]
    searcher: str = "bayesian"

    def __post_init__(self) -> None:
        if not self.families:
            raise InvalidRequestError("a portfolio needs at least one family")
        if self.searcher not in SEARCHERS:
            raise InvalidRequestError(
                f"estimator='auto' searches within each family with {' or '.join(SEARCHERS)} search, "
                f"got strategy={self.searcher!r}; name an estimator for grid or halving")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def space(self) -> SearchSpace:
        """The top dimension (the family); the sub-spaces are the families' own."""
        return SearchSpace({FAMILY_KEY: {"type": "categorical", "choices": self.names}})

    def to_json_string(self) -> str:
        return json.dumps({"searcher": self.searcher, "families": {f.name: f.to_json() for f in self.families}},
                          sort_keys=True, default=str)

    def strategy(self, *, seed: int, deadline: float | None = None) -> PortfolioStrategy:
        return PortfolioStrategy(self, seed=seed, deadline=deadline)


def check_auto(*, space: Any, strategy: str | None, resume_from: str | None) -> None:
    """What estimator='auto' cannot take: one space (each family searches its own), grid or halving
    (families are chosen by their scores so far), a resume."""
    if space is not None:
        raise InvalidRequestError("space needs a named estimator: estimator='auto' searches each family's own space")
    if strategy is not None and strategy not in SEARCHERS:
        raise InvalidRequestError(
            f"estimator='auto' searches within each family with {' or '.join(SEARCHERS)} search, got "
            f"strategy={strategy!r}; name an estimator for {strategy}")
    if resume_from is not None:
        raise InvalidRequestError("resume_from needs a named estimator: a search with estimator='auto' cannot be resumed")


def plan_portfolio(task: str, *, searcher: str = "bayesian") -> Portfolio:
    """The registry's portfolio for ``task`` (cheapest family first); families whose library
    cannot be imported are left out with a warning."""
    from mcp_server import estimators as registry

    families = []
    for spec in registry.portfolio(task):
        try:
            spec.estimator_class(task)
        except ImportError as exc:
            logger.warning("estimator family %s is left out of the portfolio: %s", spec.name, exc)
            continue
        families.append(Family(spec.name, SearchSpace(spec.search_space), dict(spec.low_cost_params),
                               spec.relative_cost, dict(spec.strong_params)))
    return Portfolio(tuple(families), searcher=searcher)


def split_family(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``{"estimator": f, **p}`` -> ``(f, p)``."""
    rest = {k: v for k, v in params.items() if k != FAMILY_KEY}
    return params[FAMILY_KEY], rest


class PortfolioEvaluator:
    """Cross-validates a ``{"estimator": family, **params}`` candidate with its family's evaluator
    (an ``EstimatorEvaluator`` each, sharing the rows and folds), so fits run exactly as in a
    single-family search."""

    def __init__(self, evaluators: Mapping[str, Any]) -> None:
        self.evaluators = dict(evaluators)
        first = next(iter(self.evaluators.values()))
        self.X, self.y, self.splits = first.X, first.y, first.splits

    @property
    def n_folds(self) -> int:
        return len(self.splits)

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        family, rest = split_family(params)
        return self.evaluators[family].evaluate_fold(rest, fold)


@dataclass
class _FamilyState:
    asked: int = 0
    told: int = 0
    spent: float = 0.0  # seconds of its trials
    best: float | None = None  # signed, higher is better
    found_at: float = 0.0  # its spent time when the best was found
    gain: float | None = None  # the last improvement of its best (None: never improved on a first score)
    gain_seconds: float = 0.0  # the time that improvement took
    exhausted: bool = False
    pending: dict[tuple, float] = field(default_factory=dict)  # asked, not told: key -> ask time


class PortfolioStrategy:
    """Proposes ``{"estimator": family, **params}``: cheap starts first, then the family with the
    lowest estimated cost for improvement (drawn with probability 1/ECI), the family's own
    searcher proposing its params."""

    name = "portfolio"

    def __init__(self, portfolio: Portfolio, *, seed: int, deadline: float | None = None) -> None:
        from mcp_server.hyperparameter_tuning._choose import make_strategy

        self.portfolio = portfolio
        self._families = {f.name: f for f in portfolio.families}
        self._searchers = {}
        for index, f in enumerate(portfolio.families):
            n = 2 * FAMILY_INITIAL_POINTS if portfolio.searcher == "bayesian" else FAMILY_RANDOM_CANDIDATES
            self._searchers[f.name], _ = make_strategy(portfolio.searcher, f.space, n_candidates=n,
                                                       seed=(seed + index) % 2**32, max_grid_size=1)
        self._state = {f.name: _FamilyState() for f in portfolio.families}
        self._rng = np.random.default_rng(seed)
        self._deadline = deadline  # time.monotonic(): families that cannot finish a trial by then wait
        self._costs: dict[tuple, float] = {}  # key -> seconds, given by the loop before tell

    # --- ask / tell ---------------------------------------------------------------------------
    def ask(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            family = self._choose()
            if family is None:
                break
            params = self._next_params(family)
            if params is None:
                self._state[family].exhausted = True
                continue
            candidate = {FAMILY_KEY: family, **{k: to_native(v) for k, v in params.items()}}
            state = self._state[family]
            state.asked += 1
            state.pending[_key(candidate)] = time.monotonic()
            out.append(candidate)
        return out

    def tell_cost(self, params: Mapping[str, Any], seconds: float) -> None:
        """The trial's measured duration (the loop gives it before ``tell``)."""
        self._costs[_key(params)] = float(seconds)

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        family, rest = split_family(params)
        if family not in self._state:
            return
        self._searchers[family].tell(rest, score)
        state, key = self._state[family], _key(params)
        asked_at = state.pending.pop(key, None)
        cost = self._costs.pop(key, None)
        if cost is None:
            cost = time.monotonic() - asked_at if asked_at is not None else 0.0
        state.told += 1
        state.asked = max(state.asked, state.told)
        state.spent += cost
        if score is None:
            return
        if state.best is None or score > state.best:
            if state.best is not None:
                state.gain, state.gain_seconds = score - state.best, state.spent - state.found_at
            state.best, state.found_at = score, state.spent

    # --- choice of the family -----------------------------------------------------------------
    def _next_params(self, family: str) -> dict[str, Any] | None:
        state = self._state[family]
        starts = self._families[family].starts
        if state.asked < len(starts):
            return dict(starts[state.asked])
        asked = self._searchers[family].ask(1)
        return asked[0] if asked else None

    def _unit_cost(self) -> float | None:
        """Seconds per unit of relative cost, from the families measured so far."""
        measured = [(s.spent / s.told) / self._families[name].relative_cost
                    for name, s in self._state.items() if s.told and s.spent > 0]
        return float(np.median(measured)) if measured else None

    def _expected_cost(self, name: str) -> float | None:
        state = self._state[name]
        if state.told and state.spent > 0:
            return state.spent / state.told
        unit = self._unit_cost()
        return None if unit is None else unit * self._families[name].relative_cost

    def _fitting(self, names: list[str]) -> list[str]:
        """Those whose next trial should end before the deadline (a family not measured yet fits)."""
        if self._deadline is None:
            return names
        left = self._deadline - time.monotonic()
        return [n for n in names if (self._expected_cost(n) or 0.0) <= left]

    def _choose(self) -> str | None:
        open_families = [name for name, s in self._state.items() if not s.exhausted]
        if not open_families:
            return None
        tried = [name for name in open_families if self._state[name].told]
        untried = [name for name in open_families if self._state[name].asked == 0]
        fitting = self._fitting(untried)
        if fitting or (untried and not tried):  # cheap starts first, cheapest family first
            return (fitting or untried)[0]
        if not tried:  # every open family has a trial in flight (a batch): spread the batch
            return min(open_families, key=lambda name: (self._state[name].asked, self._families[name].relative_cost))
        candidates = self._fitting(tried)
        if not candidates:  # no trial fits in the time left: the one most likely to end in time
            return min(tried, key=lambda name: self._expected_cost(name) or 0.0)
        inverse = np.array([1.0 / self._eci(name) for name in candidates])
        return candidates[int(self._rng.choice(len(candidates), p=inverse / inverse.sum()))]

    def _eci(self, name: str) -> float:
        """Estimated seconds until this family improves the overall best (FLAML's ECI)."""
        state = self._state[name]
        mean_cost = state.spent / state.told if state.told else 0.0
        since_best = state.spent - state.found_at
        eci = max(since_best, state.gain_seconds, mean_cost, 1e-6)
        leader = max((s.best for s in self._state.values() if s.best is not None), default=None)
        if state.best is None:  # only failures so far
            return max(eci, 2 * state.spent, 1e-6)
        gap = leader - state.best if leader is not None else 0.0
        if gap > 0:
            if state.gain and state.gain_seconds > 0:
                eci = max(eci, 2 * gap / (state.gain / state.gain_seconds))
            else:
                eci = max(eci, 2 * state.spent)
        return eci


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def family_results(trials: list[Any], families: list[str], sign: float) -> list[FamilyResult]:
    """Per family: trials run, best CV score and its trial, seconds spent; in portfolio order."""
    out = []
    for name in families:
        own = [t for t in trials if t.params.get(FAMILY_KEY) == name]
        complete = [t for t in own if t.state is TrialState.COMPLETE and t.score is not None]
        best = max(complete, key=lambda t: sign * t.score, default=None)
        out.append(FamilyResult(name=name, n_trials=len(own), best_score=best.score if best else None,
                                best_trial=best.number if best else None,
                                seconds=round(sum(t.duration_seconds for t in own), 3)))
    return out
