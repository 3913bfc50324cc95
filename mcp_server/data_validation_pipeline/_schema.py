"""Dataset schemas: data (TOML; the packaged ones under mcp_server/config/schemas/), validated on load,
writable back to TOML."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_server.data_validation_pipeline._result import Severity
from mcp_server.error_handling import ConfigurationError, InvalidRequestError, NotFoundError
from mcp_server._package_data import PACKAGED_SCHEMAS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import pandas as pd

SCHEMA_DIR = PACKAGED_SCHEMAS  # package data (importlib.resources)
DtypeKind = Literal["int", "float", "numeric", "bool", "string", "category", "datetime", "any"]
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ColumnRule(BaseModel):
    """Expectations for one column. ``min``/``max`` are hard bounds (``range_severity``);
    ``expected_min``/``expected_max`` mark plausible-but-noteworthy values (``expected_severity``)."""

    model_config = ConfigDict(extra="forbid")

    dtype: DtypeKind = "any"
    required: bool = True
    nullable: bool = True
    unique: bool = False
    min: float | None = None
    max: float | None = None
    range_severity: Severity = "error"
    expected_min: float | None = None
    expected_max: float | None = None
    expected_severity: Severity = "info"
    allowed_values: list[bool | int | float | str] | None = None
    max_missing_fraction: float | None = Field(default=None, ge=0, le=1)
    description: str = ""


class DatasetSchema(BaseModel):
    """Expectations for a whole table, including its target and which columns only identify rows."""

    model_config = ConfigDict(extra="forbid")

    name: str = "inferred"
    description: str = ""
    target: str | None = None
    task: Literal["classification", "regression"] | None = None
    min_rows: int | None = Field(default=None, ge=0)
    min_class_fraction: float | None = Field(default=None, ge=0, le=0.5)
    class_balance_severity: Severity = "warning"
    identifier_columns: list[str] = Field(default_factory=list)
    group_column: str | None = Field(default=None, description="The entity rows belong to: split by it (kind group)")
    time_column: str | None = Field(default=None, description="The time order of the rows (kind time)")
    allow_extra_columns: bool = True
    columns: dict[str, ColumnRule] = Field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSchema:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequestError(f"invalid dataset schema: {compact_errors(exc)}") from None

    @classmethod
    def from_toml(cls, text: str) -> DatasetSchema:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequestError(f"invalid dataset schema TOML: {exc}") from None
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """TOML that ``from_toml`` reads back to an equal schema (defaults are left out)."""
        data = {"name": self.name, **self.model_dump(exclude_none=True, exclude_defaults=True)}
        columns = data.pop("columns", {})
        lines = [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in data.items()]
        for column, rule in self.columns.items():
            lines.append("")
            lines.append(f"[columns.{_toml_key(column)}]")
            rule_data = columns.get(column, {})
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in rule_data.items())
        return "\n".join(lines) + "\n"


def compact_errors(exc: ValidationError) -> str:
    """``field.path: message; …`` for each problem pydantic found."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}" for error in exc.errors()
    )


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"cannot write the non-finite number {value} to a schema")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes (non-ASCII kept literal).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InvalidRequestError(f"cannot write {type(value).__name__} values to a schema")


def list_schemas(*, schema_dir: Path | Traversable | None = None) -> list[str]:
    folder = schema_dir or SCHEMA_DIR
    if not folder.is_dir():
        return []
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir()
                  if entry.name.endswith(".toml") and entry.is_file())


def load_schema(name: str, *, schema_dir: Path | Traversable | None = None) -> DatasetSchema:
    """The schema ``<schema_dir>/<name>.toml``; names are plain identifiers, never paths."""
    folder = schema_dir or SCHEMA_DIR
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise InvalidRequestError(
            f"schema name must match {_SCHEMA_NAME.pattern} (letters, digits, _ and -), got {name!r}"
        )
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise NotFoundError(
            f"schema {name!r} not found; available schemas: {', '.join(list_schemas(schema_dir=folder))}"
        )
    try:
        return DatasetSchema.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError, UnicodeDecodeError) as exc:
        detail = compact_errors(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigurationError(f"schema file {path.name} is invalid: {detail}") from None


def coerce_schema(
    schema: str | DatasetSchema | dict[str, Any] | None, *, schema_dir: Path | None = None
) -> DatasetSchema | None:
    if schema is None or isinstance(schema, DatasetSchema):
        return schema
    if isinstance(schema, str):
        return load_schema(schema, schema_dir=schema_dir)
    if isinstance(schema, dict):
        return DatasetSchema.from_dict(schema)
    raise InvalidRequestError(
        f"schema must be a schema name, a DatasetSchema or a dict, got {type(schema).__name__}"
    )


def dtype_kind(series: pd.Series) -> str:
    """The schema dtype kind of a column: bool, int, float, string, category, datetime or other."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_string_dtype(dtype):
        if pd.api.types.is_object_dtype(dtype):
            values = series.dropna()
            return "string" if values.map(type).eq(str).all() else "other"
        return "string"
    return "other"


def dtype_matches(series: pd.Series, expected: str) -> bool:
    kind = dtype_kind(series)
    if expected == "any" or kind == expected:
        return True
    if expected == "int" and kind == "float":
        # A missing value turns an integer column into floats when read from CSV.
        values = series.dropna()
        return bool(values.eq(values.round()).all())
    if expected in {"float", "numeric"}:
        return kind in {"int", "float"}
    if expected in {"string", "category"}:
        return kind in {"string", "category"}
    return False
