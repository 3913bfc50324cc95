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
* ``plan_halving``: refuses a grid of candidates past ``max_grid_size``, picks the resource for the estimator (trees for forests, iterations for
  boosting, training rows otherwise), the rung schedule, and refuses a data set too small for it.
"""


from mcp_server.hyperparameter_tuning._halving._evaluator import HalvingEvaluator, nested_order
from mcp_server.hyperparameter_tuning._halving._plan import (
    HalvingPlan,
    check_grid_candidates,
    choose_resource,
    plan_halving,
)
from mcp_server.hyperparameter_tuning._halving._schedule import (
    CANDIDATES,
    DEFAULT_FACTOR,
    PERCENT,
    ROWS,
    Fidelity,
    HalvingOptions,
    HalvingSchedule,
    coerce_halving,
    default_schedule,
    rung_resources,
    rung_sizes,
)
from mcp_server.hyperparameter_tuning._halving._strategy import HalvingStrategy

__all__ = [
    "CANDIDATES",
    "DEFAULT_FACTOR",
    "PERCENT",
    "ROWS",
    "Fidelity",
    "HalvingEvaluator",
    "HalvingOptions",
    "HalvingPlan",
    "HalvingSchedule",
    "HalvingStrategy",
    "check_grid_candidates",
    "choose_resource",
    "coerce_halving",
    "default_schedule",
    "nested_order",
    "plan_halving",
    "rung_resources",
    "rung_sizes",
]
