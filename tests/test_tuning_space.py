"""Search spaces: the seed's forms and the typed JSON form, validation messages, limits, conversions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.hyperparameter_tuning import (
    CategoricalDimension,
    DistributionDimension,
    FloatDimension,
    HyperparameterTuner,
    IntDimension,
    SearchSpace,
)
from mcp_server.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([50, 100], CategoricalDimension("p", (50, 100))),
        ((3, 15), IntDimension("p", 3, 15)),
        ((0.1, 0.9), FloatDimension("p", 0.1, 0.9)),
        ((0.0001, 0.1, "log-uniform"), FloatDimension("p", 0.0001, 0.1, log=True)),
        ((8, 64, "log-uniform"), IntDimension("p", 8, 64, log=True)),
        ({"type": "int", "low": 1, "high": 4}, IntDimension("p", 1, 4)),
        ({"type": "float", "low": 1e-3, "high": 1.0, "log": True}, FloatDimension("p", 1e-3, 1.0, log=True)),
        ({"type": "categorical", "choices": ["gini", None]}, CategoricalDimension("p", ("gini", None))),
        (np.array([1, 2]), CategoricalDimension("p", (1, 2))),
    ],
)
def test_forms_parse_to_typed_dimensions(value, expected):
    (dim,) = SearchSpace({"p": value})
    assert dim == expected


def test_scipy_distribution_is_kept_for_random_search():
    (dim,) = SearchSpace({"p": stats.uniform(0, 1)})
    assert isinstance(dim, DistributionDimension)
    assert dim.to_json()["name"] == "uniform"


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({}, ["non-empty", "{}"]),
        ({"max_depth": (15, 3)}, ["'max_depth'", "low must be <= high", "low=15"]),
        ({"lr": (0.0, 0.1, "log-uniform")}, ["'lr'", "log-scale", "low > 0", "low=0.0"]),
        ({"lr": (0.1, 0.2, "cubic")}, ["'lr'", "prior", "'cubic'"]),
        ({"lr": (0.1,)}, ["'lr'", "(low, high)", "(0.1,)"]),
        ({"depth": []}, ["'depth'", "choices must not be empty"]),
        ({"depth": [3, 3]}, ["'depth'", "unique", "3"]),
        ({"depth": 5}, ["'depth'", "expected a list", "5"]),
        ({"depth": {"type": "integer", "low": 1, "high": 2}}, ["'depth'", "type must be one of", "'integer'"]),
        ({"depth": {"type": "int", "low": 1}}, ["'depth'", "needs 'high'"]),
        ({"depth": {"type": "int", "low": 1.5, "high": 3}}, ["'depth'", "must be an integer", "1.5"]),
        ({"depth": {"type": "int", "low": 1, "high": 3, "step": 2}}, ["'depth'", "unknown keys", "step"]),
        ({"lr": {"type": "float", "low": 0.1, "high": float("inf")}}, ["'lr'", "finite", "inf"]),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.2, "log": "yes"}}, ["'lr'", "log must be", "'yes'"]),
        ({"c": {"type": "categorical", "choices": "ab"}}, ["'c'", "choices must be a list", "'ab'"]),
    ],
)
def test_invalid_spaces_fail_up_front_naming_parameter_rule_and_value(spec, fragments):
    with pytest.raises(InvalidRequestError) as info:
        SearchSpace(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_dimensions_iterate_in_sorted_order_and_json_round_trips():
    space = SearchSpace({"b": [1, 2], "a": (0.1, 1.0), "c": {"type": "int", "low": 1, "high": 3, "log": True}})
    assert space.names == ["a", "b", "c"]
    again = SearchSpace(space.to_json())
    assert again.dimensions == space.dimensions
    assert space.to_json_string() == again.to_json_string()


def test_params_stored_as_strings_parse_back_to_typed_values():
    space = SearchSpace({"depth": [None, 5], "lr": (0.001, 0.1), "n": (10, 20), "crit": ["gini", "entropy"]})
    parsed = space.parse_params({"depth": "None", "lr": str(0.0123456789123), "n": "17", "crit": "gini"})
    assert parsed == {"depth": None, "lr": 0.0123456789123, "n": 17, "crit": "gini"}
    assert space.contains(parsed)


@pytest.mark.parametrize(
    ("settings", "limit"),
    [(None, 2000), (Settings(max_grid_size=10), 10)],
)
def test_grid_size_limit_raises_resource_limit(settings, limit):
    tuner = HyperparameterTuner(enable_mlflow=False, settings=settings)
    grid = {"a": list(range(limit)), "b": [1, 2]}
    with pytest.raises(ResourceLimitError, match=f"{2 * limit} candidates, more than max_grid_size={limit}"):
        tuner.grid_search(grid, lambda p: p, lambda m: 0.0)


@pytest.mark.parametrize("value", [(0.1, 1.0), {"type": "float", "low": 0.1, "high": 1.0}, stats.uniform(0, 1)])
def test_continuous_dimension_in_grid_is_refused_clearly(value):
    tuner = HyperparameterTuner(enable_mlflow=False)
    with pytest.raises(InvalidRequestError, match="grid search needs a finite set of values for 'lr'"):
        tuner.grid_search({"lr": value}, lambda p: p, lambda m: 0.0)


def test_int_range_in_grid_is_enumerated():
    tuner = HyperparameterTuner(enable_mlflow=False)
    tuner.grid_search({"k": (1, 4)}, lambda p: p, lambda m: float(m["k"]))
    assert [t["params"]["k"] for t in tuner.get_top_results(10)] == [4, 3, 2, 1]


def test_bayesian_refuses_scipy_distributions():
    tuner = HyperparameterTuner(enable_mlflow=False)
    with pytest.raises(InvalidRequestError, match="bayesian search cannot use the scipy distribution given for 'lr'"):
        tuner.bayesian_optimization({"lr": stats.uniform(0, 1)}, lambda p: p, lambda m: 0.0, n_calls=3)
