"""DataValidationPipeline: run the checks in a fixed order and gather a ValidationResult."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_server.data_validation_pipeline import _checks as checks
from mcp_server.data_validation_pipeline import _leakage as leakage
from mcp_server.data_validation_pipeline._target_leaks import leak_findings
from mcp_server.data_validation_pipeline._result import Issue, Severity, ValidationResult
from mcp_server.data_validation_pipeline._rules import CustomRule, run_custom_rules
from mcp_server.data_validation_pipeline._schema import (
    DatasetSchema,
    coerce_schema,
    compact_errors,
    list_schemas,
    load_schema,
)
from mcp_server.error_handling import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


class ValidationConfig(BaseModel):
    """Options of the pipeline; a schema's own values (min_rows, …) take precedence."""

    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=1, ge=0)
    duplicate_severity: Severity = "warning"
    conflict_severity: Severity = "warning"
    check_leakage: bool = Field(default=True, description="Identifier, date, entity and target-leak checks")
    leak_threshold: float = Field(default=0.98, gt=0.5, le=1.0, description="Score one column may reach alone")
    leak_screen_rows: int = Field(default=10_000, ge=100, description="Rows sampled for the target-leak screen")
    high_cardinality_fraction: float = Field(default=0.5, gt=0, le=1)
    numeric_string_fraction: float = Field(default=0.5, gt=0, le=1)
    identifier_columns: list[str] = Field(default_factory=list)
    fail_on_warnings: bool = False
    schema_dir: Path | None = None


def _coerce_config(config: ValidationConfig | dict[str, Any] | None) -> ValidationConfig:
    if config is None:
        return ValidationConfig()
    if isinstance(config, ValidationConfig):
        return config
    try:
        return ValidationConfig.model_validate(config)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"invalid validation config: {compact_errors(exc)}; valid options: "
            f"{', '.join(ValidationConfig.model_fields)}"
        ) from None


class DataValidationPipeline:
    """Validates a data frame against generic checks, an optional schema and custom rules."""

    def __init__(self, config: ValidationConfig | dict[str, Any] | None = None) -> None:
        self.config = _coerce_config(config)

    @classmethod
    def for_settings(cls, settings: Any) -> DataValidationPipeline:
        """A pipeline with the leak-screen limits of ``settings`` (defaults when None)."""
        if settings is None:
            return cls()
        return cls({"leak_threshold": settings.leak_threshold, "leak_screen_rows": settings.leak_screen_rows})

    def load_schema(self, name: str) -> DatasetSchema:
        return load_schema(name, schema_dir=self.config.schema_dir)

    def list_schemas(self) -> list[str]:
        return list_schemas(schema_dir=self.config.schema_dir)

    def validate(
        self,
        df: pd.DataFrame,
        dataset_name: str = "dataset",
        schema: str | DatasetSchema | dict[str, Any] | None = None,
        custom_rules: list[CustomRule] | None = None,
        *,
        target: str | None = None,
        features: list[str] | None = None,
    ) -> ValidationResult:
        """Run every check; ``target`` (or the schema's target) enables label and leak checks.
        ``features``: the columns a model will use; identifiers, dates and leaks among them are errors."""
        import pandas as pd

        from mcp_server.estimators import infer_task

        if not isinstance(df, pd.DataFrame):
            raise InvalidRequestError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        resolved = coerce_schema(schema, schema_dir=self.config.schema_dir)
        if target is not None and target not in df.columns:
            raise InvalidRequestError(
                f"target {target!r} is not a column; valid columns: {', '.join(map(str, df.columns))}"
            )
        target = target or (resolved.target if resolved else None)
        config = self.config
        identifiers = set(config.identifier_columns) | set(resolved.identifier_columns if resolved else [])

        issues: list[Issue] = []
        min_rows = resolved.min_rows if resolved and resolved.min_rows is not None else config.min_rows
        issues += checks.check_min_rows(df, min_rows)
        if resolved is not None:
            issues += checks.check_schema_columns(df, resolved) + checks.check_schema_splits(df, resolved)
        in_use = features is not None
        columns = [str(c) for c in (features if in_use else df.columns) if c != target]
        structure: list[Issue] = []
        if config.check_leakage:
            structure = leakage.structure_findings(df, columns, in_use=in_use)
            issues += structure
        labels = {i.column for i in structure if i.rule in ("identifier_column", "datetime_column")}
        numeric_candidates = [c for c in columns if c not in labels] + ([target] if target in df.columns else [])
        if config.check_leakage:
            issues += leakage.derived_findings(df, numeric_candidates, severity="info" if in_use else "warning")
        issues += checks.check_columns_content(
            df,
            high_cardinality_fraction=config.high_cardinality_fraction,
            numeric_string_fraction=config.numeric_string_fraction,
            skip=identifiers | labels | ({target} if target else set()),
        )
        issues += checks.check_duplicate_rows(df, config.duplicate_severity)
        if target is not None and target in df.columns:
            task = infer_task(df[target].dropna(), task=resolved.task if resolved else None)
            identifiers |= self._identifier_like(df, target)
            label_features = [c for c in df.columns if c != target and str(c) not in identifiers]
            issues += checks.check_conflicting_labels(df, target, label_features, config.conflict_severity)
            issues += checks.check_target(
                df,
                target,
                task,
                resolved.min_class_fraction if resolved else None,
                resolved.class_balance_severity if resolved else "warning",
            )
            if config.check_leakage and df[target].notna().any():
                issues += leak_findings(
                    df, target, [c for c in columns if c not in labels], task=task,
                    threshold=config.leak_threshold, max_rows=config.leak_screen_rows,
                )
        issues += run_custom_rules(df, custom_rules)

        failing = {"error", "warning"} if config.fail_on_warnings else {"error"}
        result = ValidationResult(
            dataset_name=dataset_name,
            schema_name=resolved.name if resolved else None,
            passed=not any(issue.severity in failing for issue in issues),
            n_rows=len(df),
            n_columns=df.shape[1],
            issues=issues,
        )
        logger.info("validated %s: passed=%s %s", dataset_name, result.passed, result.summary)
        return result

    def _identifier_like(self, df: pd.DataFrame, target: str) -> set[str]:
        """Columns that only label rows (row numbers, near-unique text): not features."""
        found = set()
        for column in df.columns:
            if column == target:
                continue
            series = df[column]
            if checks.is_row_index(series):
                found.add(str(column))
            elif checks.dtype_kind(series) == "string" and len(series) and (
                series.nunique() >= self.config.high_cardinality_fraction * len(series)
            ):
                found.add(str(column))
        return found
