"""Typed search spaces: int / float (optional log scale) / categorical dimensions, validated, sorted
by name, JSON-friendly, converted for each search strategy.

Below both the estimator registry (which checks a space against an estimator's limits) and the
tuning package (which searches it): architecture rule 20, lower layers never import higher ones.
"""

from mcp_server.search_space._dimensions import (
    CategoricalDimension,
    Dimension,
    DistributionDimension,
    FloatDimension,
    IntDimension,
    parse_dimension,
    to_native,
)
from mcp_server.search_space._space import DEFAULT_MAX_GRID_SIZE, SearchSpace

__all__ = [
    "DEFAULT_MAX_GRID_SIZE",
    "CategoricalDimension",
    "Dimension",
    "DistributionDimension",
    "FloatDimension",
    "IntDimension",
    "SearchSpace",
    "parse_dimension",
    "to_native",
]
