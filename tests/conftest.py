"""Shared fixtures: isolated data home, real MLflow stores (sqlite file and a real `mlflow server`)."""

from __future__ import annotations

import os
import tempfile

import pytest

# MLflow must stay quiet on stdout and offline; set before anything imports it.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)

# A user's own config file (~/.config/nba-mcp/config.toml) must not change what the tests see.
os.environ.pop("NBA_MCP_CONFIG", None)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="nba-mcp-test-config-")

from tests.support import MlflowServer, data_folder  # noqa: E402  (after the MLflow environment above)


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_home(tmp_path_factory):
    """Never touch the user's real data folder: every default path points into a temp folder."""
    home = tmp_path_factory.mktemp("nba-mcp-home")
    os.environ["NBA_MCP_DATA_HOME"] = str(home)
    yield home


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def settings(tmp_path):
    from mcp_server.settings import Settings

    return Settings(data_home=tmp_path / "home", data_dirs=[data_folder()])


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_mlflow_server(tmp_path_factory):
    """A private PostgreSQL cluster and an `mlflow server --serve-artifacts` on it (one per session);
    skips with one reason where the PostgreSQL binaries or psycopg2 are missing."""
    from tests.support.engines import PostgresCluster, postgres_skip_reason

    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    with PostgresCluster() as postgres:
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-postgres"), backend_store_uri=postgres.uri())
        server.postgres = postgres
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def idp():
    """An identity provider on loopback: keys made here, a JWKS served over HTTP, tokens signed with them."""
    from tests.support.identity_provider import IdentityProvider

    provider = IdentityProvider()
    yield provider
    provider.close()
