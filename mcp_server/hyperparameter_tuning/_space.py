"""The search-space types, from ``mcp_server.search_space`` (below the estimator registry, which
checks spaces too: architecture rule 20), under the name the tuning modules import them by."""

from mcp_server.search_space import (
    DEFAULT_MAX_GRID_SIZE,
    CategoricalDimension,
    Dimension,
    DistributionDimension,
    FloatDimension,
    IntDimension,
    SearchSpace,
    parse_dimension,
    to_native,
)

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
