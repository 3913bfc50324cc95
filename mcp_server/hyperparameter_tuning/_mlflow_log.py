"""MLflow layout of a search: one parent run, one child run per trial, a history plot on the parent.

Names follow ``docs/tracking.md``; ``<s>`` is the scoring name (e.g. ``roc_auc``).

Parent: params ``estimator``, ``dataset``, ``target``, strategy / space (JSON) / cv / scoring / seed /
direction / split; its data set as a ``training`` input; at the end metrics ``best_cv_<s>`` (the best
trial's mean over folds), ``trials_cv_<s>_mean`` / ``_std`` (over the trials), counts, tags
``best_<param>`` / ``best_trial`` / ``stopped_reason``, ``summary.json`` and
``optimization_history.png``; ends FINISHED, KILLED (cancelled) or FAILED.
Child (``mlflow.parentRunId``): the candidate's hyperparameters under their own names plus
``estimator`` / ``dataset`` / ``target``; metrics ``cv_<s>_mean`` / ``cv_<s>_std``, stepped
``cv_<s>_fold`` (step = fold), ``folds_done``, ``duration_seconds``; a pruned trial is named
``trial-NNN-pruned`` and reports ``partial_cv_<s>_mean`` instead of the mean (its folds were not
all run). Bookkeeping tags for resume: ``nba_mcp.kind``, ``nba_mcp.trial_number``,
``nba_mcp.trial_state`` (halving adds ``nba_mcp.bracket`` / ``nba_mcp.rung``, metric ``resource``).
Children are written with ``record_run(background=True)`` so logging stays off the search's
critical path.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.evaluation import record_evaluation
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._types import SearchedData, TrialRecord, TrialState, TuningResult
from mcp_server.logged_values import logged_text, parse_logged

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)

KIND_TAG = "nba_mcp.kind"
PARENT_KIND = "tuning_search"
CHILD_KIND = "tuning_trial"
TRIAL_NUMBER_TAG = "nba_mcp.trial_number"
TRIAL_STATE_TAG = "nba_mcp.trial_state"
FIDELITY_TAGS = {"bracket": "nba_mcp.bracket", "rung": "nba_mcp.rung"}
SEARCH_TAG = "nba_mcp.search"  # JSON: the search's counters and timings (bookkeeping, not metrics)
NOTE_TAG = "mlflow.note.content"
SOURCE_TAG = "mlflow.source.name"
LIBRARY_SOURCE = "mcp_server.hyperparameter_tuning"
# Parent params that say what was searched, copied onto every trial so each run names them.
CONTEXT_PARAMS = ("estimator", "dataset", "target")
# Parent params a resumed search must match, or it would mix two different searches.
RESUME_KEYS = ("strategy", "halving", "space", "cv_folds", "scoring", "seed", "direction", "split.kind", "split.column",
               "split.test_size", "split.seed", "split.gap")
_MAX_PARAM = 6000


# scikit-learn negates the error scorers so that higher is better; a person and the pipeline's own
# metrics read the error itself (``cv_rmse_mean`` = 0.98, not ``cv_neg_root_mean_squared_error_mean``
# = -0.98). The names it reads instead; any other ``neg_<name>`` reads as ``<name>``.
_ERROR_NAMES = {
    "neg_root_mean_squared_error": "rmse", "neg_mean_squared_error": "mse", "neg_mean_absolute_error": "mae",
    "neg_root_mean_squared_log_error": "rmsle", "neg_mean_squared_log_error": "msle",
    "neg_median_absolute_error": "median_ae", "neg_mean_absolute_percentage_error": "mape",
}


def logged_score(scoring: str) -> tuple[str, float]:
    """The name a score of ``scoring`` is logged under and the sign that turns the scorer's value into
    the logged one (and back): the one place the scorer's sign is handled."""
    if scoring.startswith("neg_"):
        return _ERROR_NAMES.get(scoring, scoring.removeprefix("neg_")), -1.0
    return scoring, 1.0


def cv_metric_names(scoring: str) -> dict[str, str]:
    """The metric names of a search scored by ``scoring`` (one place, read by logging and resume);
    their values are the scorer's times ``logged_score(scoring)[1]``."""
    name, _ = logged_score(scoring)
    return {
        "mean": f"cv_{name}_mean", "std": f"cv_{name}_std", "fold": f"cv_{name}_fold",
        "partial": f"partial_cv_{name}_mean", "best": f"best_cv_{name}",
        "trials_mean": f"trials_cv_{name}_mean", "trials_std": f"trials_cv_{name}_std",
        "trivial": f"trivial_cv_{name}", "ensemble": f"ensemble_cv_{name}",
        "ensemble_std": f"ensemble_cv_{name}_std", "ensemble_best_member": f"ensemble_best_member_cv_{name}",
    }


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


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
        if len(str(params.get("space", ""))) > _MAX_PARAM:
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
            tags["error"] = record.error[: _MAX_PARAM]
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
        found = (f"best {self.names['best']} {self._shown(result.best_score)} (trial {best.number}, "
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
