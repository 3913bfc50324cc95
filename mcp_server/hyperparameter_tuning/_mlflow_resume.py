"""Reading an ended search back from MLflow: whether it can be resumed, and its finished trials."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.hyperparameter_tuning._mlflow_names import (
    FIDELITY_TAGS,
    KIND_TAG,
    PARENT_KIND,
    RESUME_KEYS,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
    cv_metric_names,
    logged_score,
)
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._types import TrialRecord, TrialState
from mcp_server.logged_values import logged_text, parse_logged

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker


def check_resumable(tracker: Tracker, run_id: str, params: dict[str, Any] | None = None) -> None:
    """Refuse to resume ``run_id`` unless it is an ended search of ``tracker``'s experiment (and, with
    ``params``, one that ran with the same settings)."""
    try:
        run = tracker.get_run(run_id)
    except NotFoundError:
        raise NotFoundError(f"resume_from={run_id!r} does not name a run") from None
    if run.tags.get(KIND_TAG) != PARENT_KIND:
        raise InvalidRequestError(f"resume_from={run_id!r} is not the parent run of a tuning search")
    if run.experiment_id != tracker.experiment_id:
        raise InvalidRequestError(
            f"resume_from={run_id!r} belongs to another experiment than experiment_name="
            f"{tracker.experiment_name!r}; pass that search's experiment_name")
    if run.status.value == "RUNNING":
        raise InvalidRequestError(
            f"resume_from={run_id!r} is RUNNING: its search (or another resume of it) is in progress; "
            "wait for it to end, cancel its job, or end the run with end_run")
    for key in RESUME_KEYS if params is not None else ():
        if key not in params:  # a parameter this release no longer logs (``cv``: now ``cv_folds``)
            continue
        old, new = run.params.get(key), logged_text(params[key])
        if old is not None and old != new and parse_logged(old) != parse_logged(new):
            raise InvalidRequestError(
                f"resume_from={run_id!r} ran with {key}={old!r}, but this search has {key}={new!r}; "
                "a resumed search must use the same settings")


def _fidelity_tags(run: Any) -> dict[str, int]:
    """bracket / rung / resource of a halving trial, as its child run recorded them."""
    tags = run.tags
    found = {k: tags.get(tag, tags.get(k, "")) for k, tag in FIDELITY_TAGS.items()}  # earlier runs: bare names
    values = {k: int(v) for k, v in found.items() if v.isdigit()}
    resource = run.metrics.get("resource")
    if resource is not None and values:
        values["resource"] = int(resource)
    return values


def _trial_tag(run: Any, tag: str, old: str) -> str | None:
    return run.tags.get(tag, run.tags.get(old))


def load_completed_trials(tracker: Tracker, parent_run_id: str, space: SearchSpace) -> tuple[list[TrialRecord], int]:
    """COMPLETE and PRUNED trials of an earlier search (FAILED ones are run again), and the next
    free trial number."""
    records: list[TrialRecord] = []
    next_number = 0
    token: str | None = None
    scoring = tracker.get_run(parent_run_id).params.get("scoring", "")
    names = cv_metric_names(scoring)
    while True:
        runs, token = tracker.search_runs_page(
            f"tags.mlflow.parentRunId = '{parent_run_id}'", 1000, page_token=token
        )
        for run in runs:
            number = _trial_tag(run, TRIAL_NUMBER_TAG, "trial_number") or ""
            next_number = max(next_number, int(number) + 1 if number.isdigit() else 0)
            state = _trial_tag(run, TRIAL_STATE_TAG, "trial_state")
            if state not in (TrialState.COMPLETE.value, TrialState.PRUNED.value):
                continue
            if run.status.value != "FINISHED":
                # Its process died between creating the run and ending it (ended KILLED by the
                # next server's reaper): params or metrics may be missing, so run it again.
                continue
            try:
                params = space.parse_params(run.params)
            except (KeyError, InvalidRequestError) as exc:
                raise InvalidRequestError(
                    f"trial run {run.run_id} of {parent_run_id} does not fit this search space: {exc}"
                ) from None
            metrics = run.metrics
            # Scores as the search keeps them (the scorer's sign); runs of earlier releases logged
            # them under the scorer's own name, unsigned, or as mean_score / fold_score.
            sign = logged_score(scoring)[1] if names["mean"] in metrics or names["partial"] in metrics else 1.0
            old = {"mean": f"cv_{scoring}_mean", "std": f"cv_{scoring}_std", "fold": f"cv_{scoring}_fold",
                   "partial": f"partial_cv_{scoring}_mean"}
            score = next((sign * metrics[n] for n in (names["mean"], names["partial"], old["mean"], old["partial"],
                                                     "mean_score") if n in metrics), None)
            history = (tracker.get_metric_history(run.run_id, names["fold"]) or tracker.get_metric_history(
                run.run_id, old["fold"]) or tracker.get_metric_history(run.run_id, "fold_score"))
            folds = [sign * p.value for p in sorted(history, key=lambda p: p.step)]
            std = metrics.get(names["std"], metrics.get(old["std"], metrics.get("std_score")))
            if std is None and folds:  # a pruned trial logs no std: the loop's, from its folds
                std = statistics.pstdev(folds) if len(folds) > 1 else 0.0
            records.append(
                TrialRecord(
                    number=int(number), params=params,
                    state=TrialState(state), score=score, std=std,
                    fold_scores=folds,
                    duration_seconds=metrics.get("duration_seconds", run.duration_seconds or 0.0), run_id=run.run_id,
                    **_fidelity_tags(run),
                )
            )
        if not token:
            break
    return sorted(records, key=lambda r: r.number), next_number
