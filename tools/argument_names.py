"""What an argument may be called, read from a tool's input schema: the fields at a path, the name a
caller most likely meant (same but case, a word agents use for it, a close spelling), and a value
shown back within bounds. ``tools.arguments`` builds its answers from these.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Names agents reach for that mean one of ours: suggested, never accepted (the names accepted
# beside a field are mcp_server.field_aliases, the same in every tool).
SYNONYMS = {
    "n_trials": "max_trials", "n_iter": "max_trials", "trials": "max_trials", "budget": "max_trials",
    "n_calls": "max_trials", "folds": "cv_folds", "cv": "cv_folds", "n_folds": "cv_folds",
    "metric": "scoring", "model": "estimator", "algorithm": "estimator", "timeout": "timeout_seconds",
    "drop_columns": "drop", "exclude": "drop", "exclude_columns": "drop", "label": "target",
    "target_column": "target", "columns": "features", "param_space": "space", "search_space": "space",
    "params_grid": "space", "param_grid": "space", "hyperparameters": "params", "random_state": "seed",
    "wait": "wait_seconds", "name": "model_name", "version_number": "version",
    "data": "dataset", "dataset_name": "dataset", "data_set": "dataset", "dataset_id": "dataset",
}
MAX_SHOWN = 300  # characters of a rejected value shown back


def allowed_fields(schema: Mapping[str, Any] | None, loc: Sequence[Any]) -> list[str]:
    node = resolve_node(schema, schema)
    for part in loc:
        if node is None:
            return []
        if isinstance(part, int):
            node = resolve_node(schema, node.get("items"))
        elif "properties" in node and part in node["properties"]:
            node = resolve_node(schema, node["properties"][part])
        else:
            node = resolve_node(schema, node.get("additionalProperties"))
    return list((node or {}).get("properties", {}))


def resolve_node(root: Mapping[str, Any] | None, node: Any) -> Mapping[str, Any] | None:
    """Follow ``$ref`` and pick the object member of ``anyOf`` (``X | None`` fields)."""
    for _ in range(10):
        if not isinstance(node, Mapping) or root is None:
            return None
        if "$ref" in node:
            node = root.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1])
        elif "anyOf" in node:
            node = next((m for m in node["anyOf"] if isinstance(m, Mapping) and m.get("type") != "null"), None)
        else:
            return node
    return None


def closest_name(given: Any, options: Sequence[Any]) -> str | None:
    """The option ``given`` most likely meant: same but case, a known synonym, else a close spelling."""
    names = [str(o) for o in options]
    if not isinstance(given, str):
        return None
    same_but_case = [n for n in names if n.lower() == given.lower()]
    if same_but_case:
        return same_but_case[0]
    if SYNONYMS.get(given) in names:
        return SYNONYMS[given]
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return close[0] if close else None


def options_text(options: Sequence[Any]) -> str | None:
    names = [str(o) for o in options]
    return ", ".join(names) if names and len(names) <= 40 else None


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
