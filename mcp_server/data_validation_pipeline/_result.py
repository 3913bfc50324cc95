"""What validation reports: issues with a severity, and the result that gathers them."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, computed_field, field_validator

if TYPE_CHECKING:
    import pandas as pd

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
MAX_EXAMPLE_ROWS = 5


def _plain_label(label: Any) -> int | str:
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):  # numpy ints too
        return int(label)
    return str(label)


class Issue(BaseModel):
    """One finding: which rule, on which column, how many rows, and up to 5 example row labels."""

    column: str | None = None
    rule: str
    severity: Severity
    count: int = Field(default=0, ge=0)
    example_rows: list[int | str] = Field(default_factory=list)
    message: str
    drop: list[str] = Field(default_factory=list, description="Columns to leave out of the features to fix it")
    score: float | None = Field(default=None, description="Leak findings: the score the column(s) reach alone")

    @field_validator("example_rows", mode="before")
    @classmethod
    def _at_most_five(cls, value: Any) -> list[int | str]:
        return [_plain_label(label) for label in list(value)[:MAX_EXAMPLE_ROWS]]


def example_rows(mask: pd.Series) -> list[int | str]:
    """Index labels of the first rows where ``mask`` is true."""
    return [_plain_label(label) for label in mask.index[mask.to_numpy(dtype=bool)][:MAX_EXAMPLE_ROWS]]


class ValidationResult(BaseModel):
    """Errors fail validation; warnings and info do not (unless ``fail_on_warnings`` is set)."""

    dataset_name: str
    schema_name: str | None = None
    passed: bool = Field(description="False when any error (or, with fail_on_warnings, any warning) was found")
    n_rows: int
    n_columns: int
    issues: list[Issue] = Field(default_factory=list)

    @computed_field(description="Issue counts per severity")  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for issue in self.issues:
            counts[issue.severity] += 1
        return counts

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "warning"]

    @computed_field(description="Columns the findings say to leave out of the features")  # type: ignore[prop-decorator]
    @property
    def suggested_drop(self) -> list[str]:
        """Every column some finding says to drop, in order, once."""
        return list(dict.fromkeys(c for issue in self.issues for c in issue.drop))

    def find(self, rule: str, column: str | None = None) -> list[Issue]:
        """Issues raised by ``rule`` (optionally on ``column``)."""
        return [i for i in self.issues if i.rule == rule and (column is None or i.column == column)]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
