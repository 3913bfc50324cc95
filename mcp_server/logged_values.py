"""How a value is written as text to the tracking store: one rendering for params and tags, and one
name and sign for a score (``logged_score``), shared with the tools' answers.

A person reads these in the MLflow UI beside JSON documents and our tools' answers, so they are
JSON-style literals: ``true`` / ``false`` / ``null``, containers as JSON, a dataclass or pydantic
model as the JSON of its fields, never a Python repr (``True``, ``None``, ``{'a': 1}``,
``MedianPruner(n_startup_trials=5)``). Readers go back with ``json.loads`` (``parse_logged``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

MAX_LOGGED_LENGTH = 6000  # MLflow's limit on a param value


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def logged_text(value: Any) -> str:
    """``value`` as the store keeps it (at most MLflow's 6000 characters)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, type(None), dict, list, tuple)) or dataclasses.is_dataclass(value) or hasattr(
            value, "model_dump"):
        text = json.dumps(_jsonable(value) if not isinstance(value, (bool, type(None), dict, list, tuple)) else value,
                          default=_jsonable)
    else:
        text = str(value)
    return text[:MAX_LOGGED_LENGTH]


def parse_logged(text: str) -> Any:
    """A logged value back to a typed one where it reads as JSON (runs of earlier releases wrote
    Python literals: ``True`` / ``False`` / ``None`` read back too)."""
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(text, text)


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
