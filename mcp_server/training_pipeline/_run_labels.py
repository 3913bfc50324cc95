"""What a standard pipeline run is called and how its description starts: what differs first.

The MLflow runs table cuts names and descriptions at its column width, so both lead with what tells
runs apart: the run's role, then the estimator, data set and target (``forced random_forest
nba:raptor predator_total``); the description's first words are the outcome (``FLAGGED
(leak_suspect, entity_overlap): …``, ``STOPPED (data_validation): …``, ``CHAMPION: …``, ``Not
champion: …``). Roles:

- ``tuned``: trained from a search's winner (``from_search``);
- ``baseline``: the estimator's defaults; ``trained``: hyperparameters given by the caller;
- ``forced``: trained with ``leak_check='warn'`` and flagged; ``flagged``: flagged otherwise;
- ``stopped``: failed or cancelled before its model was judged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcp_server.training_pipeline._types import PipelineRun, PipelineStatus

if TYPE_CHECKING:
    from mcp_server.evaluation import ModelWarning
    from mcp_server.training_pipeline._registry import PromotionDecision

# Longest description kept whole in the run's tag; a longer one is cut at a word and its whole text
# is the artifact STOPPED_ARTIFACT (MLflow keeps 5000 characters of a description; the UI shows less).
MAX_DESCRIPTION = 3000
STOPPED_ARTIFACT = "stopped.txt"


def run_role(request: Any, *, warnings: Sequence[ModelWarning] = (), status: PipelineStatus | None = None) -> str:
    if status is not None and status not in (PipelineStatus.COMPLETED, PipelineStatus.RUNNING):
        return "stopped"
    if warnings:
        return "forced" if request.leak_check == "warn" else "flagged"
    if request.from_search:
        return "tuned"
    return "trained" if request.params or request.ensemble else "baseline"


def run_name(role: str, request: Any) -> str:
    return f"{role} {request.estimator} {request.dataset} {request.target}"[:250]


def flag_list(warnings: Sequence[ModelWarning]) -> str:
    return ", ".join(dict.fromkeys(w.code for w in warnings))


def model_label(role: str, request: Any, task: str, warnings: Sequence[ModelWarning]) -> tuple[str, str]:
    """The logged model's name (``<role>-<estimator>``, never ``model``) and description."""
    flags = f" Flagged: {flag_list(warnings)}." if warnings else ""
    return (f"{role}-{request.estimator}",
            f"{role.capitalize()} {request.estimator} {task} model of {request.target} on {request.dataset}.{flags}")


def cut_at_word(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters at a word boundary, never inside a word."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(" ,;:")


def _scores(run: PipelineRun, primary: str) -> str:
    order = [f"test_{primary}", f"cv_{primary}_mean"]
    shown = [k for k in order if k in run.metrics] or sorted(run.metrics, key=lambda k: (not k.startswith("test_"), k))[:2]
    return ", ".join(f"{k} {run.metrics[k]:.4g}" for k in shown)


def _stop_message(run: PipelineRun) -> str:
    error = run.error or "no error recorded"
    # "stage data_validation failed: InvalidRequestError: <message>" -> the message.
    return re.sub(r"^stage \w+ failed: (\w+Error: )?", "", error)


def outcome_description(run: PipelineRun, *, primary: str, note: str, warnings: Sequence[ModelWarning],
                        promotion: PromotionDecision | None) -> tuple[str, str | None]:
    """The run's description, outcome first, and the whole text when the description had to be cut
    (the caller writes it to ``STOPPED_ARTIFACT``)."""
    if run.status is not PipelineStatus.COMPLETED:
        where = run.failed_stage or ("cancelled" if run.status is PipelineStatus.CANCELLED else "")
        head = f"STOPPED{f' ({where})' if where else ''}: {_stop_message(run)}"
        whole = f"{head} — {note}"
        if len(whole) <= MAX_DESCRIPTION:
            return whole, None
        where_it_is = f" … (whole text: artifact {STOPPED_ARTIFACT})"
        return cut_at_word(whole, MAX_DESCRIPTION - len(where_it_is)) + where_it_is, whole
    scores = _scores(run, primary)
    if warnings:
        return f"FLAGGED ({flag_list(warnings)}): not champion; {scores}. {note}", None
    if promotion is not None and promotion.promoted:
        return f"CHAMPION: {scores}. {note}", None
    why = f" ({promotion.reason.rstrip('.')})" if promotion is not None else ""
    return f"Not champion: {scores}{why}. {note}", None
