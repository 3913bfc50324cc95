"""The fold evaluator at a rung's resource: rows subsampled inside each fold's training part
(stratified, nested), or the estimator's trees / iterations set (or scaled) to the resource."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcp_server.hyperparameter_tuning._halving._schedule import PERCENT, ROWS


class _ParamAtResource:
    """An evaluator whose estimator runs a candidate with one parameter (n_estimators / max_iter) set
    to the resource (``scaled=False``), or to ``resource`` % of the candidate's own searched value."""

    def __init__(self, base: Any, name: str, resource: int, *, scaled: bool) -> None:
        self.base, self.name, self.resource, self.scaled = base, name, resource, scaled

    @property
    def n_folds(self) -> int:
        return self.base.n_folds

    def evaluate_fold(self, params: dict[str, Any], fold: int) -> float:
        value = max(1, int(round(params[self.name] * self.resource / 100))) if self.scaled else self.resource
        return self.base.evaluate_fold({**params, self.name: value}, fold)


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
            else:
                scaled = self.resource_name.endswith(PERCENT)
                name = self.resource_name[: -len(PERCENT)] if scaled else self.resource_name
                view = _ParamAtResource(self.base, name, resource, scaled=scaled)
            self._views[resource] = view
        return self._views[resource]
