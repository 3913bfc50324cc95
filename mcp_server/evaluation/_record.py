"""How a split and the warnings are written to a run: a few tags to filter on, two JSON artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_server.evaluation._split import SplitRecord
from mcp_server.evaluation._warnings import ModelWarning

if TYPE_CHECKING:
    from mcp_server.mlflow_integration import Tracker

FLAGGED_TAG = "evaluation.flagged"
WARNINGS_TAG = "evaluation.warnings"
SPLIT_TAG = "evaluation.split"
TEST_DIGEST_TAG = "evaluation.test_digest"


def evaluation_tags(split: SplitRecord | None, warnings: list[ModelWarning]) -> dict[str, str]:
    tags = {FLAGGED_TAG: str(bool(warnings)).lower(),
            WARNINGS_TAG: ",".join(dict.fromkeys(w.code for w in warnings)) or "none"}
    if split is not None:
        tags |= {SPLIT_TAG: split.description, TEST_DIGEST_TAG: split.test_digest}
    return tags


def record_evaluation(tracker: Tracker, run_id: str, *, split: SplitRecord | None, warnings: list[ModelWarning]) -> None:
    """Tags ``evaluation.*``; ``warnings.json``; ``split.json`` with the test row ids. A run carries
    the split as its ``split.*`` params, so not ``evaluation.split`` too (a model version, which has
    no params, keeps it)."""
    tags = evaluation_tags(split, warnings)
    tags.pop(SPLIT_TAG, None)
    tracker.set_tags(tags, run_id=run_id)
    tracker.log_dict([w.model_dump() for w in warnings], "warnings.json", run_id=run_id)
    if split is not None:
        tracker.log_dict(split.model_dump(mode="json") | {"test_rows": split.test_rows}, "split.json", run_id=run_id)


def flag_codes(tags: dict[str, str]) -> list[str]:
    """The warning codes recorded on a run or model version (empty when clean or unknown)."""
    value = tags.get(WARNINGS_TAG, "none")
    return [] if value in ("", "none") else value.split(",")
