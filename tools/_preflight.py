"""Checks a job request must pass before a job is queued: invalid calls fail at validation.

A tuning or pipeline job that would fail on its first line (unknown data set, missing target,
unknown hyperparameter, a grid past ``max_grid_size``, a budget past ``max_trials``...) is refused
by the tool call itself, with the message naming the field, instead of taking a job slot and
failing later. The checks are the same ones the job runs (they call the same domain functions),
done early; data sets are loaded through the catalog's cache, so the job does not read them twice.
Blocking: call from a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_server import estimators as registry
from mcp_server.error_handling import InvalidRequestError, NotFoundError, ResourceLimitError
from mcp_server.evaluation import check_split
from mcp_server.training_pipeline import plan_pipeline
from tools.data import catalog, load_training_data

if TYPE_CHECKING:
    from tools._state import AppState
    from tools.pipelines import PipelineRequest
    from tools.tuning import TuneRequest


def check_tune_request(app: AppState, request: TuneRequest) -> None:
    """Raise the error the tuning job would raise first, if any."""
    from mcp_server.hyperparameter_tuning import SearchSpace  # imports numpy

    settings = app.settings
    if request.max_trials > settings.max_trials:
        raise ResourceLimitError(
            f"max_trials must be at most {settings.max_trials} (settings.max_trials), got {request.max_trials}"
        )
    if request.cv_folds > settings.max_cv_folds:
        raise ResourceLimitError(
            f"cv_folds must be at most {settings.max_cv_folds} (settings.max_cv_folds), got {request.cv_folds}"
        )
    space_spec = request.space_spec()
    if space_spec is not None:
        space = SearchSpace(space_spec)  # ranges first: they need no data
        _check_grid(request, space, settings.max_grid_size)
    X, y = load_training_data(app, request.dataset, request.target, request.features, request.drop,
                              keep=request.split.column)
    check_split(request.split, X.assign(**{str(y.name): y}), target=str(y.name), n_folds=request.cv_folds)
    if len(y) < request.cv_folds:
        raise InvalidRequestError(
            f"cv_folds={request.cv_folds} needs at least that many labelled rows, dataset "
            f"{request.dataset!r} has {len(y)}"
        )
    task = registry.infer_task(y)
    if space_spec is None:
        space = SearchSpace(registry.default_search_space(request.estimator, task))
        _check_grid(request, space, settings.max_grid_size)
    registry.check_params(request.estimator, task, dict.fromkeys(space.names))
    registry.check_space_limits(request.estimator, space)
    if request.scoring is not None:
        registry.check_scoring(request.scoring, task, y=y)
    if request.resume_from is not None:
        _check_resumable(app, request)


def _check_grid(request: TuneRequest, space: Any, max_grid_size: int) -> None:
    if request.strategy != "grid":
        return
    try:
        space.to_param_grid(max_grid_size=max_grid_size)
    except ResourceLimitError as exc:
        raise ResourceLimitError(f"space is too large for strategy='grid': {exc}") from None
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"space does not suit strategy='grid': {exc}") from None


def _check_resumable(app: AppState, request: TuneRequest) -> None:
    from mcp_server.hyperparameter_tuning._mlflow_log import KIND_TAG, PARENT_KIND

    tracker = app.tracker(request.experiment_name)
    try:
        run = tracker.get_run(request.resume_from)
    except NotFoundError:
        raise NotFoundError(f"resume_from={request.resume_from!r} does not name a run") from None
    if run.tags.get(KIND_TAG) != PARENT_KIND:
        raise InvalidRequestError(f"resume_from={request.resume_from!r} is not the parent run of a tuning search")
    if run.experiment_id != tracker.experiment_id:
        raise InvalidRequestError(
            f"resume_from={request.resume_from!r} belongs to another experiment than "
            f"experiment_name={tracker.experiment_name!r}; pass that search's experiment_name"
        )
    if run.status.value == "RUNNING":
        raise InvalidRequestError(
            f"resume_from={request.resume_from!r} is still RUNNING (its search is in progress); "
            "resume a search that ended (FINISHED, KILLED or FAILED)"
        )


def check_pipeline_request(app: AppState, request: PipelineRequest) -> None:
    """Raise the error the pipeline job would raise planning its run (data, columns, params, metric)."""
    from tools.pipelines import standard_request  # tools.pipelines imports this module

    from mcp_server.data_validation_pipeline import load_schema

    frame = catalog(app).load(request.dataset)  # the data set first: a bad name is the first thing to say
    plan_pipeline(standard_request(app, request), frame)
    if request.schema_name is not None:
        load_schema(request.schema_name)
