"""MLflow layout of a search: one parent run, one child run per trial, a history plot on the parent.

Names follow ``docs/tracking.md``; ``<s>`` is the scoring's logged name (``logged_score``: an error
scorer such as ``neg_root_mean_squared_error`` is logged as the error itself, ``rmse``, positive).

Parent (``search <estimator> <dataset> <target> (<strategy>)``): params ``estimator``, ``dataset``,
``target``, strategy / space (JSON) / cv_folds / scoring / seed / direction / pruning (and its
``pruning.<setting>``) / split; its data set as a ``training`` input; the stepped metric
``best_cv_<s>`` (the best score so far, step = trial number: the optimization curve); at the end
``trials_cv_<s>_mean`` / ``_std`` (over the trials), the counters and timings as the one JSON tag
``nba_mcp.search``, tags ``best_<param>`` / ``best_trial``, ``summary.json`` and
``optimization_history.png``; ends FINISHED, KILLED (cancelled) or FAILED.
Child (``mlflow.parentRunId``, named ``trial-NNN <family>``): the candidate's hyperparameters under
their own names plus ``estimator`` / ``dataset`` / ``target``; metrics ``cv_<s>_mean`` /
``cv_<s>_std``, stepped ``cv_<s>_fold`` (step = fold), ``folds_done`` (its duration is the run's own
start and end); a pruned trial is named ``trial-NNN <family> pruned`` and reports
``partial_cv_<s>_mean`` instead of the mean (its folds were not all run). Bookkeeping tags for
resume: ``nba_mcp.kind``, ``nba_mcp.trial_number``, ``nba_mcp.trial_state`` (halving adds
``nba_mcp.bracket`` / ``nba_mcp.rung``, metric ``resource``).
Children are written with ``record_run(background=True)`` so logging stays off the search's
critical path.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mcp_server.evaluation import record_evaluation
from mcp_server.hyperparameter_tuning._mlflow_names import (
    CHILD_KIND,
    CONTEXT_PARAMS,
    FIDELITY_TAGS,
    KIND_TAG,
    LIBRARY_SOURCE,
    NOTE_TAG,
    PARENT_KIND,
    SEARCH_TAG,
    SOURCE_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
    MAX_PARAM,
    cv_metric_names,
    logged_score,
)
from mcp_server.hyperparameter_tuning._mlflow_resume import check_resumable
from mcp_server.hyperparameter_tuning._types import SearchedData, TrialRecord, TrialState, TuningResult

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class TuningRunLogger:
    def __init__(self, tracker: Tracker, *, scoring: str) -> None:
        self.tracker = tracker
        self.scoring = scoring
        self.names = cv_metric_names(scoring)
        self.sign = logged_score(scoring)[1]
        self.parent_run_id: str | None = None
        self.context: dict[str, str] = {}  # estimator / dataset / target, logged on every trial
        self._run_name = ""
        self._children: dict[int, Future | str] = {}
        self._best_curve: dict[int, float] = {}  # trial number -> the best logged score so far (the curve)

    def start(self, *, run_name: str, params: dict[str, Any], resume_from: str | None = None,
              searched_data: SearchedData | None = None) -> str:
        params = dict(params)
        if "objective" in params:  # what is tuned: an allow-listed estimator or an estimator class
            params["estimator"] = params.pop("objective")
        if searched_data is not None:
            params.update(dataset=searched_data.name, target=searched_data.target)
        self.context = {k: str(params[k]) for k in CONTEXT_PARAMS if params.get(k) is not None}
        self._run_name = run_name
        if resume_from:
            check_resumable(self.tracker, resume_from, params)
            self.parent_run_id = resume_from
            self.tracker.set_tags({"resumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, run_id=resume_from)
            # RUNNING while it works, owned by this process: a second resume is refused, and a
            # crash now leaves it to the next server's reaper like any other run.
            if hasattr(self.tracker, "reopen_run"):
                self.tracker.reopen_run(resume_from)
            return resume_from
        tags = {KIND_TAG: PARENT_KIND, SOURCE_TAG: LIBRARY_SOURCE, NOTE_TAG: self._parent_note(params)}
        self.parent_run_id = self.tracker.create_run(run_name=run_name, tags=tags)
        self.tracker.log_params(params, run_id=self.parent_run_id)
        if len(str(params.get("space", ""))) > MAX_PARAM:
            self.tracker.log_dict({"space": params["space"]}, "space.json", run_id=self.parent_run_id)
        if searched_data is not None:
            self.tracker.log_dataset(searched_data.frame, name=searched_data.name, source=searched_data.source,
                                     context="training", targets=searched_data.target, run_id=self.parent_run_id)
        return self.parent_run_id

    def _parent_note(self, params: dict[str, Any]) -> str:
        on = f" on {params['dataset']} (target {params['target']})" if params.get("dataset") else ""
        folds = f"{params['cv_folds']}-fold cross-validation" if params.get("cv_folds") else "one evaluation"
        return (f"{str(params.get('strategy', '')).capitalize()} search of {params.get('estimator', 'a model')} "
                f"hyperparameters{on}, scored by {self.names['mean']} over {folds}.")

    def log_trial(self, record: TrialRecord, *, best: TrialRecord | None = None) -> None:
        """One trial's child run (in the background); ``best``: the search's best trial so far,
        whose score is put on the parent when it changes."""
        names, sign = self.names, self.sign
        if best is not None and best.score is not None:
            # The optimization curve: one point per trial (step = trial number), drawn by the UI.
            self._log_best(record.number, best.score)
        folds = len(record.fold_scores)
        # No duration metric: the run's own start and end times are its duration (one, MLflow's).
        metrics: dict[str, float] = {"folds_done": folds}
        pruned = record.state is TrialState.PRUNED
        if record.score is not None:
            if pruned:  # a mean over the folds that ran: not comparable with full scores
                metrics[names["partial"]] = sign * record.score
            else:
                metrics.update({names["mean"]: sign * record.score, names["std"]: record.std or 0.0})
        tags = {KIND_TAG: CHILD_KIND, TRIAL_STATE_TAG: record.state.value, TRIAL_NUMBER_TAG: record.number,
                SOURCE_TAG: LIBRARY_SOURCE, NOTE_TAG: self._trial_note(record)}
        if record.error:
            tags["error"] = record.error[: MAX_PARAM]
        if record.rung is not None:  # successive halving
            tags.update({FIDELITY_TAGS["bracket"]: record.bracket, FIDELITY_TAGS["rung"]: record.rung})
            metrics["resource"] = record.resource
        end_ms = int(time.time() * 1000)
        family = record.params.get("estimator") or self.context.get("estimator", "")
        self._children[record.number] = self.tracker.record_run(
            # What differs first (the runs table cuts names): the trial, its family, its fate.
            run_name=f"trial-{record.number:03d} {family}".rstrip() + (" pruned" if pruned else ""),
            params={**self.context, **record.params},
            metrics=metrics,
            tags=tags,
            status="FAILED" if record.state is TrialState.FAILED else "FINISHED",
            parent_run_id=self.parent_run_id,
            metric_history={names["fold"]: [sign * s for s in record.fold_scores]} if record.fold_scores else None,
            start_time_ms=end_ms - int(record.duration_seconds * 1000),
            end_time_ms=end_ms,
            background=True,
        )

    def _trial_note(self, record: TrialRecord) -> str:
        of = f"Trial {record.number} of {self._run_name}"
        folds = len(record.fold_scores)
        at = f" at rung {record.rung} ({record.resource} resource)" if record.rung is not None else ""
        if record.state is TrialState.FAILED:
            return f"{of}{at}: failed: {(record.error or 'no error recorded').splitlines()[0][:300]}"
        if record.state is TrialState.PRUNED:
            return (f"{of}{at}: pruned after {folds} fold(s); {self.names['partial']} {self._shown(record.score)} "
                    "is not a full cross-validated score.")
        return f"{of}{at}: {self.names['mean']} {self._shown(record.score)} ± {_short(record.std)} over {folds} folds."

    def _shown(self, score: float | None) -> str:
        return _short(None if score is None else self.sign * score)

    def _log_best(self, number: int, score: float) -> None:
        if number in self._best_curve:
            return
        self._best_curve[number] = score
        self.tracker.log_metrics({self.names["best"]: self.sign * score}, step=number, run_id=self.parent_run_id)

    def finish(self, result: TuningResult, *, status: str) -> None:
        """Flush the children, fill their run ids, log the outcome on the parent and end it.

        A stopped search (KILLED: a cancel or a shutdown, which gives the whole stop 1.5 s) ends
        its parent as soon as the outcome is logged; its summary and plot follow on the ended run."""
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
        ended = False
        try:
            if result.best_params is not None:
                winner = {"best_estimator": result.estimator} if result.families and result.estimator else {}
                self.tracker.set_tags({**winner, **{f"best_{k}": v for k, v in result.best_params.items()}},
                                      run_id=run_id)
            self._finish_curve(result)
            metrics: dict[str, float] = {}
            if result.baseline_score is not None:  # a trivial model on the same folds: the bar to clear
                metrics[self.names["trivial"]] = self.sign * result.baseline_score
            if summary.mean_score is not None:  # over the trials, not over one trial's folds
                metrics.update({self.names["trials_mean"]: self.sign * summary.mean_score,
                                self.names["trials_std"]: summary.std_score or 0.0})
            if metrics:
                self.tracker.log_metrics(metrics, run_id=run_id)
            best = result.best_trial
            self.tracker.set_tags(
                {
                    # Bookkeeping, not quantities to chart: counters and timings in one tag.
                    SEARCH_TAG: json.dumps({
                        "n_trials": summary.total_trials, "n_complete": summary.n_complete,
                        "n_failed": summary.n_failed, "n_pruned": summary.n_pruned,
                        "n_fold_fits": summary.n_fold_fits, "n_fold_fits_saved": summary.n_fold_fits_saved,
                        "elapsed_seconds": summary.elapsed_seconds, "stopped_reason": summary.stopped_reason.value,
                        "fell_back_to_random": summary.fell_back_to_random,
                    }, separators=(",", ":")),
                    "best_trial": best.number if best else "none",
                    "best_trial_run_id": (best.run_id or "none") if best else "none",
                    NOTE_TAG: self._outcome_note(result),
                },
                run_id=run_id,
            )
            self.tracker.log_dict(result.model_dump(mode="json", exclude={"trials"}), "summary.json", run_id=run_id)
            if result.ensemble is not None:  # it beat the best trial on the same folds: from_search trains it
                ensemble = result.ensemble
                self.tracker.log_metrics({self.names["ensemble"]: self.sign * ensemble.cv_score,
                                          self.names["ensemble_std"]: ensemble.cv_std,
                                          self.names["ensemble_best_member"]: self.sign * ensemble.best_member_cv_score},
                                         run_id=run_id)
                self.tracker.set_tags({"ensemble_weights": ", ".join(
                    f"{name} {weight:.2f}" for name, weight in ensemble.weights().items())}, run_id=run_id)
                self.tracker.log_dict(ensemble.model_dump(mode="json"), "ensemble.json", run_id=run_id)
            record_evaluation(self.tracker, run_id, split=result.split, warnings=result.warnings)
            if status == "KILLED":
                ended = True
                self.tracker.end_run(status, run_id=run_id)
            figure = optimization_history_figure(result.trials, direction=summary.direction, scoring=self.scoring)
            self.tracker.log_figure(figure, "optimization_history.png", run_id=run_id)
        finally:
            if not ended:
                self.tracker.end_run(status, run_id=run_id)

    def _finish_curve(self, result: TuningResult) -> None:
        """The rest of the best-so-far curve (trials whose point was not logged as they ended), its last
        point the search's own best (halving picks it at the top rung)."""
        maximize = result.summary.direction.value == "maximize"
        running: float | None = None
        for trial in sorted(result.trials, key=lambda t: t.number):
            if trial.state is TrialState.COMPLETE and trial.score is not None:
                if running is None or (trial.score > running if maximize else trial.score < running):
                    running = trial.score
            if running is not None and trial.number not in self._best_curve:
                self._log_best(trial.number, running)
        if result.best_score is not None and self._best_curve:
            last = max(self._best_curve)
            if self._best_curve[last] != result.best_score:
                self._log_best(last + 1, result.best_score)

    def _outcome_note(self, result: TuningResult) -> str:
        summary, best = result.summary, result.best_trial
        found = (f"{self.names['best']} {self._shown(result.best_score)} (trial {best.number}, "
                 f"{', '.join(f'{k}={v}' for k, v in result.best_params.items())})") if best else "no complete trial"
        return (f"{self._parent_note_prefix()}{summary.total_trials} trials ({summary.n_complete} complete, "
                f"{summary.n_pruned} pruned, {summary.n_failed} failed), stopped by {summary.stopped_reason.value}: "
                f"{found}.")[:5000]

    def _parent_note_prefix(self) -> str:
        what = self.context.get("estimator", "model")
        on = f" on {self.context['dataset']}" if "dataset" in self.context else ""
        return f"Search of {what} hyperparameters{on}: "

    def abort(self, status: str) -> None:
        """End the parent after an error, keeping what was logged."""
        if self.parent_run_id is None:
            return
        try:
            self.tracker.flush()
        except Exception:  # noqa: BLE001 - the original error matters more
            logger.exception("flushing trial runs failed while ending search %s", self.parent_run_id)
        self.tracker.end_run(status, run_id=self.parent_run_id)
