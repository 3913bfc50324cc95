"""Honest evaluation, shared by tuning and pipelines.

- ``SplitSpec`` (kind kfold / group / time, column, test_size, seed, gap): one spec gives the
  holdout (``holdout_rows``) and the folds of the rest (``cv_folds``); the same spec gives the same
  test rows in tuning and in a pipeline, so the search never sees them.
- ``screen_features`` + ``apply_leak_check``: identifiers, dates and target leaks among the features
  stop a job (or, with ``leak_check='warn'``, become warnings).
- ``ModelWarning``: why a score should not be trusted as it stands. A result with warnings is
  flagged; a flagged model never takes an alias by itself.
- ``check_target``: dates, identifiers, free text and labels-per-row refused as targets at plan time.
- ``attach_profile`` / ``row_warnings``: the training data's ranges and categories, saved with the
  model, so predictions on unseen values come back with per-row warnings.
"""

from mcp_server.evaluation._profile import (
    RowWarning,
    TrainingProfile,
    attach_profile,
    model_profile,
    row_warnings,
)
from mcp_server.evaluation._record import (
    FLAGGED_TAG,
    SPLIT_TAG,
    TEST_DIGEST_TAG,
    WARNINGS_TAG,
    evaluation_tags,
    flag_codes,
    record_evaluation,
)
from mcp_server.evaluation._screen import (
    LEAK_RULES,
    LeakCheck,
    apply_leak_check,
    entity_columns,
    leak_errors,
    screen_features,
    stop_message,
)
from mcp_server.evaluation._split import (
    SplitKind,
    SplitRecord,
    SplitSpec,
    check_split,
    coerce_split,
    cv_folds,
    cv_splitter,
    describe_splitter,
    holdout_rows,
    row_digest,
    time_order,
)
from mcp_server.evaluation._target import check_target
from mcp_server.evaluation._warnings import (
    DEFAULT_NEAR_PERFECT,
    DUPLICATE_SHARE,
    ModelWarning,
    WarningCode,
    below_baseline_cv,
    below_baseline_holdout,
    cv_test_gap,
    entity_overlap,
    holdout_warnings,
    is_bounded_score,
    leak_suspects,
    near_perfect,
    target_warnings,
)

__all__ = [
    "DEFAULT_NEAR_PERFECT",
    "DUPLICATE_SHARE",
    "below_baseline_cv",
    "below_baseline_holdout",
    "FLAGGED_TAG",
    "SPLIT_TAG",
    "TEST_DIGEST_TAG",
    "WARNINGS_TAG",
    "evaluation_tags",
    "flag_codes",
    "record_evaluation",
    "LEAK_RULES",
    "LeakCheck",
    "ModelWarning",
    "RowWarning",
    "SplitKind",
    "SplitRecord",
    "SplitSpec",
    "TrainingProfile",
    "WarningCode",
    "apply_leak_check",
    "attach_profile",
    "check_split",
    "check_target",
    "coerce_split",
    "cv_folds",
    "cv_splitter",
    "cv_test_gap",
    "describe_splitter",
    "entity_columns",
    "entity_overlap",
    "holdout_rows",
    "holdout_warnings",
    "is_bounded_score",
    "leak_errors",
    "leak_suspects",
    "model_profile",
    "near_perfect",
    "row_digest",
    "row_warnings",
    "screen_features",
    "stop_message",
    "target_warnings",
    "time_order",
]
