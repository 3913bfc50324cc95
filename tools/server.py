"""The MCP server: ``build_server(settings) -> NbaMcpServer`` wires tools, resources, prompt and routes.

``TOOLS`` is the one list of served tools: module-level ``ml_tool`` functions, each declaring its
permission (``build_server`` refuses a tool without one). Tools reach the server's state through
the lifespan context (``tools.app_state.state_of(ctx)``). Arguments are checked before a tool
runs (``tools.arguments``); every failed call is answered as one JSON text (``tools.errors``). Identity comes from the transport (``tools.identity``): stdio serves
the configured local principal, HTTP and SSE require a bearer token. Heavy libraries load on
first use, inside tools.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.transport_security import TransportSecuritySettings

from mcp_server import rbac
from mcp_server.error_handling import (
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    ResourceLimitError,
    configure_error_handling,
)
from mcp_server.settings import Settings
from tools import data, experiments, health, jobs, models, pipelines, tuning
from tools.admission import ReadCallLimit
from tools.app_state import AppState
from tools.arguments import ArgumentCheck
from tools.blocking import run_stoppable
from tools.errors import ErrorShape
from tools.health import server_version
from tools.identity import IdentityMiddleware, SettingsTokenVerifier
from tools.registration import make_tool, tool_spec
from tools.resource_server import register_root_metadata, resource_server_auth

logger = logging.getLogger(__name__)

SERVER_NAME = "nba-mcp"
Transport = Literal["stdio", "http", "sse", "memory"]

# Every served tool, in the order tools/list shows them.
TOOLS: tuple[Callable[..., Any], ...] = (
    *data.TOOLS, *experiments.TOOLS, *tuning.TOOLS, *pipelines.TOOLS, *models.TOOLS, *jobs.TOOLS, *health.TOOLS,
)

INSTRUCTIONS = """\
Train, tune, compare and promote scikit-learn models on tabular data (NBA player statistics and
built-in sklearn data sets); every run is tracked in MLflow. Typical session: list_datasets →
describe_dataset → validate_data → start_experiment → tune_hyperparameters → run_pipeline with the
best params → compare_runs → promote_model → predict. Long jobs report progress; when a call
returns a job id, poll get_job (or cancel_job)."""


class NbaMcpServer(MCPServer):
    """The SDK server with the state its tools share (for the CLI's shutdown and for tests)."""

    state: AppState
    token_verifier: SettingsTokenVerifier | None  # shared by the SDK's auth and tools.http_guard


def build_server(
    settings: Settings | None = None,
    *,
    transport: Transport = "memory",
    host: str | None = None,
    port: int | None = None,
    state: AppState | None = None,
    tools: Sequence[Callable[..., Any]] = TOOLS,
) -> NbaMcpServer:
    """Build the server for ``transport``; HTTP and SSE need at least one configured token.

    ``tools``: ``ml_tool`` functions to serve (default: all of ``TOOLS``).
    """
    settings = settings or Settings()
    state = state or AppState(settings)
    rbac.configure_rbac(settings)
    configure_error_handling(settings)

    auth_kwargs: dict = {}
    verifier: SettingsTokenVerifier | None = None
    if transport in ("http", "sse"):
        verifier = SettingsTokenVerifier(settings)
        if not verifier.configured:
            raise ConfigurationError(
                "the HTTP and SSE transports require a bearer token: set NBA_MCP_HTTP_TOKEN, http_tokens "
                "(sha256, principal, roles) in the config file, or an identity provider ([jwt])"
            )
        if transport == "sse" and settings.http_stateless:
            logger.warning("http_stateless applies to streamable HTTP only: the legacy SSE transport keeps one "
                           "stream per client (serve --transport http for stateless replicas)")
        auth_kwargs = {"token_verifier": verifier, "auth": resource_server_auth(settings, host, port)}

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        # Entered per connection on stdio/SSE: the state (and its jobs) is built outside.
        yield state

    served = [make_tool(fn) for fn in tools]  # refuses a tool without a declared permission
    state.tool_permissions.update({tool.name: tool_spec(tool.fn).permission for tool in served})
    server = NbaMcpServer(
        SERVER_NAME,
        version=server_version(),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        tools=served,
        middleware=[ErrorShape(), IdentityMiddleware(settings, state.tool_permissions),
                    ArgumentCheck({tool.name: tool for tool in served},
                                  date_columns=lambda dataset: data.date_columns_of(state, dataset)),
                    ReadCallLimit(settings.max_read_calls_per_principal)],
        log_level=settings.log_level,
        **auth_kwargs,
    )
    server.state = state
    server.token_verifier = verifier
    _register_resources(server, state)
    if verifier is not None:
        register_root_metadata(server, settings)
    _register_prompts(server)
    _register_routes(server, state)
    return server


def http_transport_security(settings: Settings, host: str, port: int) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding: loopback names plus the configured origins."""
    hosts = {host, "127.0.0.1", "localhost", "[::1]"}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted({f"{h}:{port}" for h in hosts} | hosts),
        allowed_origins=sorted(
            {f"http://{h}:{port}" for h in hosts} | set(settings.allowed_origins)
        ),
    )


# --- resources ------------------------------------------------------------------------------


def _require_read() -> None:
    # Resources bypass the tool wrappers; the same rule applies: reading needs READ.
    principal = rbac.current_principal()
    if principal is None or not rbac.authorize(principal, rbac.Permission.READ, rbac.current_role_table()):
        raise ResourceError("permission denied")


def _register_resources(server: MCPServer, state: AppState) -> None:
    @server.resource(
        "runs://{run_id}",
        name="run",
        description="One MLflow run: status, params, metrics, tags, parent run.",
        mime_type="application/json",
    )
    async def run_resource(run_id: str) -> str:
        _require_read()
        from tools.identity import shown_path

        def read(_stop) -> str:
            run = state.tracker().get_run(run_id)
            return run.model_copy(update={"artifact_uri": shown_path(run.artifact_uri)}).model_dump_json(indent=2)

        return await _read_or_raise(read)

    @server.resource(
        "datasets://{name}/schema",
        name="dataset_schema",
        description="A schema inferred from a data set: columns with dtype, nullability, ranges, "
        "allowed values, identifier columns (a draft to review, usable by validate_data).",
        mime_type="application/json",
    )
    async def dataset_schema_resource(name: str) -> str:
        _require_read()

        def read(stop) -> str:
            from mcp_server.data_validation_pipeline import infer_schema

            schema = infer_schema(state.catalog.load(name, stop=stop), state.catalog.builtin_target(name), name=name)
            return json.dumps(schema.model_dump(mode="json", exclude_none=True), indent=2)

        return await _read_or_raise(read)


async def _read_or_raise(read) -> str:
    try:
        return await run_stoppable(read)
    except (NotFoundError, InvalidRequestError, ResourceLimitError) as exc:
        raise ResourceError(str(exc)) from exc


# --- prompt ---------------------------------------------------------------------------------


def _register_prompts(server: MCPServer) -> None:
    @server.prompt(
        name="train_and_promote",
        description="Walk through validate → tune → train → compare → promote for one data set.",
    )
    def train_and_promote(
        dataset: str = "nba:raptor", target: str = "predator_total", model_name: str = "nba_model"
    ) -> str:
        return f"""\
Build and promote a model for the data set "{dataset}" (target column "{target}"), step by step:
1. Validate: call describe_dataset and validate_data for "{dataset}" with the target. Leave out every
   column in suggested_drop (identifiers, dates, leaks). If rows repeat an entity (entity_column: a
   player, a game), use split={{"kind": "group", "column": <it>}}; for dated rows where the future is
   what you predict, split={{"kind": "time", "column": <the date>}}.
2. Tune: call start_experiment (name it after the data set), then tune_hyperparameters with that drop
   and split and a small budget first (e.g. random strategy, 10-20 trials, 3-5 CV folds). If you get
   a job id, poll get_job until it finishes. If the job stops on data checks, apply the drop it names.
3. Train: call run_pipeline with the best params, the same drop and split (so its test rows are ones
   the search never saw), registering the model as "{model_name}".
4. Compare: call compare_runs on the new run and the current champion (if any); put the test score
   beside cv_<metric>_mean and explain which metrics improved and by how much.
5. Promote: only if the new run is better and has no warnings, call promote_model; a flagged result
   (warnings: near-perfect score, leak suspects, CV/test gap, entity overlap) is not promoted: report
   its warnings instead. Then call predict on two or three rows and report any row_warnings.
Report run ids, metric values and the decision you made at each step."""


# --- routes ---------------------------------------------------------------------------------


def _register_routes(server: MCPServer, state: AppState) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from mcp_server import monitoring

    @server.custom_route("/health", methods=["GET"])
    async def health(_request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "version": server_version(), "uptime_seconds": round(state.uptime_seconds, 3)}
        )

    @server.custom_route("/metrics", methods=["GET"])
    async def prometheus_metrics(_request: Request) -> Response:
        return Response(
            monitoring.prometheus_text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )
