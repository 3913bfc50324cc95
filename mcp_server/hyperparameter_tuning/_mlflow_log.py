"""MLflow layout of a search: one parent run, one child run per trial, a history plot on the parent.

Parent: params strategy / space (JSON) / cv / scoring / seed / direction / objective; at the end
tags ``best_<param>``, metric ``best_score``, summary metrics and tags, ``summary.json`` and
``optimization_history.png``; ends FINISHED, KILLED (cancelled) or FAILED.
Child (``mlflow.parentRunId``): the candidate's params, metrics ``mean_score`` / ``std_score`` /
``<scoring>`` / ``duration_seconds``, stepped metric ``fold_score`` (step = fold), tags
``trial_state`` / ``trial_number`` / ``error``; halving trials add tags ``bracket`` / ``rung`` /
``resource`` and metric ``resource``. Children are written with
``record_run(background=True)`` so logging stays off the search's critical path.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation import record_evaluation
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._types import SearchedData, TrialRecord, TrialState, TuningResult

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)

KIND_TAG = "nba_mcp.kind"
PARENT_KIND = "tuning_search"
CHILD_KIND = "tuning_trial"
# Parent params a resumed search must match, or it would mix two different searches.
RESUME_KEYS = ("strategy", "halving", "space", "cv", "scoring", "seed", "direction", "split.kind", "split.column",
               "split.test_size", "split.seed", "split.gap")
_MAX_PARAM = 6000


class TuningRunLogger:
    def __init__(self, tracker: Tracker, *, scoring: str) -> None:
        self.tracker = tracker
        self.scoring = scoring
        self.parent_run_id: str | None = None
        self._children: dict[int, Future | str] = {}

    def start(self, *, run_name: str, params: dict[str, Any], resume_from: str | None = None,
              searched_data: SearchedData | None = None) -> str:
        if resume_from:
            self._check_resumable(resume_from, params)
            self.parent_run_id = resume_from
            self.tracker.set_tags({"resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, run_id=resume_from)
            # RUNNING while it works, owned by this process: a second resume is refused, and a
            # crash now leaves it to the next server's reaper like any other run.
            if hasattr(self.tracker, "reopen_run"):
                self.tracker.reopen_run(resume_from)
            return resume_from
        self.parent_run_id = self.tracker.create_run(run_name=run_name, tags={KIND_TAG: PARENT_KIND})
        logged = {k: (str(v)[: _MAX_PARAM]) for k, v in params.items()}
        self.tracker.log_params(logged, run_id=self.parent_run_id)
        if len(str(params.get("space", ""))) > _MAX_PARAM:
            self.tracker.log_dict({"space": params["space"]}, "space.json", run_id=self.parent_run_id)
        if searched_data is not None:
            self.tracker.log_dataset(searched_data.frame, name=searched_data.name, source=searched_data.source,
                                     context="training", targets=searched_data.target, run_id=self.parent_run_id)
        return self.parent_run_id

    def _check_resumable(self, run_id: str, params: dict[str, Any]) -> None:
        run = self.tracker.get_run(run_id)  # NotFoundError for an unknown id
        if run.tags.get(KIND_TAG) != PARENT_KIND:
            raise InvalidRequestError(f"resume_from={run_id!r} is not the parent run of a tuning search")
        if run.status.value == "RUNNING":
            raise InvalidRequestError(
                f"resume_from={run_id!r} is RUNNING: its search (or another resume of it) is in progress; "
                "wait for it to end, cancel its job, or end the run with end_run"
            )
        for key in RESUME_KEYS:
            old, new = run.params.get(key), str(params.get(key))[: _MAX_PARAM]
            if old is not None and old != new:
                raise InvalidRequestError(
                    f"resume_from={run_id!r} ran with {key}={old!r}, but this search has {key}={new!r}; "
                    "a resumed search must use the same settings"
                )

    def log_trial(self, record: TrialRecord) -> None:
        metrics: dict[str, float] = {"duration_seconds": record.duration_seconds, "n_folds_run": len(record.fold_scores)}
        if record.score is not None:
            metrics.update(mean_score=record.score, std_score=record.std or 0.0)
            metrics[self.scoring] = record.score
        tags = {KIND_TAG: CHILD_KIND, "trial_state": record.state.value, "trial_number": record.number}
        if record.error:
            tags["error"] = record.error[: _MAX_PARAM]
        if record.rung is not None:  # successive halving
            tags.update(bracket=record.bracket, rung=record.rung, resource=record.resource)
            metrics["resource"] = record.resource
        end_ms = int(time.time() * 1000)
        self._children[record.number] = self.tracker.record_run(
            run_name=f"trial-{record.number:03d}",
            params=record.params,
            metrics=metrics,
            tags=tags,
            status="FAILED" if record.state is TrialState.FAILED else "FINISHED",
            parent_run_id=self.parent_run_id,
            metric_history={"fold_score": list(record.fold_scores)} if record.fold_scores else None,
            start_time_ms=end_ms - int(record.duration_seconds * 1000),
            end_time_ms=end_ms,
            background=True,
        )

    def finish(self, result: TuningResult, *, status: str) -> None:
        """Flush the children, fill their run ids, log the outcome on the parent and end it."""
        from mcp_server.hyperparameter_tuning._plots import optimization_history_figure

        run_id = self.parent_run_id
        try:
            self.tracker.flush()
        finally:
            for trial in result.trials:
                child = self._children.get(trial.number)
                if isinstance(child, Future) and child.done() and child.exception() is None:
                    trial.run_id = child.result()
                elif isinstance(child, str):
                    trial.run_id = child
        summary = result.summary
        try:
            if result.best_params is not None:
                self.tracker.set_tags({f"best_{k}": v for k, v in result.best_params.items()}, run_id=run_id)
                self.tracker.log_metrics({"best_score": result.best_score}, run_id=run_id)
            metrics = {
                "n_trials": summary.total_trials, "n_complete": summary.n_complete,
                "n_failed": summary.n_failed, "n_pruned": summary.n_pruned,
                "elapsed_seconds": summary.elapsed_seconds, "n_fold_fits": summary.n_fold_fits,
                "n_fold_fits_saved": summary.n_fold_fits_saved,
            }
            if summary.mean_score is not None:
                metrics.update(mean_score=summary.mean_score, std_score=summary.std_score or 0.0)
            self.tracker.log_metrics(metrics, run_id=run_id)
            self.tracker.set_tags(
                {
                    "stopped_reason": summary.stopped_reason.value,
                    "stopped_early": summary.stopped_early,
                    "fell_back_to_random": summary.fell_back_to_random,
                    "best_trial": result.best_trial.number if result.best_trial else "none",
                    "best_trial_run_id": result.best_trial.run_id if result.best_trial else "none",
                },
                run_id=run_id,
            )
            self.tracker.log_dict(result.model_dump(mode="json", exclude={"trials"}), "summary.json", run_id=run_id)
            record_evaluation(self.tracker, run_id, split=result.split, warnings=result.warnings)
            figure = optimization_history_figure(result.trials, direction=summary.direction, scoring=self.scoring)
            self.tracker.log_figure(figure, "optimization_history.png", run_id=run_id)
        finally:
            self.tracker.end_run(status, run_id=run_id)

    def abort(self, status: str) -> None:
        """End the parent after an error, keeping what was logged."""
        if self.parent_run_id is None:
            return
        try:
            self.tracker.flush()
        except Exception:  # noqa: BLE001 - the original error matters more
            logger.exception("flushing trial runs failed while ending search %s", self.parent_run_id)
        self.tracker.end_run(status, run_id=self.parent_run_id)


def _fidelity_tags(tags: dict[str, str]) -> dict[str, int]:
    """bracket / rung / resource of a halving trial, as its child run's tags recorded them."""
    return {k: int(tags[k]) for k in ("bracket", "rung", "resource") if tags.get(k, "").isdigit()}


def load_completed_trials(tracker: Tracker, parent_run_id: str, space: SearchSpace) -> tuple[list[TrialRecord], int]:
    """COMPLETE and PRUNED trials of an earlier search (FAILED ones are run again), and the next
    free trial number."""
    records: list[TrialRecord] = []
    next_number = 0
    token: str | None = None
    while True:
        runs, token = tracker.search_runs_page(
            f"tags.mlflow.parentRunId = '{parent_run_id}'", 1000, page_token=token
        )
        for run in runs:
            number = run.tags.get("trial_number", "")
            next_number = max(next_number, int(number) + 1 if number.isdigit() else 0)
            state = run.tags.get("trial_state")
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
            history = tracker.get_metric_history(run.run_id, "fold_score")
            records.append(
                TrialRecord(
                    number=int(number), params=params,
                    state=TrialState(state), score=run.metrics.get("mean_score"), std=run.metrics.get("std_score"),
                    fold_scores=[p.value for p in sorted(history, key=lambda p: p.step)],
                    duration_seconds=run.metrics.get("duration_seconds", 0.0), run_id=run.run_id,
                    **_fidelity_tags(run.tags),
                )
            )
        if not token:
            break
    return sorted(records, key=lambda r: r.number), next_number
