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
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError

DEFAULT_MAX_GRID_SIZE = 2000
_PRIORS = {"uniform": False, "log-uniform": True, "log_uniform": True, "log": True}


def to_native(value: Any) -> Any:
    """numpy scalars -> Python scalars, so params compare, hash and serialize plainly."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


@dataclass(frozen=True)
class IntDimension:
    name: str
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        for bound in ("low", "high"):
            value = getattr(self, bound)
            if not _is_number(value) or float(value) != int(value):
                raise InvalidRequestError(
                    f"search space {self.name!r}: {bound} of an int dimension must be an integer, got {value!r}"
                )
            object.__setattr__(self, bound, int(value))
        if self.low > self.high:
            raise InvalidRequestError(
                f"search space {self.name!r}: low must be <= high, got low={self.low}, high={self.high}"
            )
        if self.log and self.low <= 0:
            raise InvalidRequestError(
                f"search space {self.name!r}: a log-scale dimension needs low > 0, got low={self.low}"
            )

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1))

    def contains(self, value: Any) -> bool:
        return _is_number(value) and float(value) == int(value) and self.low <= value <= self.high

    def parse(self, text: str) -> int:
        return int(float(text))

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class FloatDimension:
    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        for bound in ("low", "high"):
            value = getattr(self, bound)
            if not _is_number(value) or not math.isfinite(float(value)):
                raise InvalidRequestError(
                    f"search space {self.name!r}: {bound} of a float dimension must be a finite number, got {value!r}"
                )
            object.__setattr__(self, bound, float(value))
        if not self.low < self.high:
            raise InvalidRequestError(
                f"search space {self.name!r}: low must be < high, got low={self.low}, high={self.high}"
            )
        if self.log and self.low <= 0:
            raise InvalidRequestError(
                f"search space {self.name!r}: a log-scale dimension needs low > 0, got low={self.low}"
            )

    size = None

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def parse(self, text: str) -> float:
        return float(text)

    def to_json(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class CategoricalDimension:
    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        choices = tuple(to_native(c) for c in self.choices)
        if not choices:
            raise InvalidRequestError(f"search space {self.name!r}: choices must not be empty")
        seen: list[Any] = []
        for choice in choices:
            # Compare with type: 1, 1.0 and True are different choices for an estimator.
            if any(type(choice) is type(s) and choice == s for s in seen):
                raise InvalidRequestError(
                    f"search space {self.name!r}: choices must be unique, got {choice!r} twice"
                )
            seen.append(choice)
        object.__setattr__(self, "choices", choices)

    @property
    def size(self) -> int:
        return len(self.choices)

    def values(self) -> list[Any]:
        return list(self.choices)

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(c) and value == c for c in self.choices)

    def parse(self, text: str) -> Any:
        # MLflow stores params as str(value): match a choice by its string form.
        for choice in self.choices:
            if str(choice) == text:
                return choice
        raise InvalidRequestError(f"search space {self.name!r}: {text!r} is not one of {list(self.choices)}")

    def to_json(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": [_jsonable(c) for c in self.choices]}


@dataclass(frozen=True)
class DistributionDimension:
    """A scipy (frozen) distribution from the seed's random-search form; random search only."""

    name: str
    distribution: Any

    size = None

    def contains(self, value: Any) -> bool:
        support = getattr(self.distribution, "support", None)
        if support is None or not _is_number(value):
            return True
        low, high = support()
        return low <= value <= high

    def parse(self, text: str) -> Any:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number

    def to_json(self) -> dict[str, Any]:
        dist = self.distribution
        name = getattr(getattr(dist, "dist", None), "name", type(dist).__name__)
        return {"type": "distribution", "name": name, "args": [_jsonable(a) for a in getattr(dist, "args", ())]}


Dimension = IntDimension | FloatDimension | CategoricalDimension | DistributionDimension


def _jsonable(value: Any) -> Any:
    value = to_native(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _parse_typed(name: str, spec: Mapping[str, Any]) -> Dimension:
    kind = spec.get("type")
    allowed = {"int": {"type", "low", "high", "log"}, "float": {"type", "low", "high", "log"},
               "categorical": {"type", "choices"}}
    if kind not in allowed:
        raise InvalidRequestError(
            f"search space {name!r}: type must be one of int, float, categorical, got {kind!r}"
        )
    unknown = set(spec) - allowed[kind]
    if unknown:
        raise InvalidRequestError(
            f"search space {name!r}: unknown keys {sorted(unknown)} for type {kind!r} "
            f"(allowed: {sorted(allowed[kind])})"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)):
            raise InvalidRequestError(f"search space {name!r}: choices must be a list, got {choices!r}")
        return CategoricalDimension(name, tuple(choices))
    for bound in ("low", "high"):
        if bound not in spec:
            raise InvalidRequestError(f"search space {name!r}: {kind} dimension needs {bound!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise InvalidRequestError(f"search space {name!r}: log must be true or false, got {log!r}")
    cls = IntDimension if kind == "int" else FloatDimension
    return cls(name, spec["low"], spec["high"], log)


def _parse_range(name: str, value: tuple) -> Dimension:
    if len(value) not in (2, 3) or not all(_is_number(v) for v in value[:2]):
        raise InvalidRequestError(
            f"search space {name!r}: a range must be (low, high) or (low, high, 'log-uniform'), got {value!r}"
        )
    log = False
    if len(value) == 3:
        if value[2] not in _PRIORS:
            raise InvalidRequestError(
                f"search space {name!r}: prior must be 'uniform' or 'log-uniform', got {value[2]!r}"
            )
        log = _PRIORS[value[2]]
    low, high = value[0], value[1]
    if all(isinstance(v, (int, np.integer)) for v in (low, high)):
        return IntDimension(name, low, high, log)
    return FloatDimension(name, low, high, log)


def parse_dimension(name: Any, value: Any) -> Dimension:
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"search space parameter names must be non-empty strings, got {name!r}")
    if isinstance(value, Mapping):
        return _parse_typed(name, value)
    if isinstance(value, tuple):
        return _parse_range(name, value)
    if isinstance(value, (list, np.ndarray, range)):
        return CategoricalDimension(name, tuple(value))
    if hasattr(value, "rvs"):
        return DistributionDimension(name, value)
    raise InvalidRequestError(
        f"search space {name!r}: expected a list of values, a (low, high[, prior]) range, a scipy "
        f"distribution or a typed dict, got {value!r}"
    )


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
