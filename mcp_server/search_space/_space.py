"""Typed search spaces: int / float (optional log scale) / categorical, plus opaque scipy distributions.

A space is built from the typed JSON form the MCP tools send
(``{"type": "int"|"float"|"categorical", "low", "high", "log", "choices"}``) or from the seed's forms
(lists; ``(low, high)``; ``(low, high, "log-uniform")``; scipy distributions for random search). It is
validated on construction, iterated in sorted name order, and converts itself for each strategy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.search_space._dimensions import (
    CategoricalDimension,
    Dimension,
    DistributionDimension,
    FloatDimension,
    IntDimension,
    parse_dimension,
    to_native,
)

__all__ = [
    "CategoricalDimension",
    "Dimension",
    "DistributionDimension",
    "FloatDimension",
    "IntDimension",
    "SearchSpace",
    "parse_dimension",
    "to_native",
]

DEFAULT_MAX_GRID_SIZE = 2000


class SearchSpace:
    """Validated dimensions, sorted by name."""

    def __init__(self, spec: Mapping[str, Any] | SearchSpace) -> None:
        if isinstance(spec, SearchSpace):
            self.dimensions: tuple[Dimension, ...] = spec.dimensions
            return
        if not isinstance(spec, Mapping) or not spec:
            raise InvalidRequestError(
                f"search space must be a non-empty mapping of parameter name to values, got {spec!r}"
            )
        self.dimensions = tuple(parse_dimension(name, spec[name]) for name in sorted(spec, key=str))

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def __getitem__(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    @property
    def is_finite(self) -> bool:
        return all(d.size is not None for d in self.dimensions)

    @property
    def size(self) -> int | None:
        """Number of distinct points, or None if some dimension is continuous."""
        if not self.is_finite:
            return None
        return math.prod(d.size for d in self.dimensions)

    def contains(self, params: Mapping[str, Any]) -> bool:
        return set(params) == set(self.names) and all(d.contains(params[d.name]) for d in self.dimensions)

    def parse_params(self, text_params: Mapping[str, str]) -> dict[str, Any]:
        """Params as MLflow stored them (strings) -> typed values."""
        return {d.name: d.parse(text_params[d.name]) for d in self.dimensions}

    def to_json(self) -> dict[str, Any]:
        return {d.name: d.to_json() for d in self.dimensions}

    def to_json_string(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    # --- conversions for the strategies --------------------------------------------------
    def check_grid(self, max_grid_size: int, *, used_by: str) -> None:
        """Refuse a space that cannot be run as a grid of at most ``max_grid_size`` points; the
        message says which search needs the grid (``used_by``)."""
        try:
            self.to_param_grid(max_grid_size=max_grid_size)
        except ResourceLimitError as exc:
            raise ResourceLimitError(f"space is too large for {used_by}: {exc}") from None
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"space does not suit {used_by}: {exc}") from None

    def to_param_grid(self, *, max_grid_size: int = DEFAULT_MAX_GRID_SIZE) -> dict[str, list[Any]]:
        for dim in self.dimensions:
            if dim.size is None:
                raise InvalidRequestError(
                    f"grid search needs a finite set of values for {dim.name!r}, got the continuous "
                    f"{dim.to_json()}; list the values or use random or bayesian search"
                )
        size = self.size
        if size > max_grid_size:
            raise ResourceLimitError(
                f"grid has {size} candidates, more than max_grid_size={max_grid_size}; "
                "shrink the grid or use random or bayesian search"
            )
        return {d.name: d.values() for d in self.dimensions}

    def to_sampler_distributions(self) -> dict[str, Any]:
        """For sklearn's ParameterSampler: lists, or objects with ``rvs(random_state=)``."""
        from scipy import stats

        out: dict[str, Any] = {}
        for dim in self.dimensions:
            if isinstance(dim, CategoricalDimension):
                out[dim.name] = dim.values()
            elif isinstance(dim, DistributionDimension):
                out[dim.name] = dim.distribution
            elif isinstance(dim, IntDimension):
                out[dim.name] = _LogUniformInt(dim.low, dim.high) if dim.log else stats.randint(dim.low, dim.high + 1)
            elif dim.log:
                out[dim.name] = stats.loguniform(dim.low, dim.high)
            else:
                out[dim.name] = stats.uniform(dim.low, dim.high - dim.low)
        return out

    def to_skopt_dimensions(self) -> list[Any]:
        from skopt.space import Categorical, Integer, Real

        dims: list[Any] = []
        for dim in self.dimensions:
            prior = "log-uniform" if getattr(dim, "log", False) else "uniform"
            if isinstance(dim, IntDimension):
                dims.append(Integer(dim.low, dim.high, prior=prior, name=dim.name))
            elif isinstance(dim, FloatDimension):
                dims.append(Real(dim.low, dim.high, prior=prior, name=dim.name))
            elif isinstance(dim, CategoricalDimension):
                dims.append(Categorical(list(dim.choices), name=dim.name))
            else:
                raise InvalidRequestError(
                    f"bayesian search cannot use the scipy distribution given for {dim.name!r}; "
                    "give (low, high[, 'log-uniform']), a list, or a typed dict"
                )
        return dims


class _LogUniformInt:
    """Integers drawn log-uniformly in [low, high] (scipy has no such distribution)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def rvs(self, random_state: Any = None) -> int:
        rng = np.random.default_rng(random_state) if not isinstance(random_state, np.random.RandomState) else random_state
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
        return min(self.high, max(self.low, int(value)))
