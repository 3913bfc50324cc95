"""Data validation: generic checks, schemas (data in ``config/schemas/*.toml``) and custom rules.

    result = DataValidationPipeline().validate(df, "nba_logreg", schema="player_stats")
    result.passed, result.summary, result.find("duplicate_rows")

Severities (errors fail validation, warnings and info do not unless ``fail_on_warnings``):

Leak checks (``_leakage``, ``_target_leaks``, ``_linear_leaks``): identifier, date and entity
columns, columns derived from two others, and features that alone predict the target (a copy, a
near-perfect single column, a difference or ratio of two, a weighted sum of several under a sparse
linear model). Without ``features`` they describe the data (identifiers and dates are warnings);
with ``features`` (a job's columns) identifiers, dates and leaks among them are errors.

error    the data cannot be trained on as declared: fewer rows than ``min_rows``, a required
         column missing, a column of the wrong dtype, nulls in a non-nullable column, repeated
         values in a unique column, values outside ``allowed_values``, values outside a hard
         ``min``/``max`` (``range_severity`` defaults to error), infinite numbers, a missing
         target value, a single-class classification target, a custom rule that raised.
warning  trainable but likely to mislead: exact duplicate rows, identical features with
         conflicting labels, identifier and date columns, whitespace-only strings,
         constant or all-empty columns, class balance below ``min_class_fraction``, and
         schema ranges declared with ``range_severity = "warning"`` (e.g. ts_pct > 1).
info     worth knowing: missing-value counts, rows repeating another row's features,
         numbers stored as text (``Undrafted`` in draft columns), identifier-like text
         columns, values outside an ``expected_min``/``expected_max`` (e.g. gp < 5).

Duplicates and conflicting labels are warnings on purpose: the rookie data (12 duplicate rows, 20
conflicting feature vectors) is usable once deduplicated, and the counts are reported exactly.
Label checks compare all columns except the target, the schema's ``identifier_columns`` and
identifier-like columns (row numbers, near-unique text such as player names).
"""

from mcp_server.data_validation_pipeline._checks import is_row_index
from mcp_server.data_validation_pipeline._leakage import entity_reason, identifier_reason, is_datetime_like
from mcp_server.data_validation_pipeline._infer import infer_column_rule, infer_schema
from mcp_server.data_validation_pipeline._pipeline import DataValidationPipeline, ValidationConfig
from mcp_server.data_validation_pipeline._result import (
    SEVERITIES,
    Issue,
    Severity,
    ValidationResult,
)
from mcp_server.data_validation_pipeline._rules import RULE_KINDS, CustomRule
from mcp_server.data_validation_pipeline._schema import (
    SCHEMA_DIR,
    ColumnRule,
    DatasetSchema,
    compact_errors,
    dtype_kind,
    list_schemas,
    load_schema,
)

__all__ = [
    "RULE_KINDS",
    "SCHEMA_DIR",
    "SEVERITIES",
    "ColumnRule",
    "CustomRule",
    "DataValidationPipeline",
    "DatasetSchema",
    "Issue",
    "Severity",
    "ValidationConfig",
    "ValidationResult",
    "compact_errors",
    "dtype_kind",
    "entity_reason",
    "identifier_reason",
    "is_datetime_like",
    "infer_column_rule",
    "infer_schema",
    "is_row_index",
    "list_schemas",
    "load_schema",
]
