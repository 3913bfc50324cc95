"""Typed dimensions of a search space and the parser of every accepted form (seed forms and typed JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcp_server.error_handling import InvalidRequestError
from mcp_server.logged_values import logged_text

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
        # MLflow stores params as text (logged_text; str(value) in earlier releases): match a choice
        # by either form.
        for choice in self.choices:
            if text in (logged_text(choice), str(choice)):
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
