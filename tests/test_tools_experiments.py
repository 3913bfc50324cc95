"""start_experiment, list_experiments, search_runs, get_run, compare_runs against a real sqlite store."""

from __future__ import annotations

import base64

import pytest
from mcp import Client

from mcp_server import rbac
from tests.support import payload, VIEWER, error_text, template_db, tool_server, tool_settings  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def logged_runs(tool_server):
    """Two finished runs with stepped metric history, in their own experiment."""
    tracker = tool_server.state.tracker("compare-tests")
    ids = []
    for depth, auc in ((3, 0.71), (8, 0.78)):
        ids.append(tracker.record_run(
            run_name=f"depth-{depth}", params={"max_depth": depth, "estimator": "random_forest"},
            metrics={"roc_auc": auc, "log_loss": 1 - auc}, metric_history={"train_loss": [0.9, 0.6, 0.4, 0.3]},
        ))
    return ids


async def test_start_experiment_creates_then_reuses_and_records_a_run(tool_server):
    async with Client(tool_server) as client:
        first = payload(await client.call_tool("start_experiment", {"request": {
            "name": "agent-exp", "run_name": "plan", "params": {"budget": 20}, "tags": {"goal": "rookies"}}}))
        again = payload(await client.call_tool("start_experiment", {"request": {"name": "agent-exp"}}))
        run = payload(await client.call_tool("get_run", {"run_id": first["run_id"]}))
        names = [e["name"] for e in payload(await client.call_tool("list_experiments", {}))["experiments"]]
    assert first["created"] and not again["created"]
    assert first["experiment_id"] == again["experiment_id"] and again["run_id"] is None
    assert run["params"] == {"budget": "20"} and run["tags"]["goal"] == "rookies"
    assert run["tags"]["mlflow.source.name"] == "nba-mcp start_experiment" and run["tags"]["mlflow.user"] == "local"
    assert "agent-exp" in names


async def test_search_runs_filters_orders_and_pages(tool_server, logged_runs):
    base = {"experiment_name": "compare-tests", "order_by": ["metrics.roc_auc DESC"], "max_results": 1}
    async with Client(tool_server) as client:
        page1 = payload(await client.call_tool("search_runs", {"request": base}))
        page2 = payload(await client.call_tool("search_runs", {"request": {**base, "page_token": page1["next_page_token"]}}))
        filtered = payload(await client.call_tool("search_runs", {"request": {
            "experiment_name": "compare-tests", "filter_string": "metrics.roc_auc < 0.75"}}))
        bad = await client.call_tool("search_runs", {"request": {"experiment_name": "compare-tests", "filter_string": "metrics.x >"}})
    assert [r["run_name"] for r in page1["runs"] + page2["runs"]] == ["depth-8", "depth-3"]
    assert [r["run_id"] for r in filtered["runs"]] == [logged_runs[0]]
    assert bad.is_error and "error id" not in error_text(bad)


async def test_get_run_pages_metric_history(tool_server, logged_runs):
    async with Client(tool_server) as client:
        run = payload(await client.call_tool("get_run", {"run_id": logged_runs[0], "history_limit": 2, "history_offset": 1}))
        missing = await client.call_tool("get_run", {"run_id": "f" * 32})
        malformed = await client.call_tool("get_run", {"run_id": "42"})
    history = run["metric_history"]["train_loss"]
    assert [p["value"] for p in history["points"]] == [0.6, 0.4] and history["total_points"] == 4
    assert run["params"]["max_depth"] == "3" and run["status"] == "FINISHED"
    assert "not found" in error_text(missing)
    assert "String should match pattern" in error_text(malformed)


async def test_compare_runs_diffs_best_run_and_chart(tool_server, logged_runs):
    async with Client(tool_server) as client:
        plain = await client.call_tool("compare_runs", {"run_ids": logged_runs})
        charted = await client.call_tool("compare_runs", {"run_ids": logged_runs, "chart": True})
        duplicate = await client.call_tool("compare_runs", {"run_ids": [logged_runs[0]] * 2})
        single = await client.call_tool("compare_runs", {"run_ids": logged_runs[:1]})
    comparison = payload(plain)
    auc = comparison["metrics"]["roc_auc"]
    assert auc["best_run"] == logged_runs[1] and auc["diff"][logged_runs[1]] == pytest.approx(0.07)
    assert comparison["metrics"]["log_loss"]["best_run"] == logged_runs[1]
    assert set(comparison["params_differ"]) == {"max_depth"} and comparison["params_same"]["estimator"] == "random_forest"
    assert [c.type for c in plain.content] == ["text"]
    image = charted.content[1]
    assert image.type == "image" and image.mime_type == "image/png"
    assert base64.b64decode(image.data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "run_ids must be distinct" in error_text(duplicate)
    assert "at least 2 items" in error_text(single)


async def test_viewer_reads_runs_but_may_not_start_experiments(tool_server, logged_runs):
    with rbac.acting_as(VIEWER):
        async with Client(tool_server) as client:
            assert not (await client.call_tool("get_run", {"run_id": logged_runs[0]})).is_error
            denied = await client.call_tool("start_experiment", {"request": {"name": "viewer-exp"}})
    assert error_text(denied).endswith("permission denied")
