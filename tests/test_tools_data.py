"""list_datasets, describe_dataset, validate_data through the in-memory Client on real data."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server import rbac
from tests.support import payload, NOBODY, VIEWER, error_text, template_db, tool_server, tool_settings  # noqa: F401

pytestmark = pytest.mark.anyio


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
