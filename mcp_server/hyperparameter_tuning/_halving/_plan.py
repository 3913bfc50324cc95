"""Choosing the resource for an estimator and the rung schedule for the data, or saying why not."""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning._halving._evaluator import HalvingEvaluator, nested_order
from mcp_server.hyperparameter_tuning._halving._schedule import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_ROWS,
    DEFAULT_MIN_TREES,
    FALLBACK_FACTOR,
    MIN_ROWS_PER_CLASS,
    PERCENT,
    ROWS,
    HalvingOptions,
    HalvingSchedule,
    candidates_kind,
)
from mcp_server.hyperparameter_tuning._space import DEFAULT_MAX_GRID_SIZE, SearchSpace, to_native

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


def _check_two_rungs(min_resource: int, factor: float, max_resource: int, message: str) -> None:
    if min_resource * factor > max_resource:
        raise InvalidRequestError(message)


def _resolving(evaluator: Any, estimator: Any, param: str) -> Any:
    """A copy of the evaluator that also resolves ``param`` (the resource) to the estimator's name for it."""
    from mcp_server.hyperparameter_tuning._cv import resolve_param_names

    evaluator = copy.copy(evaluator)
    evaluator.param_names = {**evaluator.param_names, **resolve_param_names(estimator, [param])}
    return evaluator


def check_grid_candidates(options: HalvingOptions, space: SearchSpace, *, max_grid_size: int) -> None:
    """Halving over grid candidates runs every grid point on the first rung: the grid obeys max_grid_size."""
    if candidates_kind(options.candidates, space) == "grid":
        space.check_grid(max_grid_size, used_by="strategy='halving' over grid candidates")


@dataclass
class HalvingPlan:
    schedule: HalvingSchedule
    evaluator: HalvingEvaluator

    def parent_param(self) -> str:
        return json.dumps(self.schedule.to_json(), sort_keys=True)


def plan_halving(
    options: HalvingOptions, evaluator: Any, space: SearchSpace, *, seed: int, max_trials: int | None,
    repeat: bool, classification: bool, max_grid_size: int = DEFAULT_MAX_GRID_SIZE,
) -> HalvingPlan:
    """Choose the resource and rung schedule for this estimator and data, or say why halving cannot run."""
    check_grid_candidates(options, space, max_grid_size=max_grid_size)
    plan = functools.partial(_plan, evaluator=evaluator, space=space, seed=seed, max_trials=max_trials,
                             repeat=repeat, classification=classification)
    if options.factor is not None:
        return plan(options)
    # No factor named: 5 (faster to the best on the seed grid), unless 5 would change the resource
    # or leave fewer than two rungs; then 3, so small data and short forests still halve.
    estimator = getattr(evaluator, "estimator", None)
    same_resource = len({choose_resource(estimator, space, options.resource, factor=factor,
                                         min_resource=options.min_resource)
                         for factor in (DEFAULT_FACTOR, FALLBACK_FACTOR)}) == 1
    if same_resource:
        try:
            return plan(replace(options, factor=DEFAULT_FACTOR))
        except InvalidRequestError:
            pass
    return plan(replace(options, factor=FALLBACK_FACTOR))


def _plan(options: HalvingOptions, *, evaluator: Any, space: SearchSpace, seed: int, max_trials: int | None,
          repeat: bool, classification: bool) -> HalvingPlan:
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
        _check_two_rungs(
            min_resource, options.factor, max_resource,
            f"halving over a share of {param} needs its smallest value >= {math.ceil(2 * options.factor)}, "
            f"got {min(values)}; use resource='n_samples' or grid or random search",
        )
        evaluator = _resolving(evaluator, estimator, param)
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
        _check_two_rungs(
            min_resource, options.factor, max_resource,
            f"halving over {resource} needs {resource} >= factor × min_resource = "
            f"{math.ceil(options.factor * min_resource)}, got {max_resource}; raise {resource} or lower min_resource",
        )
        evaluator = _resolving(evaluator, estimator, resource)
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
