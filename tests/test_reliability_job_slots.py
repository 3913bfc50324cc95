"""Fair job slots on the real ``nba-mcp serve --transport http`` with two principals (issue 29).

Probe that broke: a developer's 4 slow jobs held both running slots and an analyst's 1-trial job
waited until they were cancelled. Now, with the developer's 4 tuning jobs queued or running, the
analyst's job starts within one of the developer's trials, and the developer's jobs all finish.
Figures go to ``<pytest tmp>/reliability/job_slots.json``.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, isolated_settings, server_env, shared_template, stop_process, wait_http

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEVELOPER, ANALYST = "developer-token-0123456789abcdef", "analyst-token-0123456789abcdef"
DEV_SEARCH = {"dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 4,
              "cv_folds": 3, "seed": 1, "experiment_name": "slots", "leak_check": "warn",
              "space": {"n_estimators": {"type": "int", "low": 60, "high": 80}}}
ANALYST_SEARCH = {"dataset": "iris", "estimator": "decision_tree", "max_trials": 1, "cv_folds": 2,
                  "experiment_name": "slots-analyst", "leak_check": "warn"}


class Session:
    """One principal's streamable-HTTP MCP session, raw JSON-RPC over POST."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token, self.session, self._id = port, token, None, 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "slots", "version": "1"}})

    def request(self, method: str, params: dict) -> dict:
        self._id += 1
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        if self.session:
            headers["mcp-session-id"] = self.session
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/mcp", data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            self.session = response.headers.get("mcp-session-id") or self.session
            text = response.read().decode()
        for line in text.splitlines():
            line = line.removeprefix("data: ").strip()
            if line.startswith("{") and json.loads(line).get("id") == self._id:
                return json.loads(line)
        raise AssertionError(text)

    def tool(self, name: str, arguments: dict) -> dict:
        result = self.request("tools/call", {"name": name, "arguments": arguments})["result"]
        assert not result.get("isError"), result
        return json.loads(result["content"][0]["text"])


@pytest.mark.slow
def test_an_analysts_job_starts_within_one_trial_while_a_developer_has_four_jobs(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    tokens = json.dumps([
        {"sha256": hashlib.sha256(DEVELOPER.encode()).hexdigest(), "principal": "dev", "roles": ["developer"]},
        {"sha256": hashlib.sha256(ANALYST.encode()).hexdigest(), "principal": "ana", "roles": ["analyst"]},
    ])
    port = free_port()
    env = server_env(home, NBA_MCP_HTTP_TOKENS=tokens, NBA_MCP_MAX_CONCURRENT_JOBS="2")
    with open(tmp_path / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port",
                                 str(port)], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health", 60)
        dev, ana = Session(port, DEVELOPER), Session(port, ANALYST)
        dev_jobs = [dev.tool("tune_hyperparameters", {"request": {**DEV_SEARCH, "seed": i}, "wait_seconds": 0})["job_id"]
                    for i in range(4)]
        deadline = time.monotonic() + 120
        while True:  # both slots busy with the developer's jobs, each a trial in
            views = [dev.tool("get_job", {"job_id": j}) for j in dev_jobs]
            if sum(v["state"] == "RUNNING" and v["progress"]["current"] >= 1 for v in views) >= 2:
                break
            assert time.monotonic() < deadline, views
            time.sleep(0.2)
        submitted = time.perf_counter()
        job = ana.tool("tune_hyperparameters", {"request": ANALYST_SEARCH, "wait_seconds": 0})["job_id"]
        while (view := ana.tool("get_job", {"job_id": job}))["state"] == "QUEUED":
            assert time.perf_counter() - submitted < 60, view
            time.sleep(0.05)
        started_after = time.perf_counter() - submitted
        ended = ana.tool("get_job", {"job_id": job, "wait_seconds": 45})
        assert ended["state"] == "SUCCEEDED", ended
        finals = [dev.tool("get_job", {"job_id": j, "wait_seconds": 45}) for j in dev_jobs]
        while any(not f["done"] for f in finals):
            assert time.monotonic() < deadline + 240, finals
            finals = [dev.tool("get_job", {"job_id": j, "wait_seconds": 10}) for j in dev_jobs]
    finally:
        stop_process(proc)
    assert [f["state"] for f in finals] == ["SUCCEEDED"] * 4, finals
    paused = [any("paused" in e for e in f["recent_events"]) for f in finals]
    # One trial's time: a developer's search seen unpaused (in its last events), over its trials.
    trial_seconds = [f["result"]["elapsed_seconds"] / f["result"]["n_trials"] for f, p in zip(finals, paused) if not p]
    one_trial = statistics.median(trial_seconds)
    assert started_after <= max(trial_seconds) + 1.0, (started_after, trial_seconds)
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    figures = {"analyst_queued_to_running_s": round(started_after, 2), "developer_trial_p50_s": round(one_trial, 2),
               "developer_trial_max_s": round(max(trial_seconds), 2), "developer_jobs_paused": sum(paused),
               "developer_jobs_succeeded": 4}
    (out / "job_slots.json").write_text(json.dumps(figures, indent=2))
    print(f"\njob_slots.json: {json.dumps(figures)}")

