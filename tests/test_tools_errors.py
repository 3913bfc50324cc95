"""Every failed tool call answers one JSON text ``{"error": {"code", "message", ...}}`` with isError
(``tools.errors``): bad arguments to every tool, unknown tools, missing things, denials and crashes, in
process, over stdio and over streamable HTTP; each class of the exception tree has its code."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pydantic
import pytest
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from mcp_server import rbac
from mcp_server.error_handling import (
    ConfigurationError,
    ConflictError,
    ExecutionError,
    FailedPreconditionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
    TrackingUnavailableError,
    error_recorder,
)
from tests.support import (  # noqa: F401  (template_db, tool_settings: fixtures)
    VIEWER,
    error_of,
    isolated_settings,
    payload,
    server_env,
    shared_template,
    template_db,
    tool_settings,
)
from tests.support.raw_http import HttpServedProcess, RawHttpSession
from tests.support.stdio import RawStdioServer
from tools import tuning
from tools.errors import ErrorCode, ErrorShape
from tools.error_table import argument_fields, tool_error
from tools.registration import ml_tool
from tools.server import build_server

pytestmark = pytest.mark.anyio
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEVELOPER_TOKEN = "errors-developer-token-0123456789"
VIEWER_TOKEN = "errors-viewer-token-0123456789"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@ml_tool(permission=rbac.Permission.READ)
async def explode() -> str:
    """Fail the way a bug does."""
    raise RuntimeError("secret internal detail")


class Touchy(pydantic.BaseModel):
    x: int

    @pydantic.field_validator("x")
    @classmethod
    def crash(cls, value: int) -> int:
        raise RuntimeError("secret validator detail")  # not a ValueError: pydantic lets it through


@ml_tool(permission=rbac.Permission.READ)
async def touchy(request: Touchy) -> str:
    """Never runs: checking its arguments crashes."""
    return "ran"


@pytest.fixture(scope="module")
def server(tool_settings):
    from tools.server import TOOLS

    built = build_server(tool_settings, tools=[*TOOLS, explode, touchy])
    yield built
    built.state.close()


# --- a bad argument to every tool ------------------------------------------------------------------


def wrong_value(schema: dict) -> object:
    """A value the property's schema refuses: an object where a scalar or text is expected, else text."""
    return {"not": "valid"} if schema.get("type") == "string" or "anyOf" in schema else "not valid"


def bad_calls(tools: list[dict]) -> list[tuple[str, dict, str]]:
    """(tool, arguments, the field the error must name): an unknown argument for every tool, and a
    value of the wrong type for its first argument."""
    calls = []
    for tool in tools:
        calls.append((tool["name"], {"no_such_argument": 1}, "no_such_argument"))
        properties = tool["inputSchema"].get("properties", {})
        if properties:
            first, schema = next(iter(properties.items()))
            calls.append((tool["name"], {first: wrong_value(schema)}, first))
    return calls


def check_bad_call(result, tool: str, arguments: dict, field: str) -> None:
    error = error_of(result)
    assert error["code"] == "invalid_argument", (tool, arguments, error)
    named = [error["field"], *(p["field"] for p in error.get("problems") or [])]
    assert field in named, (tool, arguments, error)
    assert error["message"].startswith("invalid arguments: ") and field in error["message"], error


def tool_dicts(listed) -> list[dict]:
    return [tool.model_dump(by_alias=True) for tool in listed.tools]


async def test_every_tool_answers_a_bad_argument_as_a_json_error(server):
    async with Client(server) as client:
        tools = tool_dicts(await client.list_tools())
        calls = bad_calls(tools)
        for tool, arguments, field in calls:
            check_bad_call(await client.call_tool(tool, arguments), tool, arguments, field)
    with_arguments = [t for t in tools if t["inputSchema"].get("properties")]
    assert {c[0] for c in calls} == {t["name"] for t in tools} and len(calls) == len(tools) + len(with_arguments)
    assert len(with_arguments) >= 15


async def test_a_misspelt_field_comes_with_the_name_meant_and_a_flat_call_with_the_fix(server):
    request = {"dataset": "sklearn:iris", "max_trial": 3}
    async with Client(server) as client:
        misspelt = error_of(await client.call_tool("tune_hyperparameters", {"request": request}))
        flat = error_of(await client.call_tool("tune_hyperparameters", {"dataset": "sklearn:iris", "max_trials": 3}))
        several = error_of(await client.call_tool("list_jobs", {"limit": 1000, "state": "running"}))
    assert misspelt == {
        "code": "invalid_argument", "field": "request.max_trial", "did_you_mean": "max_trials",
        "message": "invalid arguments: request.max_trial: unknown field; did you mean 'max_trials'?",
    }
    assert flat["code"] == "invalid_argument" and flat["field"] in ("dataset", "max_trials")
    fixed = json.loads(re.fullmatch(r"call tune_hyperparameters with (.*)", flat["fix"])[1])
    assert fixed == {"request": {"dataset": "sklearn:iris", "max_trials": 3}}
    assert [p["field"] for p in several["problems"]] == ["state", "limit"] and several["did_you_mean"] == "RUNNING"


# --- unknown tools, missing things, denials, crashes --------------------------------------------------


async def test_an_unknown_tool_is_not_found_with_the_closest_name(server):
    async with Client(server) as client:
        close = error_of(await client.call_tool("get_jobs", {"job_id": "x"}))
        far = error_of(await client.call_tool("zzz", {}))
    assert close == {"code": "not_found", "message": "Unknown tool: get_jobs; did you mean 'get_job'?",
                     "field": "name", "did_you_mean": "get_job"}
    assert far["code"] == "not_found" and far["field"] == "name" and "did_you_mean" not in far
    assert far["fix"].startswith("tools/list shows the ")


async def test_missing_things_are_not_found_and_name_the_argument(server):
    async with Client(server) as client:
        job = error_of(await client.call_tool("cancel_job", {"job_id": "0123456789ab"}))
        dataset = error_of(await client.call_tool("describe_dataset", {"name": "no_such_dataset"}))
        distinct = error_of(await client.call_tool("compare_runs", {"run_ids": ["a" * 32, "a" * 32]}))
    assert job["code"] == "not_found" and job["field"] == "job_id", job
    assert job["message"].startswith("job_id '0123456789ab' does not name a known job; you have no jobs"), job
    assert dataset["code"] == "not_found" and "dataset 'no_such_dataset' not found" in dataset["message"]
    assert dataset["field"] == "dataset", dataset  # the tool's own argument (given here by its old name)
    assert distinct["code"] == "invalid_argument" and distinct["field"] == "run_ids"


async def test_a_denial_says_only_permission_denied(server):
    with rbac.acting_as(VIEWER):
        async with Client(server) as client:
            denied = await client.call_tool("cancel_job", {"job_id": "0123456789ab"})
    assert error_of(denied) == {"code": "permission_denied", "message": "permission denied"}


async def test_a_crash_is_internal_with_the_id_it_was_recorded_under(server):
    async with Client(server) as client:
        crash = await client.call_tool("explode", {})
        assert payload(await client.call_tool("list_jobs", {}))["jobs"] == []  # still serving
    error = error_of(crash)
    assert error["code"] == "internal" and "secret" not in crash.content[0].text
    assert error["error_id"] == error_recorder.recent(1)[0].error_id
    assert error["message"] == (f"internal error while running explode (error id {error['error_id']}); "
                                "the details are in the server log")


async def test_a_crash_while_checking_arguments_is_internal_too(server):
    async with Client(server) as client:
        crash = await client.call_tool("touchy", {"request": {"x": 1}})
    error = error_of(crash)
    assert error["code"] == "internal" and "secret" not in crash.content[0].text
    assert error["error_id"] == error_recorder.recent(1)[0].error_id
    assert error["message"].startswith("internal error while checking the arguments of touchy (error id ")


# --- the table: each class of the tree to one code --------------------------------------------------


def _validation_error() -> pydantic.ValidationError:
    class Model(pydantic.BaseModel):
        cv_folds: int = pydantic.Field(ge=2)

    try:
        Model(cv_folds=1)
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("the model accepted cv_folds=1")


@pytest.mark.parametrize(
    ("exc", "code", "field", "recorded"),
    [
        (InvalidRequestError("cv_folds must be between 2 and 20, got 1"), "invalid_argument", "request.cv_folds", False),
        (_validation_error(), "invalid_argument", "cv_folds", False),
        (NotFoundError("dataset 'x' not found"), "not_found", "request.dataset", False),
        (PermissionDeniedError("role viewer lacks execute"), "permission_denied", None, False),
        (ConflictError("resume_from='abc' is already being resumed by another job"), "conflict", "request.resume_from", False),
        (FailedPreconditionError("run abc is FINISHED; only a RUNNING run can be ended"), "failed_precondition", None, False),
        (ResourceLimitError("max_trials=900 is above max_trials_limit=500"), "limit_exceeded", "request.max_trials", False),
        (ExecutionError("stage train failed: ValueError"), "execution_failed", None, True),
        (TrackingUnavailableError("tracking store unavailable: refused"), "unavailable", None, True),
        (ToolError("job 0123456789ab failed: data checks stopped this job"), "execution_failed", None, False),
        (ConfigurationError("bad roles file"), "internal", None, True),
        (KeyError("boom"), "internal", None, True),
    ],
)
def test_each_error_class_has_its_code(exc, code, field, recorded):
    detail = tool_error(exc, "tune_hyperparameters", argument_fields(tuning.tune_hyperparameters))
    assert (detail.code, detail.field, detail.error_id is not None) == (code, field, recorded)
    if recorded:
        assert f"(error id {detail.error_id})" in detail.message
    if code == "permission_denied":
        assert detail.message == "permission denied"


async def test_an_error_result_the_sdk_made_is_put_in_the_shape():
    """The net under the wrappers: the SDK's own text (a crash it caught) becomes an internal error."""
    sdk_made = CallToolResult(content=[TextContent(type="text", text="Error executing tool x")], is_error=True)

    async def call_next(_ctx):
        return sdk_made

    shaped = await ErrorShape()(SimpleNamespace(method="tools/call"), call_next)
    error = error_of(shaped)
    assert error["code"] == "internal" and error["message"] == f"Error executing tool x (error id {error['error_id']})"
    ours = ErrorShape()
    assert await ours(SimpleNamespace(method="tools/call"), lambda _ctx: _async(shaped)) is shaped


async def _async(value):
    return value


def test_the_readme_lists_every_error_code():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme[readme.index("| code | meaning | what to do |"):]
    table = table[: table.index("\n\n")]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    assert listed == {code.value for code in ErrorCode}


# --- over the transports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("errors-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    return home


@pytest.fixture(scope="module")
def http_server(data_home, tmp_path_factory):
    import hashlib

    viewer = [{"sha256": hashlib.sha256(VIEWER_TOKEN.encode()).hexdigest(), "principal": "vera", "roles": ["viewer"]}]
    env = server_env(data_home, NBA_MCP_HTTP_TOKEN=DEVELOPER_TOKEN, NBA_MCP_HTTP_TOKEN_ROLE="developer",
                     NBA_MCP_HTTP_TOKENS=json.dumps(viewer))
    served = HttpServedProcess(env, tmp_path_factory.mktemp("logs") / "http.log")
    yield served
    served.stop()


FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def print_figures():
    yield
    if FIGURES:
        print("\nerror-shape figures:", json.dumps(FIGURES))


def walk_errors(call_tool, tools: list[dict], transport: str) -> int:
    """Every tool with a bad argument, an unknown tool and a missing job; returns the calls made."""
    calls = bad_calls(tools)
    started = time.perf_counter()
    for tool, arguments, field in calls:
        check_bad_call(call_tool(tool, arguments), tool, arguments, field)
    assert error_of(call_tool("get_jobs", {}))["did_you_mean"] == "get_job"
    assert error_of(call_tool("get_job", {"job_id": "0123456789ab"}))["code"] == "not_found"
    made = len(calls) + 2
    FIGURES[transport] = {"tools": len(tools), "error_calls": made, "parsed_as_json": made,
                          "ms_per_call": round(1000 * (time.perf_counter() - started) / made, 1)}
    return made


def test_every_tool_error_over_stdio_is_json(data_home, tmp_path):
    server = RawStdioServer(server_env(data_home), tmp_path / "stdio.log")
    try:
        made = walk_errors(server.call_tool, server.request("tools/list", {})["tools"], "stdio 2025-06-18")
    finally:
        server.stop()
    assert made > 30


@pytest.mark.parametrize("version", ["2025-06-18", "2026-07-28"])
def test_every_tool_error_over_http_is_json(http_server, version):
    developer = RawHttpSession(http_server.url, DEVELOPER_TOKEN, version)
    viewer = RawHttpSession(http_server.url, VIEWER_TOKEN, version)
    try:
        made = walk_errors(developer.call_tool, developer.request("tools/list", {})["result"]["tools"], f"http {version}")
        denied = viewer.call_tool("cancel_job", {"job_id": "0123456789ab"})
    finally:
        developer.close()
        viewer.close()
    assert made > 30
    assert error_of(denied) == {"code": "permission_denied", "message": "permission denied"}
