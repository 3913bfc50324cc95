"""Data validation: findings on the shared NBA files (exact numbers from SOURCES.md), schemas,
inference round-trip, generic checks, custom rules and configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcp_server.data_validation_pipeline import (
    DataValidationPipeline,
    DatasetSchema,
    Issue,
    ValidationConfig,
    infer_schema,
    list_schemas,
    load_schema,
)
from mcp_server.error_handling import ConfigurationError, InvalidRequestError, NotFoundError
from tests.support import NBA_DATA, needs_nba_data


@pytest.fixture(scope="module")
def rookies() -> pd.DataFrame:
    return pd.read_csv(NBA_DATA / "nba_logreg.csv")


@pytest.fixture(scope="module")
def seasons() -> pd.DataFrame:
    return pd.read_csv(NBA_DATA / "all_seasons.csv")


def findings(result) -> dict[tuple[str, str | None], tuple[str, int]]:
    return {(i.rule, i.column): (i.severity, i.count) for i in result.issues}


def toy_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0, 4.0, 6.0],
            "team": ["A", "B", "A", "B", "B", "A"],
            "label": [0, 1, 0, 1, 0, 1],
        }
    )


@needs_nba_data
@pytest.mark.parametrize("how", ["schema", "target_argument"])
def test_rookie_file_reports_documented_duplicates_and_conflicts(rookies, how):
    pipeline = DataValidationPipeline()
    if how == "schema":
        result = pipeline.validate(rookies, "nba_logreg", schema="player_stats")
    else:
        result = pipeline.validate(rookies, "nba_logreg", target="TARGET_5Yrs")
    found = findings(result)
    assert found[("duplicate_rows", None)] == ("warning", 12)
    assert found[("conflicting_labels", "TARGET_5Yrs")] == ("warning", 20)
    assert found[("duplicate_feature_vectors", None)] == ("info", 32)
    assert found[("missing_values", "3P%")] == ("info", 11)
    assert result.passed and result.summary["error"] == 0
    conflict = result.find("conflicting_labels")[0]
    assert len(conflict.example_rows) == 5 and "'Name'" in result.find("duplicate_feature_vectors")[0].message


@needs_nba_data
def test_season_file_reports_row_index_and_odd_values(seasons):
    result = DataValidationPipeline().validate(seasons, "all_seasons", schema="player_seasons")
    found = findings(result)
    assert found[("identifier_column", "player_id")][0] == "warning"
    assert "drop it (drop=['player_id'])" in result.find("identifier_column")[0].message
    assert found[("range", "ts_pct")] == ("warning", 15)
    assert found[("range", "net_rating")] == ("warning", 21)  # |net_rating| > 100
    assert found[("expected_range", "gp")] == ("info", 583)  # gp < 5: small samples
    assert found[("blank_strings", "college")] == ("warning", 5)
    assert found[("missing_values", "college")] == ("info", 1854)
    assert found[("numeric_strings", "draft_round")] == ("info", 2411)
    assert ("duplicate_rows", None) not in found
    assert result.passed
    assert found[("entity_column", "player_name")][0] == "warning"  # 2,551 players over 12,844 seasons
    assert result.to_dict()["summary"] == {"error": 0, "warning": 5, "info": 5}


@needs_nba_data
@pytest.mark.parametrize(("file_name", "schema"), [("nba_logreg.csv", "player_seasons"), ("all_seasons.csv", "player_stats")])
def test_the_wrong_schema_fails(file_name, schema):
    result = DataValidationPipeline().validate(pd.read_csv(NBA_DATA / file_name), file_name, schema=schema)
    assert not result.passed
    assert result.find("required_columns")


def test_schemas_ship_as_data():
    assert {"player_stats", "player_seasons"} <= set(list_schemas())
    stats = load_schema("player_stats")
    assert (stats.target, stats.identifier_columns, stats.columns["3P%"].nullable) == ("TARGET_5Yrs", ["Name"], True)


@pytest.mark.parametrize(("name", "error"), [("../server", InvalidRequestError), ("nope", NotFoundError), ("a/b", InvalidRequestError)])
def test_schema_names_are_plain_and_known(name, error):
    with pytest.raises(error):
        load_schema(name)


def test_broken_schema_file_is_a_configuration_error(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n[columns.x]\ndtype = "complex"\n')
    with pytest.raises(ConfigurationError, match="bad.toml"):
        DataValidationPipeline({"schema_dir": tmp_path}).validate(toy_frame(), "toy", schema="bad")


@pytest.mark.parametrize(
    ("columns", "frame_change", "rule", "severity"),
    [
        ({"x": {"dtype": "string"}}, None, "dtype", "error"),
        ({"x": {"min": 2}}, None, "range", "error"),
        ({"x": {"max": 5, "range_severity": "warning"}}, None, "range", "warning"),
        ({"x": {"expected_min": 2}}, None, "expected_range", "info"),
        ({"x": {"unique": True}}, None, "unique", "error"),
        ({"team": {"allowed_values": ["A"]}}, None, "allowed_values", "error"),
        ({"x": {"nullable": False}}, {"x": [None, 2.0, 3.0, 4.0, 5.0, 6.0]}, "not_null", "error"),
        ({"x": {"max_missing_fraction": 0.1}}, {"x": [None, 2.0, 3.0, 4.0, 5.0, 6.0]}, "max_missing_fraction", "warning"),
        ({"missing": {}}, None, "required_columns", "error"),
    ],
)
def test_column_rules(columns, frame_change, rule, severity):
    frame = toy_frame().assign(**(frame_change or {}))
    result = DataValidationPipeline().validate(frame, "toy", schema={"columns": columns})
    issues = result.find(rule)
    assert issues and issues[0].severity == severity
    assert result.passed == (severity != "error")


@pytest.mark.parametrize(
    ("frame", "rule", "severity", "count"),
    [
        (pd.DataFrame({"a": [1.0, np.inf, 2.0]}), "infinite_values", "error", 1),
        (pd.DataFrame({"a": [1, 1, 1]}), "constant_column", "warning", 3),
        (pd.DataFrame({"a": [None, None], "b": [1, 2]}), "empty_column", "warning", 2),
        (pd.DataFrame({"Unnamed: 0": [0, 1, 2, 3]}), "identifier_column", "warning", 4),
        (pd.DataFrame({"id": list(range(3, 63, 3))}), "identifier_column", "warning", 20),  # increasing, gaps
        (pd.DataFrame({"a": ["1", "2", "n/a", "3"]}), "numeric_strings", "info", 1),
        (pd.DataFrame({"a": [f"name {i}" for i in range(30)]}), "identifier_column", "warning", 30),
        (pd.DataFrame({"a": [f"name {i % 25}" for i in range(30)]}), "high_cardinality", "info", 25),
        (pd.DataFrame({"a": [1, 2]}), "min_rows", "error", 2),
    ],
)
def test_generic_checks(frame, rule, severity, count):
    result = DataValidationPipeline({"min_rows": 3}).validate(frame, "t")
    issue = result.find(rule)[0]
    assert (issue.severity, issue.count) == (severity, count)


@pytest.mark.parametrize(
    ("target", "schema", "rule", "severity"),
    [
        ("label", {"min_class_fraction": 0.4}, "class_balance", "warning"),
        ("single", {}, "class_balance", "error"),
        ("gap", {}, "target_missing", "error"),
    ],
)
def test_target_checks(target, schema, rule, severity):
    frame = pd.DataFrame({"x": range(10), "label": [0] * 7 + [1] * 3, "single": [1] * 10, "gap": [0, 1] * 4 + [None, 1]})
    result = DataValidationPipeline().validate(frame, "t", schema=schema, target=target)
    assert result.find(rule, target)[0].severity == severity


def test_unknown_target_argument_lists_columns():
    with pytest.raises(InvalidRequestError, match="valid columns: x, team, label"):
        DataValidationPipeline().validate(toy_frame(), "toy", target="nope")


def test_schema_inference_round_trip_and_self_validation(tmp_path):
    frame = toy_frame().assign(flag=[True, False] * 3, when="2024", note=["3P% \"quoted\"", "é", None, "x", "y", "z"])
    frame = frame.rename(columns={"x": "3P Made"})
    schema = infer_schema(frame, target="label", name="toy")
    text = schema.to_toml()
    assert DatasetSchema.from_toml(text) == schema
    assert schema.columns["team"].allowed_values == ["A", "B"]
    assert schema.task == "classification" and schema.min_class_fraction == 0.25
    (tmp_path / "toy.toml").write_text(text)
    result = DataValidationPipeline({"schema_dir": tmp_path}).validate(frame, "toy", schema="toy")
    assert result.passed and not result.errors


@needs_nba_data
def test_inferred_schema_fits_the_season_file(seasons):
    schema = infer_schema(seasons, target="pts")
    assert "player_id" in schema.identifier_columns and schema.task == "regression"
    assert DataValidationPipeline().validate(seasons, "all_seasons", schema=schema).passed


def _no_negative_x(df: pd.DataFrame) -> Issue | None:
    bad = df["x"] < 2
    return Issue(rule="small_x", severity="warning", count=int(bad.sum()), message="x below 2") if bad.any() else None


def _raises(df: pd.DataFrame) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("rule", "expected_rule", "severity", "count"),
    [
        (_no_negative_x, "small_x", "warning", 1),
        (lambda df: [{"rule": "as_dict", "severity": "info", "message": "m"}], "as_dict", "info", 0),
        (_raises, "custom:_raises", "error", 0),
        (lambda df: 42, "custom:<lambda>", "error", 0),
        ({"rule": "range", "column": "x", "max": 3}, "range", "error", 3),
        ({"rule": "not_null", "column": "x", "severity": "warning"}, None, None, None),
        ({"rule": "unique", "columns": ["x", "team"], "name": "x_team_unique"}, "x_team_unique", "error", 1),
        ({"rule": "allowed_values", "column": "team", "values": ["A"]}, "allowed_values", "error", 3),
        ({"rule": "compare", "left": "x", "op": ">=", "right": "label"}, None, None, None),
        ({"rule": "compare", "left": "x", "op": "<", "right": 4.0}, "compare", "error", 3),
        ({"rule": "compare", "left": "x", "op": "<", "right": 4.0, "tolerance": 0.5}, "compare", "error", 1),
        ({"rule": "max_missing_fraction", "column": "x", "max_fraction": 0.0}, None, None, None),
    ],
)
def test_custom_rules(rule, expected_rule, severity, count):
    result = DataValidationPipeline().validate(toy_frame(), "toy", custom_rules=[rule])
    custom = [i for i in result.issues if i.rule not in {"duplicate_rows", "high_cardinality"}]
    if expected_rule is None:
        assert custom == []
    else:
        assert [(i.rule, i.severity, i.count) for i in custom] == [(expected_rule, severity, count)]
        assert result.passed == (severity != "error")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"rule": "regex", "column": "x"}, "rule kinds: range"),
        ({"rule": "range", "column": "x", "min": "low"}, "min"),
        ({"rule": "range", "column": "zz", "min": 0}, "valid columns: x, team, label"),
        ({"rule": "compare", "left": "x", "op": "~", "right": 1}, "op"),
        ("df.eval('x')", "callables or dicts"),
    ],
)
def test_bad_custom_rules_are_refused(rule, message):
    with pytest.raises(InvalidRequestError, match=message):
        DataValidationPipeline().validate(toy_frame(), "toy", custom_rules=[rule])


@pytest.mark.parametrize(
    ("config", "passed"),
    [(None, True), ({"fail_on_warnings": True}, False), ({"duplicate_severity": "error"}, False), ({"min_rows": 100}, False)],
)
def test_config_options(config, passed):
    frame = pd.concat([toy_frame(), toy_frame().head(1)], ignore_index=True)
    assert DataValidationPipeline(config).validate(frame, "toy").passed is passed


@pytest.mark.parametrize("config", [{"min_row": 3}, {"min_rows": -1}, {"duplicate_severity": "fatal"}])
def test_bad_config_is_refused_with_valid_options(config):
    with pytest.raises(InvalidRequestError, match="valid options: min_rows"):
        DataValidationPipeline(config)


def test_result_is_json_ready():
    config = ValidationConfig(min_rows=1)
    data = DataValidationPipeline(config).validate(toy_frame().set_index(pd.Index(list("abcdef"))), "toy",
                                                   target="label").to_dict()
    assert data["dataset_name"] == "toy" and data["n_rows"] == 6
    assert all(isinstance(row, (int, str)) for issue in data["issues"] for row in issue["example_rows"])
