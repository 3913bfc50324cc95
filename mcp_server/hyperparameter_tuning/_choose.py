"""``make_strategy``: the one place that knows every strategy, halving's included (which builds on
the others, so it cannot live beside them)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp_server.error_handling import InvalidRequestError
from mcp_server.hyperparameter_tuning._halving import HalvingStrategy, default_schedule
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._strategies import (
    STRATEGIES,
    BayesianStrategy,
    GridStrategy,
    RandomStrategy,
    SearchStrategy,
    check_bayesian_space,
)

logger = logging.getLogger(__name__)


def make_strategy(
    name: str,
    space: SearchSpace,
    *,
    n_candidates: int,
    seed: int,
    max_grid_size: int,
    schedule: Any = None,
) -> tuple[SearchStrategy, bool]:
    """Build a strategy; returns (strategy, fell_back_to_random). ``schedule``: the halving
    schedule planned for the estimator and data (default: an abstract budget of 1..81)."""
    if name == "halving":
        return HalvingStrategy(space, schedule=schedule or default_schedule(), seed=seed,
                               max_grid_size=max_grid_size), False
    if name == "grid":
        return GridStrategy(space, max_grid_size=max_grid_size), False
    if name == "random":
        return RandomStrategy(space, n_candidates=n_candidates, seed=seed), False
    if name == "bayesian":
        check_bayesian_space(space)
        try:
            import skopt  # noqa: F401
        except ImportError as exc:
            message = f"scikit-optimize is not importable ({exc}); bayesian search falls back to random search"
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            return RandomStrategy(space, n_candidates=n_candidates, seed=seed), True
        return BayesianStrategy(space, n_candidates=n_candidates, seed=seed), False
    raise InvalidRequestError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
