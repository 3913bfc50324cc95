"""Champion promotion in the MLflow model registry, and predictions from registered models.

A version takes the ``champion`` alias only when it is better than the current champion on the
primary metric, read from each version's source run (lower is better for loss/error metrics such
as rmse, mae and log_loss), by more than the holdout's noise and not worse in cross-validation
beyond the folds' spread (``_evidence``), and is not flagged: a version whose run carries warnings
(``evaluation.warnings``: near-perfect score, leak suspects, CV/test gap, …) never takes an alias by
itself; ``force=True`` with a ``reason`` does it, and both are recorded. Every decision says why,
promoted or not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mcp_server import operator_metrics
from mcp_server.error_handling import InvalidRequestError, NotFoundError
from mcp_server.mlflow_integration import lower_is_better
from mcp_server.training_pipeline._evidence import Evidence, beats_beyond_noise

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp_server.mlflow_integration import Tracker
    from mcp_server.training_pipeline._noise import PairedGain

CHAMPION_ALIAS = "champion"
PRIMARY_METRIC_TAG = "primary_metric"  # on model versions
PRIMARY_METRIC_PARAM = "primary_metric"  # on pipeline runs
PIPELINE_PRIMARY_METRIC_TAG = "pipeline.primary_metric"  # on runs of earlier releases
PROMOTION_PREFIX = "promotion."  # the one set of promotion tags on a version's source run
MAX_PREDICT_ROWS = 10_000
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class PromotionDecision(BaseModel):
    """The champion comparison. ``promoted`` is true when the alias points at ``version`` afterwards."""

    model_name: str
    alias: str
    version: int
    primary_metric: str
    higher_is_better: bool
    new_metric: float | None = None
    previous_version: int | None = None
    previous_metric: float | None = None
    promoted: bool
    forced: bool = False
    flags: list[str] = Field(default_factory=list, description="Warning codes of the version (flagged when any)")
    force_reason: str | None = Field(default=None, description="Why the caller forced the alias, when forced")
    reason: str

    def as_tags(self, prefix: str = PROMOTION_PREFIX) -> dict[str, str]:
        """The last promotion decision about a run, as its ``promotion.*`` tags (the model name and
        primary metric are the run's params, its score its ``test_<metric>``, its flags its
        ``evaluation.warnings``: no tag repeats them)."""
        values = {
            "promoted": str(self.promoted).lower(), "alias": self.alias, "version": self.version,
            "previous_version": self.previous_version,
            "previous_metric": self.previous_metric, "forced": str(self.forced).lower(), "reason": self.reason,
            "force_reason": self.force_reason,
        }
        return {f"{prefix}{k}": str(v) for k, v in values.items() if v is not None}


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidRequestError(
            f"model_name must be 1-100 letters, digits, '_', '.' or '-' starting with a letter or digit, got {name!r}"
        )
    return name


def check_alias(alias: str) -> str:
    # MLflow reserves "latest" and version-like aliases ("v3").
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise InvalidRequestError(
            f"alias must start with a letter, use letters, digits, '_' or '-', and not be 'latest' or 'v<number>', got {alias!r}"
        )
    return alias


def decide_promotion(
    tracker: Tracker,
    model_name: str,
    version: int,
    *,
    primary_metric: str,
    alias: str = CHAMPION_ALIAS,
    new_metric: float | None = None,
    promote: bool = True,
    force: bool = False,
    flags: list[str] | None = None,
    force_reason: str | None = None,
    evidence: Evidence | None = None,
    paired: Callable[[dict[str, Any]], PairedGain | None] | None = None,
) -> PromotionDecision:
    """Compare ``version`` with the alias holder on ``primary_metric``; move the alias if it wins
    beyond the noise (``beats_beyond_noise``) and is not flagged (or if ``force``); with
    ``promote=False`` only compare. ``evidence``: the version's figures (default: read from its
    run); ``paired(holder)``: its gain over the holder on the same holdout rows, where the caller can
    score both.

    Reading the holder, comparing and moving the alias are one compare-and-set: they run under the
    tracker's promotion lock of the model, which holds across every process sharing the store, and
    the holder is read inside it. Without it two promotions at once both read the old champion and
    the later write won, the worse version included, both answering ``promoted``."""
    flags = list(dict.fromkeys(flags or []))
    higher = not lower_is_better(primary_metric)
    if new_metric is None:
        new_metric = _run_metric(tracker, tracker.get_model_version(model_name, version), primary_metric)
    base = dict(model_name=model_name, alias=alias, version=int(version), primary_metric=primary_metric,
                higher_is_better=higher, new_metric=new_metric, forced=force, flags=flags, force_reason=force_reason)
    if not promote:  # nothing moves: no lock
        decision = _compare_and_move(tracker, base, promote=False, evidence=evidence, paired=paired)
        operator_metrics.promotion_decided("compared")
        return decision
    # The holder before waiting, only to tell a caller that lost while it waited who won meanwhile.
    seen = _alias_holder(tracker, model_name, alias)
    with tracker.promotion_lock(model_name):
        decision = _compare_and_move(tracker, base, promote=True, evidence=evidence, paired=paired)
    operator_metrics.promotion_decided(_outcome(decision))
    winner = decision.previous_version
    if not decision.promoted and winner is not None and winner != (seen or {}).get("version"):
        return decision.model_copy(update={"reason": (
            f"v{winner} took {alias!r} while this call waited for a concurrent promotion of {model_name!r}; "
            f"{decision.reason}")})
    return decision


def _outcome(decision: PromotionDecision) -> str:
    """The decision as one of ``operator_metrics.PROMOTION_OUTCOMES``."""
    if decision.promoted:
        if decision.previous_version == decision.version:
            return "already_champion"
        return "forced" if decision.forced else "promoted"
    return "refused_flagged" if decision.flags else "kept"


def _compare_and_move(tracker: Tracker, base: dict[str, Any], *, promote: bool, evidence: Evidence | None = None,
                      paired: Any = None) -> PromotionDecision:
    """One decision on the holder read now; with ``promote``, call it under the promotion lock."""
    model_name, alias, version, metric = base["model_name"], base["alias"], base["version"], base["primary_metric"]
    force, flags = base["forced"], base["flags"]
    holder = _alias_holder(tracker, model_name, alias)
    previous_version = holder["version"] if holder else None
    previous_metric = _run_metric(tracker, holder, metric) if holder else None
    base = {**base, "previous_version": previous_version, "previous_metric": previous_metric}

    if previous_version == version:
        return PromotionDecision(**base, promoted=True, reason=f"version {version} already holds {alias!r}")
    wins, why = _wins(base["new_metric"], previous_metric, previous_version, metric, base["higher_is_better"], alias)
    if wins and holder and not force:  # better on the plain value: better beyond the noise too?
        new = evidence or Evidence.of_metrics(_source_metrics(tracker, tracker.get_model_version(model_name, version)),
                                              metric)
        wins, note = beats_beyond_noise(new, Evidence.of_metrics(_source_metrics(tracker, holder), metric),
                                        higher_is_better=base["higher_is_better"],
                                        paired=paired(holder) if paired else None,
                                        old_name=f"{alias} v{previous_version}")
        why = f"{why}; {note}"
    if flags and not force:
        wins, why = False, (f"flagged ({', '.join(flags)}): a flagged model never takes {alias!r} by itself; "
                            f"fix the cause, or promote_model with force=true and a reason; comparison: {why}")
    if force:
        wins, why = True, f"forced; comparison: {why}"
    if not promote:
        return PromotionDecision(**base, promoted=False, reason=f"comparison only (promote=false): {why}")
    if wins:
        tracker.set_model_alias(model_name, alias, version)
    return PromotionDecision(**base, promoted=wins, reason=why)


def _wins(new, previous, previous_version, metric, higher, alias) -> tuple[bool, str]:
    if previous_version is None:
        if new is None:
            return True, f"no current {alias!r}; the new version has no {metric!r} to report"
        return True, f"no current {alias!r}"
    if new is None:
        return False, (f"the new version has no {metric!r} in its source run; nothing to compare (an interrupted "
                       "run or registration: run the pipeline again, or register_model from a FINISHED run that "
                       "has the metric; force=true with a reason promotes it anyway)")
    if previous is None:
        return False, (f"{alias} v{previous_version} has no {metric!r} in its source run; "
                       "promote explicitly with force=true to replace it")
    better = new > previous if higher else new < previous
    relation = "better than" if better else ("equal to" if new == previous else "worse than")
    direction = "higher" if higher else "lower"
    return better, f"{metric} {new:.6g} is {relation} {alias} v{previous_version} ({previous:.6g}; {direction} is better)"


def _alias_holder(tracker: Tracker, model_name: str, alias: str) -> dict[str, Any] | None:
    try:
        return tracker.get_model_version(model_name, alias)
    except NotFoundError:
        return None


def _run_tags(tracker: Tracker, run_id: str) -> dict[str, str]:
    try:
        return tracker.get_run(run_id).tags
    except NotFoundError:
        return {}


def holdout_metric(metrics: dict[str, float], metric: str) -> float | None:
    """A run's holdout score on ``metric``: ``test_<metric>`` (bare ``<metric>`` in runs of earlier
    releases and in pipelines whose evaluation stage names it so)."""
    value = metrics.get(f"test_{metric}")
    return value if value is not None else metrics.get(metric)


def registration_metric(run: Any) -> tuple[str | None, float | None]:
    """The primary metric of a pipeline run (its param) and the run's holdout value of it."""
    metric = run.params.get(PRIMARY_METRIC_PARAM) or run.tags.get(PIPELINE_PRIMARY_METRIC_TAG)
    return metric, holdout_metric(run.metrics, metric) if metric else None


def _source_metrics(tracker: Tracker, version_info: dict[str, Any]) -> dict[str, float]:
    """The metrics of the run a version came from (empty when it has none)."""
    try:
        return tracker.get_run(version_info["run_id"]).metrics if version_info.get("run_id") else {}
    except NotFoundError:
        return {}


def _run_metric(tracker: Tracker, version_info: dict[str, Any], metric: str) -> float | None:
    run_id = version_info.get("run_id")
    if not run_id:
        return None
    try:
        return holdout_metric(tracker.get_run(run_id).metrics, metric)
    except NotFoundError:
        return None


def promote_model(
    tracker: Tracker,
    model_name: str,
    version: int,
    *,
    alias: str = CHAMPION_ALIAS,
    force: bool = False,
    primary_metric: str | None = None,
    reason: str | None = None,
) -> PromotionDecision:
    """Give ``alias`` to ``version`` if it beats the holder on the primary metric and is not flagged
    (or with ``force``; a flagged version needs ``force`` and a ``reason``). Without
    ``primary_metric`` the one recorded when the version was registered is used."""
    from mcp_server.evaluation import WARNINGS_TAG, flag_codes

    check_model_name(model_name)
    check_alias(alias)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidRequestError(f"version must be a positive integer, got {version!r}")
    info = tracker.get_model_version(model_name, version)
    metric = primary_metric or info.get("tags", {}).get(PRIMARY_METRIC_TAG)
    if not metric and info.get("run_id"):
        metric = registration_metric(tracker.get_run(info["run_id"]))[0]
    if not metric:
        raise InvalidRequestError(
            f"primary_metric is required: version {version} of {model_name!r} records none (if its registration "
            "was interrupted, register the model again from a FINISHED run with register_model, or pass primary_metric)"
        )
    tags = info.get("tags", {})
    if WARNINGS_TAG not in tags and info.get("run_id"):  # registered by hand: the run says it
        tags = _run_tags(tracker, info["run_id"])
    flags = flag_codes(tags)
    if flags and force and not (reason or "").strip():
        raise InvalidRequestError(
            f"version {version} of {model_name!r} is flagged ({', '.join(flags)}); forcing it needs a reason "
            "(why the warnings do not apply), which is recorded"
        )
    decision = decide_promotion(tracker, model_name, version, primary_metric=metric, alias=alias, force=force,
                                new_metric=_run_metric(tracker, info, metric), flags=flags,
                                force_reason=reason if force else None)
    if info.get("run_id"):  # the decision made under the lock: the tags say what stuck
        tracker.set_tags(decision.as_tags(), run_id=info["run_id"])
        tracker.flush()
    return decision


# --- predictions ---------------------------------------------------------------------------------
def load_registered_model(tracker: Tracker, model_name: str, alias_or_version: int | str) -> Any:
    check_model_name(model_name)
    ref = str(alias_or_version)
    tracker.get_model_version(model_name, ref if ref.isdigit() else check_alias(ref))  # missing: lists what exists
    if ref.isdigit():
        return tracker.load_model(f"models:/{model_name}/{int(ref)}")
    return tracker.load_model(f"models:/{model_name}@{check_alias(ref)}")


def predict(tracker: Tracker, model_name: str, alias_or_version: int | str, rows: list[dict[str, Any]]) -> list:
    """Predictions of a registered model for raw feature rows (column name -> value)."""
    model = load_registered_model(tracker, model_name, alias_or_version)
    frame = _rows_to_frame(model, rows, model_name)
    try:
        return model.predict(frame).tolist()
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"rows could not be scored by {model_name!r}: {exc}") from None


def prediction_warnings(
    tracker: Tracker, model_name: str, alias_or_version: int | str, rows: list[dict[str, Any]]
) -> list[Any]:
    """Per-row warnings where the rows leave what the model saw in training (unseen categories,
    numbers far outside the training range); empty for models saved without a profile."""
    from mcp_server.evaluation import model_profile, row_warnings

    model = load_registered_model(tracker, model_name, alias_or_version)
    return row_warnings(model_profile(model), _rows_to_frame(model, rows, model_name))


def predict_proba(
    tracker: Tracker, model_name: str, alias_or_version: int | str, rows: list[dict[str, Any]]
) -> list[dict[str, float]]:
    """Class probabilities (class label as text -> probability) for each row, for classifiers."""
    model = load_registered_model(tracker, model_name, alias_or_version)
    if not hasattr(model, "predict_proba"):
        raise InvalidRequestError(f"model {model_name!r} ({alias_or_version}) does not give class probabilities")
    frame = _rows_to_frame(model, rows, model_name)
    try:
        probabilities = model.predict_proba(frame)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidRequestError(f"rows could not be scored by {model_name!r}: {exc}") from None
    classes = [str(c) for c in model.classes_]
    return [dict(zip(classes, map(float, row), strict=True)) for row in probabilities]


def _rows_to_frame(model: Any, rows: list[dict[str, Any]], model_name: str):
    import pandas as pd

    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_PREDICT_ROWS:
        size = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise InvalidRequestError(f"rows must be a list of 1 to {MAX_PREDICT_ROWS} objects, got {size}")
    if not all(isinstance(row, dict) for row in rows):
        raise InvalidRequestError("rows must be objects mapping column names to values")
    required = [str(c) for c in getattr(model, "feature_names_in_", [])]
    for index, row in enumerate(rows):
        missing = [c for c in required if c not in row]
        if missing:
            raise InvalidRequestError(
                f"row {index} is missing required columns for {model_name!r}: {', '.join(missing)}"
            )
    frame = pd.DataFrame.from_records(rows)
    if required:
        frame = frame[required]  # drop extra keys, restore the training column order
    _check_numeric_columns(model, frame, model_name)
    for column in frame.columns:
        values = frame[column].dropna()
        if frame[column].dtype == object and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            # JSON numbers mixed with nulls arrive as objects; to_numeric makes them (and an
            # all-null column) float with NaN, which the model's imputers handle.
            frame[column] = pd.to_numeric(frame[column])
    return frame


MAX_TYPE_PROBLEMS_SHOWN = 5


def _check_numeric_columns(model: Any, frame: Any, model_name: str) -> None:
    """Text in a column the model was trained on as numbers, named before the model sees it (its
    imputer would fail with "could not convert string to float" and no column): the training
    profile saved with the model says which columns are numeric. Numbers sent as text ("10") are
    converted in place."""
    import pandas as pd

    from mcp_server.evaluation import model_profile

    profile = model_profile(model)
    if profile is None:
        return
    problems: list[str] = []
    for column in (c for c in profile.numeric if c in frame.columns):
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values.dtype):  # text arrives as object or pandas' str dtype
            continue
        text = values.map(lambda v: isinstance(v, str))
        if not text.any():
            continue
        parsed = values.map(lambda v: pd.to_numeric(v, errors="coerce") if isinstance(v, str) else v)
        bad = text & parsed.isna()
        for position in bad.to_numpy().nonzero()[0][:MAX_TYPE_PROBLEMS_SHOWN]:
            problems.append(f"rows[{position}].{column} = {values.iloc[position]!r}")
        if not bad.any():
            frame[column] = pd.to_numeric(parsed)
    if problems:
        raise InvalidRequestError(
            f"rows: {', '.join(problems[:MAX_TYPE_PROBLEMS_SHOWN])}: expected a number (or null for a missing "
            f"value); {model_name!r} was trained on these columns as numbers",
            fix="send each of these columns as a JSON number or null")
