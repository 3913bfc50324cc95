"""Issue 27's acceptance, as an agent meets it over stdio: on a game log whose six shooting columns
rebuild both scores, ``validate_data`` on the reduced feature set finds the leak and names the columns
before any training; a model below chance is flagged ``below_baseline`` and not champion; a date
column as target is refused in under a second; a pipeline stopped by the leak screen is a FAILED job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests._leaky_frames import SHOOTING_COLUMNS, inverted_frame, shooting_log
from tests.support import error_text, isolated_settings, payload, server_env, shared_template

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]


async def test_an_agent_is_told_of_the_rebuilt_leak_the_below_chance_model_and_the_date_target(tmp_path_factory):
    home = tmp_path_factory.mktemp("champion-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    data = tmp_path_factory.mktemp("champion-data")
    shooting_log(n_games=1500).to_csv(data / "shooting.csv", index=False)
    inverted_frame().to_csv(data / "inverted.csv", index=False)
    params = StdioServerParameters(command=sys.executable, args=["-m", "tools.cli", "serve"],
                                   env=server_env(home, data_dirs=[data], NBA_MCP_LOG_LEVEL="WARNING"),
                                   cwd=str(PROJECT_ROOT))
    drop = ["row_id", "game_date"]
    async with Client(params) as client:
        # The reduced set the agent means to train on: the leak is found before any training.
        report = payload(await client.call_tool("validate_data", {"request": {
            "dataset": "shooting", "target": "win", "drop": drop}}))
        leaks = [i for i in report["issues"] if i["rule"] == "linear_leak"]
        assert leaks and set(leaks[0]["drop"]) == set(SHOOTING_COLUMNS), report["issues"]
        assert not report["passed"]

        stopped = payload(await client.call_tool("run_pipeline", {"request": {
            "dataset": "shooting", "target": "win", "drop": drop, "estimator": "logistic_regression",
            "model_name": "shooting"}, "wait_seconds": 0}))
        job = payload(await client.call_tool("get_job", {"job_id": stopped["job_id"], "wait_seconds": 30}))
        assert job["state"] == "FAILED" and "Fix: drop=" in job["error"]
        assert job["result"]["failed_stage"] == "data_validation"

        below = payload(await client.call_tool("run_pipeline", {"request": {
            "dataset": "inverted", "target": "y", "estimator": "logistic_regression", "model_name": "inverted",
            "split": {"kind": "time", "column": "t", "test_size": 0.2}, "cv_folds": None}}))["result"]
        assert below["metrics"]["test_roc_auc"] < 0.5
        assert "below_baseline" in {w["code"] for w in below["warnings"]}
        assert not below["promotion"]["promoted"]
        assert below["baseline"]["chance"] == 0.5 and not below["baseline"]["beaten"]

        started = time.perf_counter()
        refused = await client.call_tool("run_pipeline", {"request": {"dataset": "shooting", "target": "game_date"}})
        assert refused.is_error and "holds dates" in error_text(refused)
        assert time.perf_counter() - started < 1.0
