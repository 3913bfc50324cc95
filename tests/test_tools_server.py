"""The server core through the SDK's in-memory Client: wrappers, identity, errors, resources."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import types

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from mcp_server import rbac
from mcp_server.error_handling import (
    ConfigurationError,
    ExecutionError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
    TrackingUnavailableError,
    error_id_of,
    error_recorder,
    handle_errors,
)
from mcp_server.settings import TokenEntry
from tools.error_table import tool_error_message
from tools.registration import READ_ONLY, ml_tool, tool_spec
from tools.identity import SettingsTokenVerifier
from tools.server import build_server
from tests.support import error_of, payload, NOBODY, VIEWER, isolated_settings, template_db  # noqa: F401  (fixture)

pytestmark = pytest.mark.anyio



@pytest.fixture
def settings(tmp_path, template_db):
    return isolated_settings(tmp_path / "home", template_db)


@pytest.fixture
def server(settings):
    server = build_server(settings)
    yield server
    server.state.close()


@pytest.fixture(params=["auto", "legacy"])
def mode(request):
    return request.param


# --- ml_tool ------------------------------------------------------------------------------------


class Echo(BaseModel):
    text: str


async def echo(text: str, times: int = 1) -> Echo:
    """Echo text."""
    return Echo(text=text * times)


def test_ml_tool_keeps_signature_docstring_and_asyncness():
    wrapped = ml_tool(permission=rbac.Permission.READ, annotations=READ_ONLY)(echo)
    assert inspect.signature(wrapped) == inspect.signature(echo)
    assert inspect.iscoroutinefunction(wrapped)
    assert (wrapped.__name__, wrapped.__doc__) == ("echo", "Echo text.")
    assert tool_spec(wrapped).permission is rbac.Permission.READ


@pytest.mark.parametrize(
    ("kwargs", "fn", "message"),
    [
        ({"permission": "read"}, echo, "permission must be an rbac.Permission"),
        ({"permission": rbac.Permission.READ}, lambda text: text, "must be declared async def"),
    ],
)
def test_ml_tool_refuses_bad_declarations(kwargs, fn, message):
    with pytest.raises(ConfigurationError, match=message):
        ml_tool(**kwargs)(fn)


def test_build_server_refuses_a_tool_without_permission(settings):
    with pytest.raises(ConfigurationError, match="missing on: echo"):
        build_server(settings, tools=[echo])  # no ml_tool: no declared permission


def test_http_transport_requires_a_token(settings):
    with pytest.raises(ConfigurationError, match="require a bearer token"):
        build_server(settings, transport="http")


# --- the error table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (InvalidRequestError("cv_folds must be between 2 and 20, got 1"), "cv_folds must be between 2 and 20, got 1"),
        (NotFoundError("dataset 'x' not found"), "dataset 'x' not found"),
        (ResourceLimitError("grid has 9000 points, above max_grid_size=2000"), "above max_grid_size=2000"),
        (PermissionDeniedError("role viewer lacks execute"), "permission denied"),
    ],
)
def test_fixable_errors_state_the_rule_and_denials_stay_generic(exc, expected):
    message = tool_error_message(exc, "some_tool")
    assert expected in message
    assert "viewer" not in message and "error id" not in message


@pytest.mark.parametrize(
    ("exc", "leaks"),
    [
        (RuntimeError("secret path /etc/shadow"), False),
        (ConfigurationError("bad roles file"), False),
        (ExecutionError("stage train failed: ValueError"), True),
        (TrackingUnavailableError("tracking store unavailable"), True),
    ],
)
def test_server_side_errors_are_recorded_with_an_id(exc, leaks):
    message = tool_error_message(exc, "some_tool")
    record = error_recorder.recent(1)[0]
    assert f"error id {record.error_id}" in message
    assert record.context == "tool some_tool"
    assert (str(exc) in message) is leaks



@pytest.mark.parametrize("exc", [ExecutionError("stage train failed"), RuntimeError("boom")])
def test_an_error_recorded_by_handle_errors_keeps_its_id_and_is_counted_once(exc):
    @handle_errors("domain work")
    def domain_work():
        raise exc

    before = error_recorder.counts().get(type(exc).__name__, 0)
    with pytest.raises(type(exc)):
        domain_work()
    message = tool_error_message(exc, "some_tool")
    assert f"error id {error_id_of(exc)}" in message
    assert error_recorder.counts()[type(exc).__name__] == before + 1
    assert error_recorder.recent(1)[0].context == "domain work"

async def test_unexpected_error_is_sanitized_and_server_keeps_serving(settings):
    @ml_tool(permission=rbac.Permission.READ)
    async def explode() -> str:
        """Fail."""
        raise RuntimeError("secret internal detail")

    server = build_server(settings, tools=[explode, ml_tool(permission=rbac.Permission.READ)(echo)])
    async with Client(server) as client:
        result = await client.call_tool("explode", {})
        error = error_of(result)
        assert "secret" not in result.content[0].text and "internal error while running explode (error id " in error["message"]
        assert error["code"] == "internal" and f"(error id {error['error_id']})" in error["message"]
        assert payload(await client.call_tool("echo", {"text": "ok"})) == {"text": "ok"}


# --- startup cost -------------------------------------------------------------------------------

HEAVY_MODULES = ("pandas", "numpy", "scipy", "sklearn", "matplotlib", "mlflow", "skopt")


def test_building_the_server_loads_no_heavy_library(tmp_path):
    """A fresh server answers tools/list fast: tool schemas use the domain models, which load
    pandas, scikit-learn and MLflow only inside the functions that need them."""
    code = f"""
import sys
import mcp_server.data_validation_pipeline, mcp_server.datasets, mcp_server.estimators, mcp_server.training_pipeline
from mcp_server.settings import Settings
from tools.server import build_server
build_server(Settings(data_home={str(tmp_path)!r}))
print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_invalid_arguments_name_field_rule_and_value(server, mode):
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("list_jobs", {"limit": 1000})
    error = error_of(result)
    text = error["message"]
    assert error["code"] == "invalid_argument" and error["field"] == "limit"
    assert "limit" in text and "less than or equal to 100" in text and "(got 1000)" in text and "errors.pydantic.dev" not in text


# --- identity and permissions -------------------------------------------------------------------


async def test_viewer_sees_only_read_tools_and_is_denied_execute(server, mode):
    with rbac.acting_as(VIEWER):
        async with Client(server, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            denied = await client.call_tool("cancel_job", {"job_id": "abc"})
    permissions = server.state.tool_permissions
    assert names == {n for n, p in permissions.items() if p is rbac.Permission.READ}
    assert "cancel_job" not in names
    assert error_of(denied) == {"code": "permission_denied", "message": "permission denied"}


async def test_local_principal_applies_without_a_transport_identity(server):
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == set(server.state.tool_permissions)  # local role developer: everything


async def test_identity_comes_from_the_access_token(server, mode):
    token = AccessToken(token="t", client_id="vera", subject="vera", scopes=["viewer"], claims={"roles": ["viewer"]})
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        async with Client(server, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            denied = await client.call_tool("cancel_job", {"job_id": "abc"})
    finally:
        auth_context_var.reset(reset)
    assert "cancel_job" not in names and error_of(denied) == {"code": "permission_denied", "message": "permission denied"}


async def test_token_verifier_maps_hashed_and_plaintext_tokens(tmp_path):
    entry = TokenEntry(sha256=hashlib.sha256(b"s3cret").hexdigest(), principal="vera", roles=["viewer"])
    verifier = SettingsTokenVerifier(
        isolated_settings(tmp_path, http_tokens=[entry], http_token="plain", http_token_role="analyst")
    )
    viewer = await verifier.verify_token("s3cret")
    plain = await verifier.verify_token("plain")
    assert (viewer.subject, viewer.scopes) == ("vera", ["viewer"])
    assert plain.scopes == ["analyst"]
    assert "s3cret" not in viewer.token and "plain" not in plain.token
    assert await verifier.verify_token("wrong") is None
    assert await verifier.verify_token("") is None


# --- resources and prompt -----------------------------------------------------------------------


async def test_run_resource_returns_the_run_and_errors_for_unknown_ids(server, mode):
    tracker = server.state.tracker()
    with tracker.start_run("resource-run") as run_id:
        tracker.log_metric("accuracy", 0.9)
    async with Client(server, mode=mode) as client:
        contents = (await client.read_resource(f"runs://{run_id}")).contents[0]
        assert '"accuracy": 0.9' in contents.text and contents.mime_type == "application/json"
        with pytest.raises(MCPError):
            await client.read_resource("runs://0123456789abcdef0123456789abcdef")
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert templates == {"runs://{run_id}", "datasets://{name}/schema"}


async def test_dataset_schema_resource_and_permission(server):
    async with Client(server) as client:
        text = (await client.read_resource("datasets://iris/schema")).contents[0].text
    assert '"sepal length (cm)"' in text and '"target"' in text
    with rbac.acting_as(NOBODY):
        async with Client(server) as client:
            with pytest.raises(MCPError, match="permission denied"):
                await client.read_resource("datasets://iris/schema")


async def test_prompt_walks_through_the_workflow(server):
    async with Client(server) as client:
        prompt = await client.get_prompt("train_and_promote", {"dataset": "nba_logreg", "target": "TARGET_5Yrs"})
    text = prompt.messages[0].content.text
    positions = [text.index(word) for word in ("validate_data", "tune_hyperparameters", "run_pipeline", "compare_runs", "promote_model")]
    assert positions == sorted(positions) and "TARGET_5Yrs" in text


# --- health -------------------------------------------------------------------------------------


async def test_server_health_reports_store_jobs_and_latencies(server):
    async with Client(server) as client:
        await client.call_tool("list_jobs", {})
        health = payload(await client.call_tool("server_health", {}))
    assert health["status"] == "ok" and health["tracking_reachable"] is True
    assert health["tools"]["list_jobs"]["calls"] >= 1
    assert health["jobs_running"] == 0 and health["max_concurrent_jobs"] == 2


async def test_server_health_is_degraded_when_the_store_is_unreachable(tmp_path):
    settings = isolated_settings(tmp_path, tracking_uri="http://127.0.0.1:9", tracking_timeout_seconds=2)
    server = build_server(settings)
    async with Client(server) as client:
        health = payload(await client.call_tool("server_health", {}))
    assert health["status"] == "degraded" and not health["tracking_reachable"]
    assert health["tracking_error"]
