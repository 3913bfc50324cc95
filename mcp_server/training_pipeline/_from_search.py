"""Train what a search found: ``run_pipeline(from_search=<parent run id>)``.

A search records its request (``request.json``) and its outcome (``summary.json``) on its parent
run. The pipeline takes from them the data set, target, features, drop, split and folds, and the
winner (its estimator and best params, or its weighted ensemble when that beat the best trial on
the search's folds), so the model trained is exactly the one the search chose, tested on the
holdout the search never saw — without an agent copying params by hand (and getting
a type or a name wrong). A field the caller sets that contradicts the search is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import FailedPreconditionError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker
    from mcp_server.training_pipeline._standard import StandardPipelineRequest

SEARCH_REQUEST_FILE = "request.json"
SEARCH_SUMMARY_FILE = "summary.json"
_FROM_REQUEST = ("dataset", "target", "features", "drop", "split", "cv_folds")


def request_from_search(request: StandardPipelineRequest, tracker: Tracker) -> StandardPipelineRequest:
    """``request`` completed from the search ``request.from_search`` names (a parent run id)."""
    from mcp_server.hyperparameter_tuning import KIND_TAG, PARENT_KIND

    parent = request.from_search
    try:
        run = tracker.get_run(parent)
    except NotFoundError:
        raise InvalidRequestError(f"from_search {parent!r} names no run in this store; pass a tuning job's "
                                  "parent_run_id (get_job shows it) or its job id") from None
    if run.tags.get(KIND_TAG) != PARENT_KIND:
        raise InvalidRequestError(f"from_search {parent!r} is not a tuning search's parent run")
    try:
        searched, summary = tracker.load_dict(parent, SEARCH_REQUEST_FILE), tracker.load_dict(parent, SEARCH_SUMMARY_FILE)
    except NotFoundError:
        raise FailedPreconditionError(f"search {parent!r} has not finished, or was run by an earlier release that did not "
                                  "record its request; train with estimator and params instead") from None
    if summary.get("best_params") is None:
        raise FailedPreconditionError(f"search {parent!r} has no complete trial: there is no winner to train")
    found: dict[str, Any] = {k: searched.get(k) for k in _FROM_REQUEST if searched.get(k) is not None}
    found["estimator"] = summary.get("estimator") or searched.get("estimator")
    if found["estimator"] in (None, "auto"):
        raise InvalidRequestError(f"search {parent!r} recorded no winning estimator; train with estimator and params")
    found["params"] = summary["best_params"] or {}
    if summary.get("ensemble"):  # the ensemble beat the best single trial on the search's folds: train it
        found["estimator"], found["params"] = "ensemble", {}
        found["ensemble"] = [{k: m[k] for k in ("estimator", "params", "weight", "trial")}
                             for m in summary["ensemble"]["members"]]
    given = request.model_dump(exclude_unset=True)
    clashes = [k for k, v in found.items() if k in given and _differs(given[k], v)]
    if clashes:
        raise InvalidRequestError(
            f"from_search trains exactly what search {parent!r} found; these fields differ from it: "
            + "; ".join(f"{k}={given[k]!r} (the search: {found[k]!r})" for k in clashes)
            + ". Leave them out, or train without from_search")
    return request.model_validate({**request.model_dump(), **found})


def _differs(given: Any, found: Any) -> bool:
    if isinstance(given, dict) and isinstance(found, dict):
        return any(k in found and _differs(v, found[k]) for k, v in given.items())
    return given != found
