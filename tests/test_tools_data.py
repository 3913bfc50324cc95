"""list_datasets, describe_dataset, validate_data through the in-memory Client on real data."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server import rbac
from tests._leaky_frames import SHOOTING_COLUMNS, shooting_log
from tests.support import (  # noqa: F401
    NOBODY,
    VIEWER,
    data_folder,
    error_text,
    isolated_settings,
    payload,
    template_db,
    tool_server,
    tool_settings,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def games_server(tmp_path_factory, template_db):
    """A server whose data folder holds ``shooting.csv``: both teams' shooting counts rebuild the scores."""
    from tools.server import build_server

    folder = tmp_path_factory.mktemp("games")
    shooting_log(target="win").to_csv(folder / "shooting.csv", index=False)
    server = build_server(isolated_settings(tmp_path_factory.mktemp("home"), template_db, data_dirs=[folder]))
    yield server
    server.state.close()


async def test_list_datasets_shows_files_and_builtins(tool_server):
    async with Client(tool_server) as client:
        names = {d["name"] for d in payload(await client.call_tool("list_datasets", {}))["datasets"]}
    assert {"nba_logreg", "all_seasons", "sklearn:iris", "sklearn:breast_cancer"} <= names


@pytest.mark.parametrize(
    ("args", "check"),
    [
        ({"name": "iris"}, lambda d: d["n_rows"] == 150 and d["target"]["task"] == "classification"),
        ({"name": "nba_logreg", "target": "TARGET_5Yrs"},
         lambda d: d["n_rows"] == 1340 and d["target"]["n_classes"] == 2),
        ({"name": "sklearn:diabetes"}, lambda d: d["target"]["task"] == "regression"),
    ],
)
async def test_describe_dataset(tool_server, args, check):
    async with Client(tool_server) as client:
        description = payload(await client.call_tool("describe_dataset", args))
    assert check(description)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"name": "nope"}, "dataset 'nope' not found"),
        ({"name": "iris", "target": "species"}, "target names unknown column(s) 'species'"),
        ({"name": ""}, "String should have at least 1 character"),
        ({"name": "/etc/passwd"}, "is not allowed"),
    ],
)
async def test_describe_dataset_errors(tool_server, args, expected):
    async with Client(tool_server) as client:
        assert expected in error_text(await client.call_tool("describe_dataset", args))


async def test_validate_data_against_a_schema_reports_issues(tool_server):
    request = {"dataset": "nba_logreg", "target": "TARGET_5Yrs", "schema_name": "player_stats"}
    async with Client(tool_server) as client:
        report = payload(await client.call_tool("validate_data", {"request": request}))
        strict = payload(await client.call_tool("validate_data", {"request": {**request, "fail_on_warnings": True}}))
    assert report["passed"] and report["schema_name"] == "player_stats"
    rules = {i["rule"] for i in report["issues"]}
    assert "duplicate_rows" in rules and report["summary"]["warning"] >= 1
    assert not strict["passed"]


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"dataset": "iris", "schema_name": "no_such_schema"}, "no_such_schema"),
        ({"dataset": "iris", "target": "nope"}, "target 'nope' is not a column"),
    ],
)
async def test_validate_data_errors(tool_server, request_body, expected):
    async with Client(tool_server) as client:
        assert expected in error_text(await client.call_tool("validate_data", {"request": request_body}))


async def test_viewer_may_read_data_and_a_roleless_principal_may_not(tool_server):
    with rbac.acting_as(VIEWER):
        async with Client(tool_server) as client:
            assert not (await client.call_tool("describe_dataset", {"name": "iris"})).is_error
    with rbac.acting_as(NOBODY):
        async with Client(tool_server) as client:
            assert (await client.list_tools()).tools == []
            assert error_text(await client.call_tool("list_datasets", {})).endswith("permission denied")


async def test_validate_data_names_the_columns_that_rebuild_the_answer_together(games_server):
    async with Client(games_server) as client:
        table = payload(await client.call_tool("validate_data", {"request": {"dataset": "shooting", "target": "win"}}))
        described = payload(await client.call_tool("describe_dataset", {"name": "shooting", "target": "win"}))
    (leak,) = [i for i in table["issues"] if i["rule"] == "linear_leak"]
    assert leak["severity"] == "error" and set(leak["drop"]) == set(SHOOTING_COLUMNS) and not table["passed"]
    assert table["suggested_drop"] == ["row_id", "game_date", *leak["drop"]]
    assert not [i for i in table["issues"] if i["rule"] in ("pair_leak", "target_leak")]
    assert [set(f["drop"]) for f in described["findings"] if f["rule"] == "linear_leak"] == [set(SHOOTING_COLUMNS)]


@pytest.mark.parametrize(
    ("job", "errors"),
    [
        # A job's columns: the identifier and the date dropped, the six counts left in.
        ({"drop": ["row_id", "game_date"]}, {"linear_leak"}),
        # The date as the time split's column is never a feature; the row id is (an error, not a warning).
        ({"split": {"kind": "time", "column": "game_date"}}, {"identifier_column", "linear_leak"}),
        ({"drop_columns": ["row_id", "game_date", *SHOOTING_COLUMNS]}, set()),
        ({"features": ["home", "rest_days", "game_number", "opponent_id"]}, set()),
        ({"features": ["home", "fgm", "ftm"]}, set()),
    ],
)
async def test_validate_data_checks_the_columns_a_job_would_train_on(games_server, job, errors):
    request = {"dataset": "shooting", "target": "win", **job}
    async with Client(games_server) as client:
        report = payload(await client.call_tool("validate_data", {"request": request}))
    assert {i["rule"] for i in report["issues"] if i["severity"] == "error"} == errors
    assert report["passed"] == (not errors)
    assert not [i for i in report["issues"] if i["column"] == "game_date" and "split" in job]


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"features": ["home", "nope"]}, "features names unknown column(s) 'nope'; valid columns: row_id, game_date"),
        ({"drop": ["zz"]}, "drop names unknown column(s) 'zz'; valid columns: row_id"),
        ({"features": ["home", "win"]}, "features must not include the target column 'win'"),
        ({"split": {"kind": "group", "column": "nope"}}, "split.column 'nope' is not a column; valid columns: row_id"),
        ({"split": {"kind": "time", "column": "game_date"}, "features": ["home", "game_date"]},
         "features must not include the split column 'game_date'"),
        ({"split": {"kind": "group", "column": "win"}}, "split.column must not be the target 'win'"),
        ({"split": {"kind": "group"}}, "split.column is required for kind 'group'"),
        ({"split": {"kind": "random"}}, "invalid split: kind: Input should be 'kfold', 'group' or 'time'"),
        ({"drop": [*SHOOTING_COLUMNS, "row_id", "game_date", "home", "rest_days", "game_number", "opponent_id"]},
         "no feature columns left"),
    ],
)
async def test_validate_data_refuses_a_job_it_could_not_train(games_server, job, expected):
    async with Client(games_server) as client:
        text = error_text(await client.call_tool("validate_data", {"request": {"dataset": "shooting", "target": "win",
                                                                                **job}}))
    assert expected in text
