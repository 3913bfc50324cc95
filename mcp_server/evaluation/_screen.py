"""The first step of every tuning and pipeline job: screen the columns a model will use.

Identifier, date and entity columns among the features, and features (pairs, or a weighted sum of
several) that predict the target almost alone, are error-level findings. With ``leak_check='stop'``
(the default) they stop the job before any training, with the columns to drop; with ``'warn'`` the
job goes on and its result carries ``leak_suspect`` warnings, so its model is flagged and never
promoted by itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from mcp_server import operator_metrics
from mcp_server.error_handling import InvalidRequestError
from mcp_server.evaluation._warnings import ModelWarning, leak_suspects

if TYPE_CHECKING:
    import pandas as pd

    from mcp_server.data_validation_pipeline import Issue, ValidationResult

LeakCheck = Literal["stop", "warn"]
_DROP_ADVICE = re.compile(r"; drop (?:it|them)\b")
LEAK_RULES = frozenset({"identifier_column", "datetime_column", "entity_column", "target_copy", "target_leak",
                        "pair_leak", "linear_leak"})


def screen_features(
    frame: pd.DataFrame, target: str, features: list[str], *, dataset: str = "dataset", settings: Any = None,
    extra_columns: list[str] = (),
) -> ValidationResult:
    """Validate the columns a model will use (features, target, and ``extra_columns`` such as the
    split column) with identifiers, dates and leaks among the features as errors."""
    from mcp_server.data_validation_pipeline import DataValidationPipeline

    used = list(dict.fromkeys([*features, target, *extra_columns]))
    return DataValidationPipeline.for_settings(settings).validate(frame[used], dataset, target=target,
                                                                  features=features)


def leak_errors(result: ValidationResult) -> list[Issue]:
    return [issue for issue in result.issues if issue.severity == "error" and issue.rule in LEAK_RULES]


def entity_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Every column naming repeating entities (features or not: a dropped player name still groups rows)."""
    from mcp_server.data_validation_pipeline import entity_reason, identifier_reason, is_datetime_like

    return [
        str(c) for c in frame.columns
        if str(c) not in exclude and entity_reason(frame[c], str(c))
        and not identifier_reason(frame[c], str(c)) and not is_datetime_like(frame[c])
    ]


def apply_leak_check(findings: list[Issue], leak_check: LeakCheck) -> list[ModelWarning]:
    """Stop (raise, naming the columns to drop) or turn the findings into result warnings."""
    if not findings:
        return []
    if leak_check == "warn":
        return leak_suspects(findings)
    if leak_check != "stop":
        raise InvalidRequestError(f"leak_check must be 'stop' or 'warn', got {leak_check!r}")
    operator_metrics.leak_screen_stopped()
    raise InvalidRequestError(stop_message(findings))


def stop_message(findings: list[Issue]) -> str:
    drop = list(dict.fromkeys(c for issue in findings for c in issue.drop))
    dates = [issue.column for issue in findings if issue.rule == "datetime_column"]
    entities = [issue.column for issue in findings if issue.rule == "entity_column"]
    lines = "; ".join(_DROP_ADVICE.split(issue.message, maxsplit=1)[0] for issue in findings)
    text = f"data checks stopped this job before training: {lines}. Fix: drop={drop!r}"
    if dates:
        text += f" (and to test on later dates: split={{'kind': 'time', 'column': {dates[0]!r}}})"
    if entities:
        text += f" (and to test on unseen ones: split={{'kind': 'group', 'column': {entities[0]!r}}})"
    return text + ("; or pass leak_check='warn' to train anyway (the model is then flagged and never "
                   "promoted automatically)")
