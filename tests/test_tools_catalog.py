"""The served tool list, its annotations and permissions, pinned; schemas carry no wrapper artifacts."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server import rbac
from tests.support import template_db, tool_server, tool_settings  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio

R, W, X = rbac.Permission.READ, rbac.Permission.WRITE, rbac.Permission.EXECUTE
# name -> (permission, read_only, destructive, idempotent)
EXPECTED_TOOLS = {
    "list_datasets": (R, True, False, True),
    "describe_dataset": (R, True, False, True),
    "validate_data": (R, True, False, True),
    "start_experiment": (X, False, False, True),
    "list_experiments": (R, True, False, True),
    "search_runs": (R, True, False, True),
    "get_run": (R, True, False, True),
    "tune_hyperparameters": (X, False, False, False),
    "run_pipeline": (X, False, False, False),
    "compare_runs": (R, True, False, True),
    "end_run": (X, False, False, True),
    "get_job": (R, True, False, True),
    "list_jobs": (R, True, False, True),
    "cancel_job": (X, False, False, True),
    "list_models": (R, True, False, True),
    "register_model": (W, False, False, False),
    "promote_model": (W, False, True, True),
    "predict": (X, True, False, True),
    "server_health": (R, True, False, True),
}
WRAPPER_ARTIFACTS = {"args", "kwargs", "ctx", "context", "user", "user_id", "principal", "self"}


@pytest.fixture(params=["auto", "legacy"])
async def tools(request, tool_server):
    async with Client(tool_server, mode=request.param) as client:
        yield {t.name: t for t in (await client.list_tools()).tools}


async def test_exact_tool_list_with_annotations_and_permissions(tools, tool_server):
    assert set(tools) == set(EXPECTED_TOOLS)
    permissions = tool_server.state.tool_permissions
    for name, (permission, read_only, destructive, idempotent) in EXPECTED_TOOLS.items():
        hints = tools[name].annotations
        assert permissions[name] is permission, name
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (
            read_only, destructive, idempotent), name


def _generated_titles(schema) -> list[str]:
    if isinstance(schema, list):
        return [t for item in schema for t in _generated_titles(item)]
    if not isinstance(schema, dict):
        return []
    own = [schema["title"]] if isinstance(schema.get("title"), str) else []
    return own + [t for key, value in schema.items() if key != "default" for t in _generated_titles(value)]


# What an agent pays to read the tools: every tool, under this many characters of tools/list (the
# benchmark's budget, benchmarks/mcp_latency.py, says why it is no longer 24,000).
TOOLS_LIST_BUDGET = 25_000


async def test_tools_list_fits_the_budget(tool_server):
    async with Client(tool_server) as client:
        listed = await client.list_tools()
    size = len(listed.model_dump_json(by_alias=True, exclude_none=True))
    print(f"\ntools/list (developer role): {size} characters for {len(listed.tools)} tools")
    assert {t.name for t in listed.tools} == set(EXPECTED_TOOLS)
    assert size <= TOOLS_LIST_BUDGET


def _all_property_names(schema: dict) -> set[str]:
    names = set(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        names |= set(definition.get("properties", {}))
    return names


async def test_schemas_show_no_wrapper_artifacts_and_are_documented(tools):
    for name, tool in tools.items():
        assert not WRAPPER_ARTIFACTS & _all_property_names(tool.input_schema), name
        assert tool.input_schema.get("additionalProperties") in (None, False), name
        assert tool.output_schema is None, name  # one JSON text result, not a second structured copy
        assert not _generated_titles(tool.input_schema), name
        first_line = tool.description.strip().splitlines()[0]
        assert first_line[0].isupper() and first_line.endswith("."), name
        assert len(tool.description) < 400, name


async def test_request_models_document_their_fields(tools):
    tune = tools["tune_hyperparameters"].input_schema
    request = tune["$defs"]["TuneRequest"]["properties"]
    assert request["cv_folds"]["minimum"] == 2 and request["cv_folds"]["maximum"] == 20
    strategy = request["strategy"]  # optional: its default depends on the estimator
    assert set(next(s["enum"] for s in strategy["anyOf"] if "enum" in s)) == {"grid", "random", "bayesian", "halving"}
    assert request["estimator"]["default"] == "auto" and "lightgbm" in request["estimator"]["enum"]
    assert tune["properties"]["wait_seconds"]["anyOf"][0]["maximum"] == 50
