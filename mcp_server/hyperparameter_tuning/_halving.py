"""Successive halving: evaluate many candidates on a small resource, keep the best 1/factor, give
them factor times more, until the survivors run on the full resource (scikit-learn's
``HalvingGridSearchCV`` / ``HalvingRandomSearchCV``, one bracket of Hyperband).

Three parts, each behind an existing seam:

* ``HalvingStrategy`` (ask / tell, never fits): hands out one rung's candidates at a time and
  promotes the top ``ceil(n / factor)`` once the rung's scores are in. Grid candidates make one
  bracket; random candidates start a new bracket (a fresh seeded sample) when one ends, as long as a
  budget (``max_trials`` / ``timeout``) is set. ``fidelity(params)`` tells the loop the rung and
  resource of a candidate it was handed.
* ``HalvingEvaluator``: the fold evaluator ``at(resource)``: training rows subsampled *inside*
  each fold's training part (stratified and nested: a rung's rows contain the previous rung's),
  never the validation part; or the estimator's ``n_estimators`` / ``max_iter`` set to the resource.
* ``plan_halving``: picks the resource for the estimator (trees for forests, iterations for
  boosting, training rows otherwise), the rung schedule, and refuses a data set too small for it.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning._space import CategoricalDimension, SearchSpace, to_native

ROWS = "n_samples"
PERCENT = "_percent"  # resource = this share of each candidate's own (searched) trees / iterations
DEFAULT_FACTOR = 3
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
        resource (default 3).
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

    factor: float = DEFAULT_FACTOR
    min_resource: int | None = None
    resource: str = "auto"
    candidates: str = "auto"
    n_candidates: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.factor, numbers.Real) or isinstance(self.factor, bool) or not 1 < self.factor <= 10:
            raise InvalidRequestError(f"halving factor must be a number > 1 and <= 10, got {self.factor!r}")
        for name in ("min_resource", "n_candidates"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
                raise InvalidRequestError(f"halving {name} must be an integer >= 1, got {value!r}")
        if self.candidates not in CANDIDATES:
            raise InvalidRequestError(f"halving candidates must be one of {', '.join(CANDIDATES)}, got {self.candidates!r}")
        if not isinstance(self.resource, str) or not self.resource:
            raise InvalidRequestError(f"halving resource must be 'auto', 'n_samples' or a parameter name, got {self.resource!r}")


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


def _key(params: Mapping[str, Any]) -> tuple:
    from mcp_server.hyperparameter_tuning._strategies import params_key

    return params_key(params)


class HalvingStrategy:
    """Successive halving over grid or seeded random candidates, one rung at a time (ask / tell)."""

    name = "halving"
    proposes_ahead = False  # a rung's candidates depend on the previous rung's scores

    def __init__(self, space: SearchSpace, *, schedule: HalvingSchedule, seed: int, max_grid_size: int) -> None:
        self._space = space
        self._schedule = schedule
        self._seed = seed
        kind = schedule.candidates
        if kind == "auto":
            kind = "grid" if all(isinstance(d, CategoricalDimension) for d in space) else "random"
        self.candidates_kind = kind
        self._grid: list[dict[str, Any]] | None = None
        if kind == "grid":
            from sklearn.model_selection import ParameterGrid

            self._grid = [{k: to_native(v) for k, v in p.items()}
                          for p in ParameterGrid(space.to_param_grid(max_grid_size=max_grid_size))]
        self.max_resource = schedule.max_resource
        self._bracket = -1
        self._restored: dict[tuple, float | None] = {}
        self._observed: dict[int, list[tuple[dict[str, Any], float | None]]] = {}  # resource -> (params, score)
        self._pending: dict[tuple, Fidelity] = {}
        self._done = False
        self._start_bracket()

    # --- brackets and rungs --------------------------------------------------------------------
    def _bracket_candidates(self, bracket: int) -> list[dict[str, Any]]:
        if self._grid is not None:
            return [dict(c) for c in self._grid] if bracket == 0 else []
        from sklearn.model_selection import ParameterSampler

        n = self._schedule.n_candidates
        proposed = self._model_candidates(int(n * MODEL_SHARE)) if self.candidates_kind == "bayesian" else []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a small finite space is sampled exhaustively
            sampled = ParameterSampler(self._space.to_sampler_distributions(), n_iter=n - len(proposed),
                                       random_state=(self._seed + 7919 * bracket) % 2**32)
            return proposed + [{k: to_native(v) for k, v in p.items()} for p in sampled]

    def _model_candidates(self, n: int) -> list[dict[str, Any]]:
        """n points from a GP fitted on the highest rung with enough scores (BOHB's rule), or none."""
        names = self._space.names
        for resource in sorted(self._observed, reverse=True):
            points = [(p, s) for p, s in self._observed[resource] if s is not None]
            if len(points) >= len(names) + 2:
                break
        else:
            return []
        from skopt import Optimizer

        optimizer = Optimizer(self._space.to_skopt_dimensions(), base_estimator="GP", n_initial_points=1,
                              acq_func="EI", acq_optimizer="sampling", random_state=self._seed + self._bracket,
                              acq_optimizer_kwargs={"n_points": 2000})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer.tell([[p[k] for k in names] for p, _ in points], [-s for _, s in points])
            xs = optimizer.ask(n_points=n) if n > 1 else [optimizer.ask()] if n == 1 else []
        seen: set[tuple] = set()
        out = []
        for x in xs:
            params = {k: to_native(v) for k, v in zip(names, x)}
            if _key(params) not in seen:
                seen.add(_key(params))
                out.append(params)
        return out

    def _start_bracket(self) -> bool:
        self._bracket += 1
        candidates = self._bracket_candidates(self._bracket)
        if not candidates or (self._bracket > 0 and not self._schedule.repeat):
            self._done = True
            return False
        self._resources = self._schedule.rungs(len(candidates))
        self._rung = 0
        self._set_rung(candidates)
        return True

    def _set_rung(self, candidates: list[dict[str, Any]]) -> None:
        self._rung_candidates = candidates
        self._next = 0
        self._scores: dict[tuple, float | None] = {}

    def _fidelity(self) -> Fidelity:
        return Fidelity(self._bracket, self._rung, len(self._resources), self._resources[self._rung],
                        self._schedule.resource_name)

    def _advance(self) -> bool:
        """The rung is complete: promote its best candidates, or start the next bracket."""
        self._observed.setdefault(self._resources[self._rung], []).extend(  # what the GP may learn from
            (c, self._scores.get(_key(c))) for c in self._rung_candidates)
        if self._rung < len(self._resources) - 1:
            ranked = sorted(
                (i for i, c in enumerate(self._rung_candidates) if self._scores.get(_key(c)) is not None),
                key=lambda i: -self._scores[_key(self._rung_candidates[i])],  # stable: ties keep candidate order
            )
            keep = math.ceil(len(self._rung_candidates) / self._schedule.factor)
            survivors = [self._rung_candidates[i] for i in ranked[:keep]]
            if survivors:
                self._rung += 1
                self._set_rung(survivors)
                return True
        return self._start_bracket()

    # --- ask / tell ------------------------------------------------------------------------------
    def ask(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n and not self._done:
            if self._next < len(self._rung_candidates):
                candidate = self._rung_candidates[self._next]
                self._next += 1
                key = _key(candidate)
                restored = (self._bracket, self._rung, key)
                if restored in self._restored:  # resumed: its score is known
                    self._scores[key] = self._restored.pop(restored)
                    continue
                self._pending[key] = self._fidelity()
                out.append(dict(candidate))
                continue
            if out or self._pending:
                break  # the next rung needs this rung's scores
            self._advance()
        return out

    def fidelity(self, params: Mapping[str, Any]) -> Fidelity | None:
        return self._pending.get(_key(params))

    def tell(self, params: Mapping[str, Any], score: float | None) -> None:
        key = _key(params)
        if self._pending.pop(key, None) is not None:
            self._scores[key] = score

    def restore(self, fidelity: Fidelity | None, params: Mapping[str, Any], score: float | None) -> None:
        """A trial read back on resume: skipped (with its score) when its rung comes up."""
        if fidelity is not None:
            self._restored[(fidelity.bracket, fidelity.rung, _key(params))] = score


# --- evaluation at a resource ----------------------------------------------------------------------


class _WithParam:
    """An evaluator whose estimator has one parameter fixed (n_estimators / max_iter = the resource)."""

    def __init__(self, base: Any, name: str, value: int) -> None:
        self.base, self.name, self.value = base, name, value

    @property
    def n_folds(self) -> int:
        return self.base.n_folds

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        return self.base.evaluate_fold({**params, self.name: self.value}, fold)


class _ScaledParam:
    """An evaluator that runs each candidate with ``percent`` % of its own (searched) trees / iterations."""

    def __init__(self, base: Any, name: str, percent: int) -> None:
        self.base, self.name, self.percent = base, name, percent

    @property
    def n_folds(self) -> int:
        return self.base.n_folds

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        scaled = max(1, int(round(params[self.name] * self.percent / 100)))
        return self.base.evaluate_fold({**params, self.name: scaled}, fold)


def nested_order(train_idx: np.ndarray, y: Any, *, classification: bool, seed: int) -> np.ndarray:
    """A seeded order of a fold's training rows whose every prefix keeps the class proportions
    (classification), so rung k's rows are a stratified subset of rung k+1's."""
    rng = np.random.default_rng(seed)
    if not classification:
        return train_idx[rng.permutation(len(train_idx))]
    labels = np.asarray(y)[train_idx]
    keys = np.empty(len(train_idx))
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(where))
        keys[where] = (ranks + rng.random(len(where))) / len(where)  # evenly spread over [0, 1)
    return train_idx[np.argsort(keys, kind="stable")]


@dataclass
class HalvingEvaluator:
    """The fold evaluator of a search, evaluated at a rung's resource (``at``)."""

    base: Any
    resource_name: str
    max_resource: int
    orders: list[np.ndarray] = field(default_factory=list)  # rows: each fold's nested training order
    _views: dict[int, Any] = field(default_factory=dict)

    @property
    def n_folds(self) -> int:
        return self.base.n_folds

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        return self.base.evaluate_fold(params, fold)

    def at(self, resource: int) -> Any:
        if resource >= self.max_resource:
            return self.base
        if resource not in self._views:
            if self.resource_name == ROWS:
                view = copy.copy(self.base)
                view.splits = [(np.sort(order[:resource]), val) for order, (_, val) in zip(self.orders, self.base.splits)]
            elif self.resource_name.endswith(PERCENT):
                view = _ScaledParam(self.base, self.resource_name[: -len(PERCENT)], resource)
            else:
                view = _WithParam(self.base, self.resource_name, resource)
            self._views[resource] = view
        return self._views[resource]


# --- planning ----------------------------------------------------------------------------------------

_FORESTS = ("Forest", "ExtraTrees", "Bagging")
_BOOSTING_ITER = ("HistGradientBoosting",)
_BOOSTING_N = ("GradientBoosting", "AdaBoost", "XGB", "LGBM")


def _final_estimator(estimator: Any) -> Any:
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def choose_resource(estimator: Any, space: SearchSpace, requested: str = "auto", *,
                    factor: float = DEFAULT_FACTOR, min_resource: int | None = None) -> str:
    """Trees for forests, iterations for boosting, else training rows; never a searched parameter."""
    if requested != "auto":
        return requested
    if estimator is None:
        return ROWS
    final = _final_estimator(estimator)
    params = final.get_params() if hasattr(final, "get_params") else {}
    name = type(final).__name__
    if any(tag in name for tag in _BOOSTING_ITER) and "max_iter" in params:
        candidate = "max_iter"
    elif any(tag in name for tag in _FORESTS + _BOOSTING_N) and "n_estimators" in params:
        candidate = "n_estimators"
    else:
        return ROWS
    if candidate in space.names:
        # Searched: each candidate runs on a share of its own trees / iterations (fitting a forest on
        # fewer rows saves little: sklearn's per-tree overhead dominates, 0.34 s vs 0.48 s for 200
        # trees on 40 vs 1,072 rows). Too few trees for two rungs: the rows are the resource.
        dim = space[candidate]
        values = dim.values() if dim.size is not None else []
        if not values or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
            return ROWS
        return candidate + PERCENT if (min_resource or _min_percent(values)) * factor <= 100 else ROWS
    value = params.get(candidate)
    if not isinstance(value, numbers.Integral) or value < factor * (min_resource or DEFAULT_MIN_TREES):
        return ROWS  # unset, or too few trees / iterations for two rungs: the rows are the resource
    return candidate


def _min_percent(values: list[int]) -> int:
    """Default first rung for a searched n_estimators / max_iter: every candidate keeps >= 2."""
    return min(100, math.ceil(200 / min(values)))


@dataclass
class HalvingPlan:
    schedule: HalvingSchedule
    evaluator: HalvingEvaluator

    def parent_param(self) -> str:
        return json.dumps(self.schedule.to_json(), sort_keys=True)


def plan_halving(
    options: HalvingOptions, evaluator: Any, space: SearchSpace, *, seed: int, max_trials: int | None,
    repeat: bool, classification: bool,
) -> HalvingPlan:
    """Choose the resource and rung schedule for this estimator and data, or say why halving cannot run."""
    from mcp_server.hyperparameter_tuning._cv import resolve_param_names

    splits = getattr(evaluator, "splits", None)
    if not splits or evaluator.n_folds < 2:
        raise InvalidRequestError("halving compares candidates by cross-validation and needs cv_folds >= 2")
    estimator = getattr(evaluator, "estimator", None)
    resource = choose_resource(estimator, space, options.resource, factor=options.factor,
                               min_resource=options.min_resource)
    orders: list[np.ndarray] = []
    if resource == ROWS:
        max_resource = max(len(train) for train, _ in splits)
        smallest = min(len(train) for train, _ in splits)
        y = evaluator.y
        classes: dict[Any, int] = {}
        if classification:
            labels, counts = np.unique(np.asarray(y)[splits[0][0]], return_counts=True)
            classes = {to_native(label): int(count) for label, count in zip(labels, counts)}
        default_min = max(DEFAULT_MIN_ROWS, MIN_ROWS_PER_CLASS * len(classes))
        if classes:  # the rarest class must have >= 2 rows in the first rung's stratified subsample
            rarest = min(classes.values()) / sum(classes.values())
            default_min = max(default_min, math.ceil(2 / rarest))
        min_resource = options.min_resource or default_min
        if classes:
            rarest_label = min(classes, key=classes.get)
            share = classes[rarest_label] / sum(classes.values())
            if min_resource * share < 2 - 1e-9:
                raise InvalidRequestError(
                    f"halving: the first rung trains on {min_resource} rows per fold, where class "
                    f"{rarest_label!r} ({share:.1%} of rows) would have fewer than 2 rows; give min_resource >= "
                    f"{math.ceil(2 / share)} or use grid or random search"
                )
        orders = [nested_order(train, y, classification=bool(classes), seed=seed + fold)
                  for fold, (train, _) in enumerate(splits)]
        if min_resource * options.factor > smallest:
            raise InvalidRequestError(
                f"the data set is too small for halving: each fold trains on {smallest} rows, and two rungs need "
                f"at least factor × min_resource = {options.factor:g} × {min_resource} = "
                f"{math.ceil(options.factor * min_resource)} rows; lower min_resource or factor, or use grid or "
                "random search"
            )
    elif resource.endswith(PERCENT):
        param = resource[: -len(PERCENT)]
        dim = space[param] if param in space.names else None
        values = dim.values() if dim is not None and dim.size is not None else None
        if not values or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
            raise InvalidRequestError(f"halving resource {resource!r} needs {param!r} searched over integers >= 1")
        max_resource = 100
        # Every candidate keeps at least 2 trees / iterations on the first rung.
        min_resource = options.min_resource or _min_percent(values)
        if min_resource * options.factor > max_resource:
            raise InvalidRequestError(
                f"halving over a share of {param} needs its smallest value >= {math.ceil(2 * options.factor)}, "
                f"got {min(values)}; use resource='n_samples' or grid or random search"
            )
        evaluator = copy.copy(evaluator)
        evaluator.param_names = {**evaluator.param_names, **resolve_param_names(estimator, [param])}
    else:
        final = _final_estimator(estimator)
        max_resource = int(final.get_params()[resource]) if resource in final.get_params() else None
        if max_resource is None:
            raise InvalidRequestError(
                f"halving resource {resource!r} is not an integer parameter of {type(final).__name__}; "
                "use 'auto', 'n_samples' or one of its integer parameters"
            )
        if resource in space.names:
            raise InvalidRequestError(f"halving resource {resource!r} is also a searched parameter; drop it from the space")
        min_resource = options.min_resource or DEFAULT_MIN_TREES
        if min_resource * options.factor > max_resource:
            raise InvalidRequestError(
                f"halving over {resource} needs {resource} >= factor × min_resource = "
                f"{math.ceil(options.factor * min_resource)}, got {max_resource}; raise {resource} or lower min_resource"
            )
        evaluator = copy.copy(evaluator)
        evaluator.param_names = {**evaluator.param_names, **resolve_param_names(estimator, [resource])}
    schedule = HalvingSchedule(max_resource=max_resource, min_resource=min_resource, factor=options.factor,
                               resource_name=resource, candidates=options.candidates, repeat=repeat)
    if options.n_candidates is not None:
        schedule.n_candidates = options.n_candidates
    elif max_trials is not None:  # the largest bracket that fits the trial budget
        n = max(2, int(options.factor))
        while schedule.bracket_trials(n + 1) <= max_trials:
            n += 1
        schedule.n_candidates = n
    return HalvingPlan(schedule, HalvingEvaluator(evaluator, resource, max_resource, orders))
