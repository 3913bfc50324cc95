"""Shared fixtures: isolated data home, real MLflow stores (sqlite file and a real `mlflow server`)."""

from __future__ import annotations

import os

import pytest

# MLflow must stay quiet on stdout and offline; set before anything imports it.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)

from tools.testing import SHARED_DATA, MlflowServer  # noqa: E402  (after the MLflow environment above)

ROOKIES_CSV = SHARED_DATA / "nba_logreg.csv"
SEASONS_CSV = SHARED_DATA / "all_seasons.csv"


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

    return Settings(data_home=tmp_path / "home", data_dirs=[SHARED_DATA])


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()
