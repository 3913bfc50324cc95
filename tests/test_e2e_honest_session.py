"""An agent's session over stdio on a game-log CSV that tries to fool the server: an index column,
a date column and the score columns that decide the result.

validate_data names all three with the drop to make; the naive run_pipeline call is stopped (its
job FAILED, a tool error; no model registered); a leak_check='warn' call trains but is flagged and not promoted; the
corrected call (drop + time split) succeeds with no warning and becomes champion."""

from __future__ import annotations

import json
import re

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests._leaky_frames import write_game_log
from tests.support import error_text, payload, isolated_settings, server_env, shared_template

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NAIVE = {"dataset": "games", "target": "WL", "model_name": "games-wl", "experiment_name": "honest-e2e", "cv_folds": 3}


async def finished(client, answer) -> dict:
    """The job's final view: polled with get_job while a loaded machine keeps it past the first wait."""
    job = payload(answer)
    while not job["done"]:
        job = payload(await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 30}))
    return job


async def test_an_agent_on_a_leaky_game_log_is_not_fooled(tmp_path_factory):
    home = tmp_path_factory.mktemp("honest-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    data = tmp_path_factory.mktemp("honest-data")
    write_game_log(data)
    params = StdioServerParameters(command=sys.executable, args=["-m", "tools.cli", "serve"],
                                   env=server_env(home, data_dirs=[data], NBA_MCP_LOG_LEVEL="WARNING"),
                                   cwd=str(PROJECT_ROOT))
    async with Client(params) as client:
        report = payload(await client.call_tool("validate_data", {"request": {"dataset": "games", "target": "WL"}}))
        by_rule = {(i["rule"], i["column"]) for i in report["issues"]}
        assert {("identifier_column", "Unnamed: 0"), ("datetime_column", "Date"), ("pair_leak", "PTS")} <= by_rule \
            or {("identifier_column", "Unnamed: 0"), ("datetime_column", "Date"), ("pair_leak", "OPP_PTS")} <= by_rule
        assert report["suggested_drop"] == ["Unnamed: 0", "GAME_ID", "Date", "PTS", "OPP_PTS"] and not report["passed"]

        # Stopped by the leak screen: a tool error (the job FAILED), as a stopped tuning job is.
        stopped = error_text(await client.call_tool("run_pipeline", {"request": NAIVE}))
        assert "data checks stopped this job before training" in stopped
        assert "drop=['Unnamed: 0', 'GAME_ID', 'Date', 'PTS', 'OPP_PTS']" in stopped
        job = payload(await client.call_tool("get_job", {"job_id": re.search(r"job ([0-9a-f]+) failed", stopped)[1]}))
        naive = job["result"]
        assert job["state"] == "FAILED" and naive["status"] == "FAILED" and naive["failed_stage"] == "data_validation"
        assert naive["model_version"] is None and naive["promotion"] is None

        warned = await finished(client, await client.call_tool("run_pipeline", {"request": {**NAIVE, "leak_check": "warn"}}))
        result = warned["result"]
        assert result["status"] == "COMPLETED" and result["flagged"]
        assert {"leak_suspect", "near_perfect_score"} <= {w["code"] for w in result["warnings"]}
        assert not result["promotion"]["promoted"] and "flagged" in result["promotion"]["reason"]
        assert any("flagged: leak_suspect" in event for event in warned["recent_events"])

        honest = {"drop": ["Unnamed: 0", "GAME_ID", "PTS", "OPP_PTS"], "split": {"kind": "time", "column": "Date"}}
        tuned = (await finished(client, await client.call_tool("tune_hyperparameters", {"request": {
            "dataset": "games", "target": "WL", "estimator": "random_forest", "max_trials": 2, "cv_folds": 3,
            "seed": 1, "experiment_name": "honest-e2e", **honest,
            "space": {"max_depth": {"type": "int", "low": 2, "high": 6}}}})))["result"]
        assert tuned["warnings"] == [] and not tuned["flagged"] and tuned["split"]["n_test"] > 0
        assert "TimeSeriesSplit" in tuned["cv"]

        fixed = await finished(client, await client.call_tool("run_pipeline", {"request": {
            **NAIVE, **honest, "params": tuned["best_params"]}}))
        result = fixed["result"]
        assert result["split"]["test_digest"] == tuned["split"]["test_digest"]  # the rows the search never saw
        assert result["status"] == "COMPLETED" and result["warnings"] == [] and not result["flagged"]
        assert result["promotion"]["promoted"] and result["split"]["spec"] == {
            "kind": "time", "column": "Date", "test_size": 0.2, "seed": 0, "gap": 0}
        assert result["metrics"]["test_roc_auc"] < 0.95 and "cv_roc_auc_mean" in result["metrics"]

        champion = payload(await client.call_tool("get_run", {"run_id": result["run_id"]}))
        assert champion["tags"]["evaluation.flagged"] == "false"
        assert champion["params"]["split.kind"] == "time"
    # The feature list is the run's artifact (its param is the count).
    from mlflow import MlflowClient

    store = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    listed = store.download_artifacts(result["run_id"], "features.json", str(tmp_path_factory.mktemp("features")))
    features = json.loads(Path(listed).read_text())
    assert "Date" not in features and "PTS" not in features and int(champion["params"]["n_features"]) == len(features)
