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

import logging
import statistics
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.evaluation import record_evaluation
from mcp_server.hyperparameter_tuning._space import SearchSpace
from mcp_server.hyperparameter_tuning._types import SearchedData, TrialRecord, TrialState, TuningResult

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

logger = logging.getLogger(__name__)

KIND_TAG = "nba_mcp.kind"
PARENT_KIND = "tuning_search"
CHILD_KIND = "tuning_trial"
TRIAL_NUMBER_TAG = "nba_mcp.trial_number"
TRIAL_STATE_TAG = "nba_mcp.trial_state"
FIDELITY_TAGS = {"bracket": "nba_mcp.bracket", "rung": "nba_mcp.rung"}
NOTE_TAG = "mlflow.note.content"
SOURCE_TAG = "mlflow.source.name"
LIBRARY_SOURCE = "mcp_server.hyperparameter_tuning"
# Parent params that say what was searched, copied onto every trial so each run names them.
CONTEXT_PARAMS = ("estimator", "dataset", "target")
# Parent params a resumed search must match, or it would mix two different searches.
RESUME_KEYS = ("strategy", "halving", "space", "cv", "scoring", "seed", "direction", "split.kind", "split.column",
               "split.test_size", "split.seed", "split.gap")
_MAX_PARAM = 6000


def cv_metric_names(scoring: str) -> dict[str, str]:
    """The metric names of a search scored by ``scoring`` (one place, read by logging and resume)."""
    return {
        "mean": f"cv_{scoring}_mean", "std": f"cv_{scoring}_std", "fold": f"cv_{scoring}_fold",
        "partial": f"partial_cv_{scoring}_mean", "best": f"best_cv_{scoring}",
        "trials_mean": f"trials_cv_{scoring}_mean", "trials_std": f"trials_cv_{scoring}_std",
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
        old, new = run.params.get(key), str(params.get(key))[: _MAX_PARAM]
        if old is not None and old != new:
            raise InvalidRequestError(
                f"resume_from={run_id!r} ran with {key}={old!r}, but this search has {key}={new!r}; "
                "a resumed search must use the same settings")


class TuningRunLogger:
    def __init__(self, tracker: Tracker, *, scoring: str) -> None:
        self.tracker = tracker
        self.scoring = scoring
        self.names = cv_metric_names(scoring)
        self.parent_run_id: str | None = None
        self.context: dict[str, str] = {}  # estimator / dataset / target, logged on every trial
        self._run_name = ""
        self._children: dict[int, Future | str] = {}
        self._best_logged: int | None = None  # the trial whose score is the parent's best so far

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
        logged = {k: (str(v)[: _MAX_PARAM]) for k, v in params.items()}
        self.tracker.log_params(logged, run_id=self.parent_run_id)
        if len(str(params.get("space", ""))) > _MAX_PARAM:
            self.tracker.log_dict({"space": params["space"]}, "space.json", run_id=self.parent_run_id)
        if searched_data is not None:
            self.tracker.log_dataset(searched_data.frame, name=searched_data.name, source=searched_data.source,
                                     context="training", targets=searched_data.target, run_id=self.parent_run_id)
        return self.parent_run_id

    def _parent_note(self, params: dict[str, Any]) -> str:
        on = f" on {params['dataset']} (target {params['target']})" if params.get("dataset") else ""
        return (f"{str(params.get('strategy', '')).capitalize()} search of {params.get('estimator', 'a model')} "
                f"hyperparameters{on}, scored by {self.scoring} with {params.get('cv', 'cross-validation')}.")

    def log_trial(self, record: TrialRecord, *, best: TrialRecord | None = None) -> None:
        """One trial's child run (in the background); ``best``: the search's best trial so far,
        whose score is put on the parent when it changes."""
        names = self.names
        if best is not None and best.score is not None and best.number != self._best_logged:
            self._best_logged = best.number
            self.tracker.log_metrics({names["best"]: best.score}, run_id=self.parent_run_id)
        folds = len(record.fold_scores)
        metrics: dict[str, float] = {"duration_seconds": record.duration_seconds, "folds_done": folds}
        pruned = record.state is TrialState.PRUNED
        if record.score is not None:
            if pruned:  # a mean over the folds that ran: not comparable with full scores
                metrics[names["partial"]] = record.score
            else:
                metrics.update({names["mean"]: record.score, names["std"]: record.std or 0.0})
        tags = {KIND_TAG: CHILD_KIND, TRIAL_STATE_TAG: record.state.value, TRIAL_NUMBER_TAG: record.number,
                SOURCE_TAG: LIBRARY_SOURCE, NOTE_TAG: self._trial_note(record)}
        if record.error:
            tags["error"] = record.error[: _MAX_PARAM]
        if record.rung is not None:  # successive halving
            tags.update({FIDELITY_TAGS["bracket"]: record.bracket, FIDELITY_TAGS["rung"]: record.rung})
            metrics["resource"] = record.resource
        end_ms = int(time.time() * 1000)
        self._children[record.number] = self.tracker.record_run(
            run_name=f"trial-{record.number:03d}" + ("-pruned" if pruned else ""),
            params={**self.context, **record.params},
            metrics=metrics,
            tags=tags,
            status="FAILED" if record.state is TrialState.FAILED else "FINISHED",
            parent_run_id=self.parent_run_id,
            metric_history={names["fold"]: list(record.fold_scores)} if record.fold_scores else None,
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
            return (f"{of}{at}: pruned after {folds} fold(s); partial {self.scoring} mean {_short(record.score)} "
                    "is not a full cross-validated score.")
        return f"{of}{at}: {self.scoring} {_short(record.score)} ± {_short(record.std)} over {folds} folds."

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
                self.tracker.log_metrics({self.names["best"]: result.best_score}, run_id=run_id)
            metrics = {
                "n_trials": summary.total_trials, "n_complete": summary.n_complete,
                "n_failed": summary.n_failed, "n_pruned": summary.n_pruned,
                "elapsed_seconds": summary.elapsed_seconds, "n_fold_fits": summary.n_fold_fits,
                "n_fold_fits_saved": summary.n_fold_fits_saved,
            }
            if result.baseline_score is not None:  # a trivial model on the same folds: the bar to clear
                metrics[f"trivial_cv_{self.scoring}"] = result.baseline_score
            if summary.mean_score is not None:  # over the trials, not over one trial's folds
                metrics.update({self.names["trials_mean"]: summary.mean_score,
                                self.names["trials_std"]: summary.std_score or 0.0})
            self.tracker.log_metrics(metrics, run_id=run_id)
            best = result.best_trial
            self.tracker.set_tags(
                {
                    "stopped_reason": summary.stopped_reason.value,
                    "fell_back_to_random": summary.fell_back_to_random,
                    "best_trial": best.number if best else "none",
                    "best_trial_run_id": (best.run_id or "none") if best else "none",
                    NOTE_TAG: self._outcome_note(result),
                },
                run_id=run_id,
            )
            self.tracker.log_dict(result.model_dump(mode="json", exclude={"trials"}), "summary.json", run_id=run_id)
            if result.ensemble is not None:  # it beat the best trial on the same folds: from_search trains it
                ensemble = result.ensemble
                self.tracker.log_metrics({f"ensemble_cv_{self.scoring}": ensemble.cv_score,
                                          f"ensemble_cv_{self.scoring}_std": ensemble.cv_std,
                                          f"ensemble_best_member_cv_{self.scoring}": ensemble.best_member_cv_score},
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

    def _outcome_note(self, result: TuningResult) -> str:
        summary, best = result.summary, result.best_trial
        found = (f"best {self.names['best']} {_short(result.best_score)} (trial {best.number}, "
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
            score = metrics.get(names["mean"], metrics.get(names["partial"], metrics.get("mean_score")))
            history = tracker.get_metric_history(run.run_id, names["fold"]) or tracker.get_metric_history(
                run.run_id, "fold_score")
            folds = [p.value for p in sorted(history, key=lambda p: p.step)]
            std = metrics.get(names["std"], metrics.get("std_score"))
            if std is None and folds:  # a pruned trial logs no std: the loop's, from its folds
                std = statistics.pstdev(folds) if len(folds) > 1 else 0.0
            records.append(
                TrialRecord(
                    number=int(number), params=params,
                    state=TrialState(state), score=score, std=std,
                    fold_scores=folds,
                    duration_seconds=metrics.get("duration_seconds", 0.0), run_id=run.run_id,
                    **_fidelity_tags(run),
                )
            )
        if not token:
            break
    return sorted(records, key=lambda r: r.number), next_number
