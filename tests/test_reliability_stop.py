"""Every job stops, and no run is left RUNNING after any exit.

- The plan refuses hyperparameters that size a fit past the estimator's bound (n_estimators=10**9).
- A fit that would run for hours is cancelled: its worker process is killed, the slot is free and
  the next queued job starts within a few seconds (figures: cancel -> slot free, p50 / max).
- The real ``nba-mcp serve`` is stopped by SIGTERM, SIGINT (stdio and HTTP) and stdin EOF in the
  middle of a long trial, and killed as PID 1 of a new PID namespace then restarted: each time no
  run is left RUNNING, the parent carries the best score so far, and the search can be resumed.
Figures go to ``<pytest tmp>/reliability/stop.json``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mcp import Client

from tests.support.stdio import RawStdioServer
from tests.test_reliability_crash import parent_run, running_runs, store_rows
from tools.server import build_server
from tests.support import (
    error_text,
    payload,  # noqa: F401  (template_db, tool_settings: fixtures)
    free_port,
    isolated_settings,
    server_env,
    shared_template,
    template_db,
    tool_settings,
    wait_http,
)

pytestmark = pytest.mark.anyio
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIGURES: dict = {}
# Trial 0 takes a moment, trial 1 (4,000 trees x 3 folds) well over 10 s: the stop lands inside it.
SLOW_SEARCH = {
    "dataset": "breast_cancer", "estimator": "random_forest", "strategy": "grid", "max_trials": 2,
    "cv_folds": 3, "seed": 3, "experiment_name": "stop-tests", "leak_check": "warn",
    "space": {"n_estimators": {"type": "categorical", "choices": [10, 4000]}},
}


@pytest.fixture(scope="module", autouse=True)
def _write_figures(tmp_path_factory):
    yield
    if FIGURES:
        out = tmp_path_factory.getbasetemp() / "reliability"
        out.mkdir(exist_ok=True)
        path = out / "stop.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **FIGURES}, indent=2))
        print(f"\nstop.json: {json.dumps(FIGURES)}")


def structured(result) -> dict:
    return payload(result)


# --- bounds in the plan -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("tune_hyperparameters",
         {"request": {"dataset": "breast_cancer", "estimator": "gradient_boosting",
                      "space": {"n_estimators": {"type": "int", "low": 10, "high": 10**9}}}},
         "n_estimators of gradient_boosting must be at most 5,000"),
        ("tune_hyperparameters",
         {"request": {"dataset": "breast_cancer", "estimator": "hist_gradient_boosting",
                      "space": {"max_iter": {"type": "categorical", "choices": [100, 10**9]}}}},
         "max_iter of hist_gradient_boosting must be at most 5,000"),
        ("run_pipeline",
         {"request": {"dataset": "breast_cancer", "estimator": "random_forest", "params": {"n_estimators": 10**9}}},
         "n_estimators of random_forest must be at most 5,000"),
    ],
)
async def test_plan_refuses_hyperparameters_that_size_a_fit_past_their_bound(tool_settings, tool, arguments, expected):
    server = build_server(tool_settings)
    async with Client(server) as client:
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        elapsed = time.perf_counter() - started
        jobs = structured(await client.call_tool("list_jobs", {}))
    assert expected in error_text(result), result.content[0].text
    assert jobs["jobs"] == []  # refused before any job was queued
    assert elapsed < 5
    FIGURES.setdefault("bound_refusals", []).append({"tool": tool, "message": error_text(result)[:160],
                                                      "seconds": round(elapsed, 3)})


# --- cancel ends a fit in progress ----------------------------------------------------------------


def wide_enough_for_hours(folder: Path) -> str:
    """20,000 rows x 20 features: 5,000 unpruned trees per fold, 5 folds, 20 trials is hours of work."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20_000, 20)), columns=[f"f{i}" for i in range(20)])
    frame["label"] = (frame["f0"] + rng.normal(size=len(frame)) > 0).astype(int)
    frame.to_csv(folder / "hours.csv", index=False)
    return "hours"


async def wait_state(client, job_id: str, states: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = structured(await client.call_tool("get_job", {"job_id": job_id}))
        if job["state"] in states or time.monotonic() > deadline:
            return job
        await _sleep(0.02)


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


@pytest.mark.slow
async def test_cancel_ends_a_fit_that_would_run_for_hours_and_the_next_job_starts(tmp_path, tmp_path_factory):
    data = tmp_path / "data"
    data.mkdir()
    dataset = wide_enough_for_hours(data)
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory), data_dirs=[data],
                                 max_concurrent_jobs=1)
    long_search = {"dataset": dataset, "target": "label", "estimator": "random_forest", "max_trials": 20,
                   "cv_folds": 5, "experiment_name": "cancel", "leak_check": "warn",
                   "space": {"n_estimators": {"type": "int", "low": 4000, "high": 5000}}}
    quick = {"dataset": "breast_cancer", "estimator": "decision_tree", "max_trials": 1, "cv_folds": 2,
             "experiment_name": "cancel", "leak_check": "warn"}
    server = build_server(settings)
    cancel_to_free, cancel_to_next_running = [], []
    async with Client(server) as client:
        for _ in range(4):
            long_job = structured(await client.call_tool(
                "tune_hyperparameters", {"request": long_search, "wait_seconds": 0}))
            next_job = structured(await client.call_tool(
                "tune_hyperparameters", {"request": quick, "wait_seconds": 0}))
            assert next_job["state"] == "QUEUED"
            assert (await wait_state(client, long_job["job_id"], {"RUNNING"}, 30))["state"] == "RUNNING"
            await _sleep(2.0)  # the pool is up and a 4,000+ tree fit is in progress
            started = time.perf_counter()
            await client.call_tool("cancel_job", {"job_id": long_job["job_id"]})
            ended = await wait_state(client, long_job["job_id"], {"CANCELLED", "FAILED", "SUCCEEDED"}, 30)
            cancel_to_free.append(time.perf_counter() - started)
            nxt = await wait_state(client, next_job["job_id"], {"RUNNING", "SUCCEEDED", "FAILED"}, 30)
            cancel_to_next_running.append(time.perf_counter() - started)
            assert ended["state"] == "CANCELLED", ended
            assert nxt["state"] in ("RUNNING", "SUCCEEDED"), nxt
            assert (await wait_state(client, next_job["job_id"], {"SUCCEEDED"}, 60))["state"] == "SUCCEEDED"
    app = server.state
    app.close(5)
    db = Path(str(settings.tracking_uri).removeprefix("sqlite:///"))
    assert running_runs(db) == 0
    killed = store_rows(db, "SELECT COUNT(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                            "AND t.key = 'nba_mcp.kind' AND t.value = 'tuning_search' WHERE r.status = 'KILLED'")[0][0]
    assert killed == 4
    assert max(cancel_to_free) < 5
    FIGURES["cancel_long_fit"] = {
        "fit": "random_forest n_estimators 4000-5000, 20,000 rows x 20 features, 5 folds, 20 trials",
        "cancels": len(cancel_to_free),
        "cancel_to_slot_free_p50_s": round(statistics.median(cancel_to_free), 3),
        "cancel_to_slot_free_max_s": round(max(cancel_to_free), 3),
        "cancel_to_next_job_running_p50_s": round(statistics.median(cancel_to_next_running), 3),
        "cancel_to_next_job_running_max_s": round(max(cancel_to_next_running), 3),
        "parent_runs_killed": killed,
    }


@pytest.mark.slow
async def test_job_timeout_ends_a_fit_in_progress(tmp_path, tmp_path_factory):
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory), job_timeout_seconds=2)
    search = {**SLOW_SEARCH, "space": {"n_estimators": {"type": "categorical", "choices": [4000]}},
              "max_trials": 1}
    server = build_server(settings)
    async with Client(server) as client:
        started = time.perf_counter()
        job = structured(await client.call_tool("tune_hyperparameters", {"request": search, "wait_seconds": 0}))
        ended = await wait_state(client, job["job_id"], {"CANCELLED", "FAILED", "SUCCEEDED"}, 60)
        elapsed = time.perf_counter() - started
    server.state.close(5)
    assert ended["state"] == "FAILED" and "job_timeout_seconds=2" in ended["error"], ended
    assert elapsed < 6  # the trial alone takes ~25 s
    FIGURES["job_timeout_2s_to_failed_s"] = round(elapsed, 3)


# --- every exit ends the runs ---------------------------------------------------------------------


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def first_trial_done(db: Path) -> str | None:
    parent = parent_run(db)
    if parent is None:
        return None
    rows = store_rows(db, "SELECT COUNT(*) FROM runs r JOIN tags p ON p.run_uuid = r.run_uuid AND "
                          "p.key = 'mlflow.parentRunId' AND p.value = ? WHERE r.status = 'FINISHED'", parent)
    return parent if rows[0][0] >= 1 else None


def parent_summary(db: Path, parent: str) -> dict:
    status = store_rows(db, "SELECT status FROM runs WHERE run_uuid = ?", parent)[0][0]
    best = store_rows(db, "SELECT value FROM latest_metrics WHERE run_uuid = ? AND key LIKE 'best_cv_%'", parent)
    reason = store_rows(db, "SELECT value FROM tags WHERE run_uuid = ? AND key = 'nba_mcp.termination_reason'", parent)
    return {"status": status, "best_score": best[0][0] if best else None, "reason": reason[0][0] if reason else None}


class HttpServer:
    """``nba-mcp serve --transport http`` spoken to with raw JSON-RPC over POST (the test owns the pid)."""

    def __init__(self, env: dict[str, str], log_path: Path, token: str) -> None:
        self.port = free_port()
        self.token = token
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port", str(self.port)],
            cwd=PROJECT_ROOT, env={**env, "NBA_MCP_HTTP_TOKEN": token}, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=self.log,
        )
        assert wait_http(f"http://127.0.0.1:{self.port}/health", 60)
        self.session = None
        self._id = 0
        init = self.post("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                        "clientInfo": {"name": "stop-test", "version": "1"}})
        assert "result" in init, init
        self.post(None, None, notification="notifications/initialized")

    def post(self, method, params, *, notification: str | None = None, timeout: float = 60) -> dict:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        if self.session:
            headers["mcp-session-id"] = self.session
        if notification:
            body = {"jsonrpc": "2.0", "method": notification}
        else:
            self._id += 1
            body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/mcp", data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            self.session = response.headers.get("mcp-session-id") or self.session
            text = response.read().decode()
        if notification:
            return {}
        for line in text.splitlines():  # an SSE stream or plain JSON
            line = line.removeprefix("data: ").strip()
            if line.startswith("{"):
                message = json.loads(line)
                if message.get("id") == self._id:
                    return message
        return json.loads(text) if text.strip().startswith("{") else {}

    def call_tool(self, name: str, arguments: dict, timeout: float = 60) -> dict:
        return self.post("tools/call", {"name": name, "arguments": arguments}, timeout=timeout)["result"]


def start_server(transport: str, env: dict[str, str], log: Path):
    if transport == "stdio":
        return RawStdioServer(env, log)
    return HttpServer(env, log, token="stop-test-token-0123456789")


STOPS = [("stdio", "SIGTERM"), ("stdio", "SIGINT"), ("stdio", "EOF"), ("http", "SIGTERM"), ("http", "SIGINT")]


@pytest.mark.slow
@pytest.mark.parametrize(("transport", "how"), STOPS, ids=[f"{t}-{h}" for t, h in STOPS])
def test_stop_during_a_long_trial_ends_every_run_and_resume_works(transport, how, tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    db = home / "mlflow.db"
    env = server_env(home)
    server = start_server(transport, env, tmp_path / "server.log")
    try:
        job = structured(server.call_tool("tune_hyperparameters", {"request": SLOW_SEARCH, "wait_seconds": 0}))
        assert job["state"] in ("QUEUED", "RUNNING"), job
        parent = wait_for(lambda: first_trial_done(db), 60, "the first trial")
        time.sleep(1.0)  # inside trial 1 (4,000 trees x 3 folds, ~25 s)
        assert running_runs(db) >= 1
        started = time.perf_counter()
        if how == "EOF":
            server.proc.stdin.close()
        else:
            server.proc.send_signal(getattr(signal, how))
        code = server.proc.wait(30)
        exit_seconds = time.perf_counter() - started
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        server.log.close()
    left_running = running_runs(db)
    summary = parent_summary(db, parent)
    assert left_running == 0, summary
    assert summary["status"] == "KILLED" and summary["best_score"] is not None, summary
    assert exit_seconds < 10

    # Resume is accepted after the stop: the parent is RUNNING again while the resumed job works.
    second = start_server(transport, env, tmp_path / "second.log")
    try:
        resumed = structured(second.call_tool(
            "tune_hyperparameters", {"request": {**SLOW_SEARCH, "resume_from": parent}, "wait_seconds": 0}))
        assert resumed["state"] in ("QUEUED", "RUNNING"), resumed
        wait_for(lambda: store_rows(db, "SELECT status FROM runs WHERE run_uuid = ?", parent)[0][0] == "RUNNING",
                 30, "the resumed parent to be RUNNING")
        twice = second.call_tool("tune_hyperparameters",
                                 {"request": {**SLOW_SEARCH, "resume_from": parent}, "wait_seconds": 0})
        refusal = error_text(twice)
        assert twice.get("isError") and ("RUNNING" in refusal or "already being resumed" in refusal), twice
        second.call_tool("cancel_job", {"job_id": resumed["job_id"]})
        cancelled = wait_for(lambda: structured(second.call_tool("get_job", {"job_id": resumed["job_id"]}))
                             if structured(second.call_tool("get_job", {"job_id": resumed["job_id"]}))["done"]
                             else None, 20, "the resumed job to stop")
        assert cancelled["state"] == "CANCELLED", cancelled
    finally:
        if transport == "stdio":
            second.stop()
        else:
            second.proc.send_signal(signal.SIGTERM)
            second.proc.wait(30)
            second.log.close()
    assert running_runs(db) == 0
    FIGURES.setdefault("stops", {})[f"{transport}-{how}"] = {
        "signal_to_exit_s": round(exit_seconds, 2), "exit_code": code, "runs_running_after": left_running,
        "parent": summary["status"], "parent_best_score": round(summary["best_score"], 4),
        "resume_accepted": True, "second_resume_refused": True,
    }


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/unshare").exists(), reason="needs root and unshare")
def test_server_as_pid_1_killed_then_restarted_reaps_its_runs(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    db = home / "mlflow.db"
    env = server_env(home)

    def pid1_server(log: Path) -> RawStdioServer:
        # A PID namespace with its own /proc, as a container has: the server is PID 1 in it.
        return RawStdioServer(env, log, wrapper=("unshare", "--pid", "--fork", "--kill-child", "--mount-proc"))

    first = pid1_server(tmp_path / "first.log")
    try:
        first.call_tool("tune_hyperparameters", {"request": SLOW_SEARCH, "wait_seconds": 0})
        parent = wait_for(lambda: first_trial_done(db), 60, "the first trial")
        owner = store_rows(db, "SELECT value FROM tags WHERE run_uuid = ? AND key = 'nba_mcp.owner'", parent)[0][0]
        assert owner.split(":")[1] == "1", owner  # the server really is PID 1 in its namespace
    finally:
        first.proc.send_signal(signal.SIGKILL)  # unshare dies; --kill-child SIGKILLs the PID 1 server
        first.proc.wait(10)
        first.log.close()
    time.sleep(0.5)
    assert running_runs(db) >= 1  # SIGKILL: nothing could end them
    started = time.perf_counter()
    second = pid1_server(tmp_path / "second.log")
    try:
        restart_seconds = time.perf_counter() - started
        assert running_runs(db) == 0  # reaped before the first answer, although the new server is PID 1 too
        summary = parent_summary(db, parent)
        assert summary["status"] == "KILLED" and "lease released" in summary["reason"], summary
        resumed = structured(second.call_tool(
            "tune_hyperparameters", {"request": {**SLOW_SEARCH, "resume_from": parent}, "wait_seconds": 0}))
        assert resumed["state"] in ("QUEUED", "RUNNING"), resumed
        second.call_tool("cancel_job", {"job_id": resumed["job_id"]})
    finally:
        second.stop()
    assert running_runs(db) == 0
    FIGURES["pid1_kill_restart"] = {"owner_tag": owner.split(":", 1)[1], "runs_running_after_restart": 0,
                                    "restart_to_initialized_s": round(restart_seconds, 2),
                                    "reason": summary["reason"], "resume_accepted": True}


@pytest.mark.slow
async def test_cancel_ends_a_pipeline_fit_in_progress(tmp_path, tmp_path_factory):
    data = tmp_path / "data"
    data.mkdir()
    dataset = wide_enough_for_hours(data)
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory), data_dirs=[data])
    request = {"dataset": dataset, "target": "label", "estimator": "random_forest", "leak_check": "warn",
               "params": {"n_estimators": 5000}, "experiment_name": "pipeline-cancel"}
    server = build_server(settings)
    async with Client(server) as client:
        job = structured(await client.call_tool("run_pipeline", {"request": request, "wait_seconds": 0}))
        deadline = time.monotonic() + 60
        while True:  # wait for the train stage
            snapshot = structured(await client.call_tool("get_job", {"job_id": job["job_id"]}))
            if any("train" in e for e in snapshot["recent_events"]) or time.monotonic() > deadline:
                break
            await _sleep(0.1)
        assert any("train" in e for e in snapshot["recent_events"]), snapshot["recent_events"]
        await _sleep(2.0)  # 5,000 trees on 16,000 rows: minutes of fitting
        started = time.perf_counter()
        await client.call_tool("cancel_job", {"job_id": job["job_id"]})
        ended = await wait_state(client, job["job_id"], {"CANCELLED", "FAILED", "SUCCEEDED"}, 30)
        elapsed = time.perf_counter() - started
    server.state.close(5)
    db = Path(str(settings.tracking_uri).removeprefix("sqlite:///"))
    assert ended["state"] == "CANCELLED", ended
    assert elapsed < 5 and running_runs(db) == 0
    FIGURES["pipeline_cancel_during_fit_s"] = round(elapsed, 3)
