"""A tuning request as a caller states it (``TuneRequest``, the tool's input type) and its checked
plan (``plan_search``): every rule a request must pass before a search starts, in one place.

A search that would fail on its first line (unknown hyperparameter, a grid past ``max_grid_size``,
a budget past ``max_trials``, a split the data cannot make, a resume of a run that is not a
search...) is refused by ``plan_search`` with the field named, before any job or run exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.estimators import REGISTRY
from mcp_server.field_aliases import accepting_aliases
from mcp_server.evaluation import LeakCheck, SplitSpec, check_split, check_target

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker
    from mcp_server.hyperparameter_tuning._halving import HalvingOptions
    from mcp_server.hyperparameter_tuning._space import SearchSpace

EstimatorName = Literal[tuple(REGISTRY)]  # the allow-list: the schema shows the choices
# What a search may name: "auto" (the portfolio of families, estimators.PORTFOLIO) or one estimator.
EstimatorChoice = Literal[(*REGISTRY, "auto")]
ColumnList = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=1000)]
ParamName = Annotated[str, Field(min_length=1, max_length=100)]
# Hyperparameter ranges beyond these are nonsense, and unbounded numbers reach numpy's samplers.
MAX_ABS_BOUND = 10**12
Bound = Annotated[float, Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)]
IntBound = Annotated[int, Field(ge=-MAX_ABS_BOUND, le=MAX_ABS_BOUND)]
LOG = "Sample on a log scale (low > 0)"
# Every request model refuses unknown fields: a misspelt option must not be silently ignored.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class IntParam(BaseModel):
    model_config = STRICT
    type: Literal["int"]
    low: IntBound
    high: IntBound
    log: bool = Field(default=False, description=LOG)


class FloatParam(BaseModel):
    model_config = STRICT
    type: Literal["float"]
    low: Bound
    high: Bound
    log: bool = Field(default=False, description=LOG)


class CategoricalParam(BaseModel):
    model_config = STRICT
    type: Literal["categorical"]
    choices: list[Annotated[str, Field(max_length=200)] | int | float | bool | None] = Field(min_length=1, max_length=100)


ParamSpec = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class TuneRequest(BaseModel):
    """A search: which data, which estimator and space, how to score, what budget."""

    model_config = STRICT
    dataset: str = Field(min_length=1, max_length=200, description="A name from list_datasets")
    target: str | None = Field(default=None, min_length=1, max_length=200, description="Column to predict")
    features: ColumnList | None = Field(default=None, description="Default: all other columns")
    drop: ColumnList | None = Field(default=None, validation_alias=accepting_aliases("drop"),
                                    description="Columns to leave out (ids, names, dates, leaks)")
    estimator: EstimatorChoice = Field(
        default="auto", description="auto: every family, cheapest first; the winner is result.estimator")
    strategy: Literal["grid", "random", "bayesian", "halving"] | None = Field(
        default=None, description="Default: bayesian per family (auto), else random; halving: cheap rungs first, "
        "the best 1/factor go on")
    space: dict[ParamName, ParamSpec] | None = Field(
        default=None, max_length=30,
        description="Hyperparameter -> range, e.g. {'max_depth': {'type': 'int', 'low': 2, 'high': 12}}; "
        "default: the estimator's own")
    cv_folds: int = Field(default=5, ge=2, le=20)
    scoring: str | None = Field(default=None, max_length=64, description="sklearn scorer; default per task")
    max_trials: int | None = Field(
        default=None, ge=1, le=500, description="Trial budget (halving: all rungs); with no timeout_seconds "
        "either, the search runs default_time_budget_seconds (60)")
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=86_400, description="Wall budget, MLflow logging included")
    early_stopping_patience: int | None = Field(default=None, ge=1, le=500, description="Trials without improvement")
    pruning: Literal["none", "median", "best_margin", "noise_aware"] = Field(default="none", description="Stop bad trials between folds")
    factor: float | None = Field(default=None, gt=1, le=10, description="halving: keep the best 1/factor per rung; default 5, or 3 where 5 leaves one rung")
    min_resource: int | None = Field(default=None, ge=1, le=10**7, description="halving: first rung's resource")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Default: drawn and recorded")
    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Holdout kept out and folds of the rest, e.g. {'kind': 'group', 'column': 'player_id'}")
    leak_check: LeakCheck = Field(default="stop", description="stop: leaking columns stop the job; warn: flag")
    experiment_name: str | None = Field(default=None, min_length=1, max_length=200)
    run_name: str | None = Field(default=None, min_length=1, max_length=200)
    resume_from: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{32}$", max_length=32,
        description="parent_run_id of an ended search to continue (same data, estimator, space, folds)")

    def space_spec(self) -> dict[str, dict[str, Any]] | None:
        """The space as plain dicts (what SearchSpace takes); None: the estimator's default."""
        return {name: spec.model_dump() for name, spec in self.space.items()} if self.space else None

    def halving_options(self) -> HalvingOptions | None:
        if self.strategy != "halving":
            return None
        from mcp_server.hyperparameter_tuning._halving import HalvingOptions

        return HalvingOptions(factor=self.factor, min_resource=self.min_resource)


@dataclass(frozen=True)
class SearchPlan:
    """A request checked against its data and the settings: what ``HyperparameterTuner.tune`` runs."""

    request: TuneRequest
    task: str
    space: dict[str, Any] | None  # the searched space (the estimator's default); None: estimator='auto'

    def tune_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``HyperparameterTuner.tune`` for this plan (X and y aside)."""
        r = self.request
        return dict(
            estimator=r.estimator, space=self.space, strategy=r.strategy, scoring=r.scoring, cv_folds=r.cv_folds,
            max_trials=r.max_trials, timeout=r.timeout_seconds, seed=r.seed, task=self.task,
            pruning=None if r.pruning == "none" else r.pruning, early_stopping_patience=r.early_stopping_patience,
            run_name=r.run_name, resume_from=r.resume_from, split=r.split, leak_check=r.leak_check,
            dataset=r.dataset, halving=r.halving_options(),
        )


def plan_search(request: TuneRequest, X: Any, y: Any, *, settings: Any, tracker: Tracker | None = None) -> SearchPlan:
    """Check ``request`` against the data ``X``/``y``, the settings' limits and (to resume) the
    tracker; raise the error the search would raise first, naming the field."""
    from mcp_server import estimators as registry
    from mcp_server.hyperparameter_tuning._space import SearchSpace  # imports numpy
    from mcp_server.threads import threads_per_fit

    if request.max_trials is not None and request.max_trials > settings.max_trials:
        raise ResourceLimitError(
            f"max_trials must be at most {settings.max_trials} (settings.max_trials), got {request.max_trials}")
    if request.cv_folds > settings.max_cv_folds:
        raise ResourceLimitError(
            f"cv_folds must be at most {settings.max_cv_folds} (settings.max_cv_folds), got {request.cv_folds}")
    given = request.space_spec()
    if given is not None:
        _check_grid(request, SearchSpace(given), settings.max_grid_size)  # ranges first: no data needed
    check_split(request.split, X.assign(**{str(y.name): y}), target=str(y.name), n_folds=request.cv_folds)
    if len(y) < request.cv_folds:
        raise InvalidRequestError(
            f"cv_folds={request.cv_folds} needs at least that many labelled rows, dataset "
            f"{request.dataset!r} has {len(y)}")
    task = registry.infer_task(y)
    check_target(y, task=task, settings=settings)
    if request.estimator == "auto":
        _check_auto(request)
        space_spec = None
    else:
        space_spec = given if given is not None else registry.default_search_space(request.estimator, task)
        space = SearchSpace(space_spec)
        if given is None:
            _check_grid(request, space, settings.max_grid_size)
        registry.check_params(request.estimator, task, dict.fromkeys(space.names))
        # Trials of a tool's search run one at a time, each with its job's share of the cores.
        registry.check_space_limits(request.estimator, space, max_threads=threads_per_fit(
            settings.cores, concurrent_jobs=settings.max_concurrent_jobs))
    if request.scoring is not None:
        registry.check_scoring(request.scoring, task, y=y)
    if request.resume_from is not None:
        from mcp_server.hyperparameter_tuning._mlflow_resume import check_resumable

        check_resumable(tracker, request.resume_from)
    return SearchPlan(request=request, task=task, space=space_spec)


def _check_auto(request: TuneRequest) -> None:
    from mcp_server.hyperparameter_tuning._portfolio import check_auto

    check_auto(space=request.space, strategy=request.strategy, resume_from=request.resume_from)


def _check_grid(request: TuneRequest, space: SearchSpace, max_grid_size: int) -> None:
    """A grid, or halving over grid candidates, must fit in ``max_grid_size``."""
    if request.strategy == "grid":
        space.check_grid(max_grid_size, used_by="strategy='grid'")
    elif request.strategy == "halving":
        from mcp_server.hyperparameter_tuning._halving import check_grid_candidates

        check_grid_candidates(request.halving_options(), space, max_grid_size=max_grid_size)
