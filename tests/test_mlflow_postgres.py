"""The product against the team's tracking setup: an `mlflow server --serve-artifacts` on a private
PostgreSQL cluster (see ``postgres_mlflow_server`` in conftest). The tracker's contract tests run
there too (tests/test_mlflow_integration.py, backend ``postgres``); here: a tuning job resumed,
a pipeline registering and promoting through the registry, and crash reaping.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mcp import Client

from mcp_server.mlflow_integration import RunStatus, get_mlflow_tracker
from tests._leaky_frames import game_log
from tests.support import payload, isolated_settings
from mcp_server.mlflow_integration import reap_orphaned_runs
from tools.server import build_server

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
GAMES = game_log().drop(columns=["PTS", "OPP_PTS", "Date", "GAME_ID"])


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def pg_settings(postgres_mlflow_server, tmp_path_factory):
    data = tmp_path_factory.mktemp("pg-data")
    GAMES.to_csv(data / "games.csv", index=False)
    return isolated_settings(tmp_path_factory.mktemp("pg-home"), tracking_uri=postgres_mlflow_server.uri,
                             data_dirs=[data])


@pytest.fixture(scope="module")
def pg_server(pg_settings):
    server = build_server(pg_settings)
    yield server
    server.state.close()


async def test_a_tuning_job_resumes_on_the_postgres_store(pg_server, pg_settings):
    request = {"dataset": "iris", "estimator": "decision_tree", "strategy": "random", "max_trials": 3,
               "cv_folds": 3, "seed": 3, "experiment_name": f"pg-resume-{uuid.uuid4().hex[:6]}",
               "space": {"max_depth": {"type": "int", "low": 1, "high": 30}}}
    async with Client(pg_server) as client:
        first = await client.call_tool("tune_hyperparameters", {"request": request})
        assert not first.is_error, first.content[0].text
        parent = payload(first)["result"]["parent_run_id"]
        resumed = await client.call_tool("tune_hyperparameters",
                                         {"request": {**request, "max_trials": 6, "resume_from": parent}})
    assert not resumed.is_error, resumed.content[0].text
    outcome = payload(resumed)["result"]
    assert outcome["n_trials"] == 6 and outcome["parent_run_id"] == parent
    tracker = get_mlflow_tracker(request["experiment_name"], settings=pg_settings)
    try:
        trials = tracker.search_runs(f"tags.mlflow.parentRunId = '{parent}'", 100)
        assert sorted(int(r.tags["nba_mcp.trial_number"]) for r in trials) == list(range(6))
        assert {r.status for r in trials} == {RunStatus.FINISHED}
        assert tracker.get_run(parent).status is RunStatus.FINISHED
    finally:
        tracker.close()


async def test_a_pipeline_registers_promotes_and_predicts_through_the_server(pg_server, pg_settings):
    name = f"pg-model-{uuid.uuid4().hex[:6]}"
    pipeline = {"dataset": "games", "target": "WL", "estimator": "logistic_regression", "model_name": name,
                "experiment_name": "pg-pipelines"}
    async with Client(pg_server) as client:
        champion = payload(await client.call_tool("run_pipeline", {"request": pipeline}))["result"]
        challenger = payload(await client.call_tool("run_pipeline", {"request": {
            **pipeline, "estimator": "decision_tree", "params": {"max_depth": 1}}}))["result"]
        rows = GAMES.drop(columns="WL").head(3).to_dict(orient="records")
        predicted = payload(await client.call_tool("predict", {
            "model_name": name, "rows": rows}))
    assert champion["status"] == "COMPLETED" and champion["model_version"] == 1
    assert champion["promotion"]["promoted"]
    assert challenger["model_version"] == 2 and not challenger["promotion"]["promoted"]
    assert len(predicted["predictions"]) == 3
    tracker = get_mlflow_tracker("pg-pipelines", settings=pg_settings)
    try:
        info = tracker.get_model_version(name, "champion")
        assert info["version"] == 1 and "champion" in info["aliases"]
    finally:
        tracker.close()


def test_crash_reaping_ends_a_dead_process_runs_on_the_postgres_store(postgres_mlflow_server, tmp_path):
    settings = isolated_settings(tmp_path / "home", tracking_uri=postgres_mlflow_server.uri)
    experiment = f"pg-crash-{uuid.uuid4().hex[:6]}"
    code = (
        "import os\n"
        "from mcp_server.mlflow_integration import get_mlflow_tracker\n"
        "from mcp_server.settings import Settings\n"
        f"t = get_mlflow_tracker({experiment!r}, settings=Settings(data_home={str(tmp_path)!r}, "
        f"tracking_uri={postgres_mlflow_server.uri!r}))\n"
        "print(t.create_run('orphan'), flush=True)\n"
        "os._exit(9)\n"  # dies without ending its run, as SIGKILL would
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    orphan = out.stdout.strip().splitlines()[-1]
    tracker = get_mlflow_tracker(experiment, settings=settings)
    try:
        live = tracker.create_run("mine")
        assert tracker.get_run(orphan).status is RunStatus.RUNNING
        assert orphan in reap_orphaned_runs(settings)
        assert tracker.get_run(orphan).status is RunStatus.KILLED
        assert tracker.get_run(live).status is RunStatus.RUNNING
        tracker.end_run("FINISHED", run_id=live)
    finally:
        tracker.close()
