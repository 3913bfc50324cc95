"""Crash recovery: SIGKILL the real server in the middle of a tuning job, restart it, resume the search.

On restart ``nba-mcp serve`` ends KILLED every RUNNING run whose owning process (recorded on the
run as ``nba_mcp.owner`` = host:pid) is dead, in every experiment of the store; completed trials
stay in MLflow, and ``tune_hyperparameters(resume_from=<parent run>)`` continues the search
without re-running them. Figures go to ``<pytest tmp>/reliability/crash.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from mcp import Client

from mcp_server.mlflow_integration import OWNER_TAG, get_mlflow_tracker
from mcp_server.mlflow_integration import reap_orphaned_runs
from tools.server import build_server
from tests.support.stdio import RawStdioServer
from tests.support import payload, data_folder, isolated_settings, server_env, shared_template

SEARCH = {
    "dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 30,
    "cv_folds": 3, "seed": 5, "experiment_name": "crash-recovery",
    "space": {"n_estimators": {"type": "int", "low": 10, "high": 40},
              "max_depth": {"type": "int", "low": 2, "high": 12}},
}
KILL_AFTER_TRIALS = 5


def store_rows(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=20) as conn:
        return conn.execute(sql, args).fetchall()


def parent_run(db: Path) -> str | None:
    rows = store_rows(db, "SELECT run_uuid FROM tags WHERE key = 'nba_mcp.kind' AND value = 'tuning_search'")
    return rows[0][0] if rows else None


def children(db: Path, parent: str) -> list[tuple[str, str, str]]:
    """(run id, status, trial number) of every trial run under ``parent``."""
    return store_rows(
        db,
        "SELECT r.run_uuid, r.status, n.value FROM runs r "
        "JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId' AND p.value = ? "
        "LEFT JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'nba_mcp.trial_number'",
        parent,
    )


def running_runs(db: Path) -> int:
    return store_rows(db, "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'")[0][0]


def write_figures(tmp_path_factory, name: str, figures: dict) -> None:
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {json.dumps(figures)}")


@pytest.mark.slow
def test_sigkill_mid_search_then_restart_reaps_and_resume_skips_completed_trials(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    db = home / "mlflow.db"
    env = server_env(home, data_dirs=[data_folder()])

    first = RawStdioServer(env, tmp_path / "first.log")
    try:
        started = first.call_tool("tune_hyperparameters", {"request": SEARCH, "wait_seconds": 0})
        assert payload(started)["state"] in ("QUEUED", "RUNNING"), started
        deadline = time.monotonic() + 120
        while True:
            parent = parent_run(db)
            done = [c for c in children(db, parent) if c[1] == "FINISHED"] if parent else []
            if len(done) >= KILL_AFTER_TRIALS:
                break
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.05)
    finally:
        first.kill()  # SIGKILL in the middle of the search: no cleanup code runs
    before_restart = children(db, parent)
    completed_at_kill = {c[0] for c in before_restart if c[1] == "FINISHED"}
    running_after_kill = running_runs(db)
    assert running_after_kill >= 1  # at least the search's parent run is left RUNNING
    assert len(completed_at_kill) < SEARCH["max_trials"]

    restart_started = time.perf_counter()
    second = RawStdioServer(env, tmp_path / "second.log")
    try:
        restart_seconds = time.perf_counter() - restart_started
        # Reaped before the first answer: nothing RUNNING, the parent ended KILLED with the reason.
        assert running_runs(db) == 0
        parent_view = payload(second.call_tool("get_run", {"run_id": parent}))
        assert parent_view["status"] == "KILLED"
        assert parent_view["tags"]["nba_mcp.termination_reason"].startswith("owner process ")
        after_restart = children(db, parent)
        assert completed_at_kill <= {c[0] for c in after_restart if c[1] == "FINISHED"}

        resumed = second.call_tool(
            "tune_hyperparameters", {"request": {**SEARCH, "resume_from": parent}, "wait_seconds": 50}, timeout=120
        )
        outcome = payload(resumed)
        assert not resumed.get("isError"), resumed
        assert outcome["state"] == "SUCCEEDED", outcome
        result = outcome["result"]
        assert result["parent_run_id"] == parent and result["n_trials"] == SEARCH["max_trials"]
        parent_after = payload(second.call_tool("get_run", {"run_id": parent}))
    finally:
        second.stop()

    final = children(db, parent)
    finished = [c for c in final if c[1] == "FINISHED"]
    numbers = [int(c[2]) for c in finished]
    # Every trial completed before the crash is still there and was not run again.
    assert completed_at_kill <= {c[0] for c in finished}
    assert len(finished) == SEARCH["max_trials"] and len(set(numbers)) == len(numbers)
    new_numbers = sorted(int(c[2]) for c in finished if c[0] not in completed_at_kill)
    assert min(new_numbers) >= len(completed_at_kill)
    assert parent_after["status"] == "FINISHED" and running_runs(db) == 0
    write_figures(tmp_path_factory, "crash.json", {
        "trials_completed_at_kill": len(completed_at_kill),
        "runs_running_after_kill": running_after_kill,
        "trial_runs_half_written_at_kill": sum(c[1] == "RUNNING" for c in before_restart),
        "runs_running_after_restart": 0,
        "restart_to_initialized_seconds": round(restart_seconds, 2),
        "trials_run_on_resume": len(new_numbers),
        "completed_trials_rerun": 0,
        "final_finished_trials": len(finished),
        "parent_status_after_resume": parent_after["status"],
    })


# --- the reaper's rules, on a real sqlite store -----------------------------------------------------------

DEAD_PID = 2**22 + 12345  # above the default pid_max of most systems: never a live process


def _orphan(tracker, *, owner: str, tags: dict | None = None, parent: str | None = None) -> str:
    run_id = tracker.create_run("orphan", tags=tags, parent_run_id=parent)
    tracker._call("set_tag", run_id, OWNER_TAG, owner)  # noqa: SLF001 - simulate another process's run
    return run_id


def test_reaper_ends_dead_owners_runs_in_every_experiment_and_spares_the_living(tmp_path, tmp_path_factory):
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory))
    host = socket.gethostname()
    first = get_mlflow_tracker("reap-a", settings=settings)
    second = get_mlflow_tracker("reap-b", settings=settings)
    dead = [_orphan(first, owner=f"{host}:{DEAD_PID}"), _orphan(second, owner=f"{host}:{DEAD_PID + 1}")]
    alive = _orphan(first, owner=f"{host}:{os.getpid()}")
    elsewhere = _orphan(second, owner=f"another-host:{DEAD_PID}")
    reaped = reap_orphaned_runs(settings)
    assert sorted(reaped) == sorted(dead)
    assert [first.get_status(r).value for r in (dead[0], alive)] == ["KILLED", "RUNNING"]
    assert [second.get_status(r).value for r in (dead[1], elsewhere)] == ["KILLED", "RUNNING"]
    assert reap_orphaned_runs(settings) == []  # idempotent
    for tracker, run_id in ((first, alive), (second, elsewhere)):
        tracker.end_run("FINISHED", run_id=run_id)
    assert reap_orphaned_runs(settings) == []  # no RUNNING run left: one sqlite query, no mlflow


async def test_resume_reruns_a_trial_whose_run_was_half_written_when_the_server_died(tmp_path, tmp_path_factory):
    """A child run created but never ended (SIGKILL between create and terminate) is reaped
    KILLED, and resuming runs that trial again instead of failing on its missing params."""
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory))
    request = {"dataset": "iris", "estimator": "decision_tree", "strategy": "random", "max_trials": 6,
               "cv_folds": 3, "seed": 3, "experiment_name": "half-written",
               "space": {"max_depth": {"type": "int", "low": 1, "high": 30}}}
    server = build_server(settings)
    try:
        async with Client(server) as client:
            first = (await client.call_tool("tune_hyperparameters", {"request": {**request, "max_trials": 3}}))
            parent = payload(first)["result"]["parent_run_id"]
            tracker = server.state.tracker("half-written")
            half = _orphan(tracker, owner=f"{socket.gethostname()}:{DEAD_PID}", parent=parent,
                           tags={"nba_mcp.kind": "tuning_trial", "nba_mcp.trial_state": "COMPLETE",
                                 "nba_mcp.trial_number": 3})
            assert half in reap_orphaned_runs(settings)
            resumed = await client.call_tool(
                "tune_hyperparameters", {"request": {**request, "resume_from": parent}})
        assert not resumed.is_error, resumed.content[0].text
        outcome = payload(resumed)["result"]
        assert outcome["n_trials"] == 6 and outcome["parent_run_id"] == parent
        trials = tracker.search_runs(f"tags.mlflow.parentRunId = '{parent}'", 100)
        finished = sorted(int(r.tags["nba_mcp.trial_number"]) for r in trials if r.status.value == "FINISHED")
        assert finished == [0, 1, 2, 4, 5, 6]  # number 3 is not reused; three new trials ran
    finally:
        server.state.close()


pytestmark = pytest.mark.anyio
