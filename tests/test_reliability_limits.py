"""Resource limits, through the tools: grid size, trials, CV folds, data rows and bytes, concurrent
and queued jobs, per-job timeout. Each is refused with a message that names the limit, the setting
and the offending value; refusals that can be decided before a job starts never start one.
Figures: ``<pytest tmp>/reliability/limits.json``."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from mcp import Client

from mcp_server.jobs import JobManager
from tools.app_state import AppState
from tools.server import build_server
from tests.support import payload, error_text, isolated_settings, shared_template

pytestmark = pytest.mark.anyio

FIGURES: dict[str, dict] = {}
SMALL = {"dataset": "iris", "estimator": "decision_tree", "strategy": "random", "max_trials": 3, "cv_folds": 2,
         "seed": 1, "space": {"max_depth": {"type": "int", "low": 1, "high": 8}}}
SLOW = {"dataset": "iris", "estimator": "random_forest", "strategy": "random", "max_trials": 10,
        "cv_folds": 3, "seed": 1, "space": {"n_estimators": {"type": "int", "low": 100, "high": 200}}}


def grid(n_params: int, n_values: int) -> dict:
    names = ["max_depth", "min_samples_split", "min_samples_leaf", "max_leaf_nodes"][:n_params]
    return {name: {"type": "categorical", "choices": list(range(2, 2 + n_values))} for name in names}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    data = root / "data"
    data.mkdir()
    (data / "rows.csv").write_text("x,target\n" + "".join(f"{i},{i % 2}\n" for i in range(250)))
    (data / "wide.csv").write_text("x,target,note\n" + "".join(f"{i},{i % 2},{'z' * 40}\n" for i in range(60)))
    settings = isolated_settings(
        root / "home", shared_template(tmp_path_factory), data_dirs=[data], max_grid_size=20, max_trials=10,
        max_cv_folds=3, max_data_rows=200, max_data_bytes=2000, max_concurrent_jobs=1, job_timeout_seconds=2.0,
    )
    # One running job, one waiting: the third is refused (the queue bound is the JobManager's).
    state = AppState(settings, jobs=JobManager(max_concurrent=1, job_timeout=2.0, max_queued=1))
    server = build_server(settings, state=state)
    yield server
    state.close()
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / "limits.json").write_text(json.dumps(FIGURES, indent=2))
    print("\nlimits figures:", json.dumps(FIGURES))


@pytest.mark.parametrize(
    ("limit", "tool", "args", "expected"),
    [
        ("max_grid_size", "tune_hyperparameters",
         {"request": {**SMALL, "strategy": "grid", "space": grid(2, 5)}, "wait_seconds": 0},
         "grid has 25 candidates, more than max_grid_size=20"),
        ("max_trials", "tune_hyperparameters", {"request": {**SMALL, "max_trials": 11}, "wait_seconds": 0},
         "max_trials must be at most 10 (settings.max_trials), got 11"),
        ("max_trials (schema)", "tune_hyperparameters", {"request": {**SMALL, "max_trials": 501}},
         "request.max_trials: Input should be less than or equal to 500 (got 501)"),
        ("max_cv_folds", "tune_hyperparameters", {"request": {**SMALL, "cv_folds": 4}, "wait_seconds": 0},
         "cv_folds must be at most 3 (settings.max_cv_folds), got 4"),
        ("max_data_rows", "describe_dataset", {"name": "rows"},
         "dataset 'rows' has more than 200 rows, above max_data_rows=200"),
        ("max_data_rows (tuning)", "tune_hyperparameters",
         {"request": {**SMALL, "dataset": "rows", "target": "target"}, "wait_seconds": 0},
         "above max_data_rows=200"),
        ("max_data_bytes", "validate_data", {"request": {"dataset": "wide"}},
         "dataset 'wide' is 2764 bytes, above max_data_bytes=2000"),
        ("max_data_rows (built-in)", "describe_dataset", {"name": "breast_cancer"},
         "dataset 'breast_cancer' has 569 rows, above max_data_rows=200"),
    ],
)
async def test_limits_are_refused_before_any_job_starts(limited, limit, tool, args, expected):
    async with Client(limited) as client:
        started = time.perf_counter()
        result = await client.call_tool(tool, args)
        seconds = time.perf_counter() - started
        jobs = payload(await client.call_tool("list_jobs", {}))["jobs"]
    assert expected in error_text(result)
    assert jobs == []  # refused at validation: no job was queued
    FIGURES[limit] = {"refused_in_seconds": round(seconds, 3), "message": error_text(result)[:200]}


async def test_one_job_runs_one_waits_the_next_is_refused_and_the_timeout_ends_a_long_job(limited):
    async with Client(limited) as client:
        first = payload(await client.call_tool("tune_hyperparameters", {"request": SLOW, "wait_seconds": 0}))
        second = payload(await client.call_tool(
            "tune_hyperparameters", {"request": {**SLOW, "seed": 2}, "wait_seconds": 0}))
        third = await client.call_tool("tune_hyperparameters", {"request": {**SLOW, "seed": 3}, "wait_seconds": 0})
        assert "at most 1 jobs may wait in the queue" in error_text(third)
        listed = payload(await client.call_tool("list_jobs", {}))
        assert (listed["running"], listed["queued"]) == (1, 1)
        assert second["state"] == "QUEUED"

        # The running job passes job_timeout_seconds=2: its trial in flight is killed, FAILED.
        ended = payload(await client.call_tool("get_job", {"job_id": first["job_id"], "wait_seconds": 30}))
        assert ended["state"] == "FAILED" and ended["error"] == "job exceeded job_timeout_seconds=2"
        assert 2.0 <= ended["elapsed_seconds"] < 8.0, ended["elapsed_seconds"]
        partial = ended["result"]
        # The trial in flight is killed, not waited for (worker start-up takes ~2 s of the budget).
        assert partial["stopped_reason"] == "cancelled" and 0 <= partial["n_trials"] < SLOW["max_trials"]
        parent = await client.call_tool("get_run", {"run_id": partial["parent_run_id"]})
        assert payload(parent)["status"] == "KILLED"

        # The waiting job starts once the slot is free; running never exceeded the limit.
        peak = 0
        with anyio.fail_after(30):
            while True:
                now = payload(await client.call_tool("list_jobs", {}))
                peak = max(peak, now["running"])
                states = {j["job_id"]: j["state"] for j in now["jobs"]}
                if states[second["job_id"]] == "RUNNING":
                    break
                await anyio.sleep(0.05)
        await client.call_tool("cancel_job", {"job_id": second["job_id"]})
        final = payload(await client.call_tool("get_job", {"job_id": second["job_id"], "wait_seconds": 30}))
    assert final["state"] in ("CANCELLED", "FAILED")
    assert peak <= 1
    FIGURES["max_concurrent_jobs"] = {"limit": 1, "queue_limit": 1, "peak_running": peak,
                                      "third_job": error_text(third)[:120]}
    FIGURES["job_timeout_seconds"] = {"limit": 2.0, "job_elapsed_seconds": ended["elapsed_seconds"],
                                      "trials_done": partial["n_trials"], "parent_run": "KILLED"}
