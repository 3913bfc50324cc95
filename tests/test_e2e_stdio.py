"""End to end over stdio: a spawned server runs a tuning job with progress, then cancellations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support import payload, data_folder, isolated_settings, shared_template

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SLOW = {"dataset": "breast_cancer", "estimator": "random_forest", "max_trials": 60, "cv_folds": 5, "seed": 3,
        "space": {"n_estimators": {"type": "int", "low": 60, "high": 150}}}


def child_env(data_home: Path) -> dict[str, str]:
    return {"NBA_MCP_DATA_HOME": str(data_home), "PYTHONUNBUFFERED": "1", "NBA_MCP_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("stdio-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    return home


async def test_tuning_job_over_stdio_with_progress_and_cancellation(data_home):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tools.cli", "serve"], env=child_env(data_home), cwd=str(PROJECT_ROOT)
    )
    progress = []

    async def on_progress(current, total, message):
        progress.append((current, total, message))

    async with Client(params) as client:
        # 1. A small job finishes within the call; progress arrives per trial.
        small = {"dataset": "iris", "estimator": "decision_tree", "max_trials": 3, "cv_folds": 3, "seed": 5}
        done = payload(await client.call_tool("tune_hyperparameters", {"request": small}, progress_callback=on_progress))
        assert done["state"] == "SUCCEEDED" and done["result"]["n_trials"] == 3
        assert [m for _, _, m in progress if m.startswith("trial 3/3")]

        # 2. cancel_job stops a running job after its current trial; its MLflow run ends KILLED.
        started = payload(await client.call_tool("tune_hyperparameters", {"request": SLOW, "wait_seconds": 1.5}))
        assert not started["done"]
        await client.call_tool("cancel_job", {"job_id": started["job_id"]})
        final = payload(await client.call_tool("get_job", {"job_id": started["job_id"], "wait_seconds": 30}))
        assert final["state"] == "CANCELLED" and final["result"]["stopped_reason"] == "cancelled"
        run = payload(await client.call_tool("get_run", {"run_id": final["result"]["parent_run_id"]}))
        assert run["status"] == "KILLED"

        # 3. Cancelling the waiting request cancels the job it was waiting for.
        with anyio.move_on_after(2):
            await client.call_tool("tune_hyperparameters", {"request": {**SLOW, "seed": 4}, "wait_seconds": 30})
        listed = payload(await client.call_tool("list_jobs", {"kind": "tune", "limit": 1}))["jobs"][0]
        final = payload(await client.call_tool("get_job", {"job_id": listed["job_id"], "wait_seconds": 30}))
        assert final["state"] == "CANCELLED" and listed["params"]["seed"] == 4  # the list says which job


def test_demo_plays_the_whole_session_on_an_nba_csv(data_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_MCP_")}
    completed = subprocess.run(
        [sys.executable, "-m", "tools.cli", "demo", "--dataset", str(data_folder() / "nba_logreg.csv"),
         "--target", "TARGET_5Yrs", "--budget", "6", "--data-home", str(data_home)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr
    for expected in ("→ validate_data", "column 'Name' is an identifier", "data checks stopped this job",
                     "drop=['Name']", "flagged: leak_suspect", "→ tune_hyperparameters", "winner ",
                     "→ compare_runs", "from_search", "predicted TARGET_5Yrs", "mlflow ui --backend-store-uri sqlite:///"):
        assert expected in out, expected
