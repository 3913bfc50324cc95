"""Tracking-store outage: the `mlflow server` goes away in the middle of a tuning job.

Two outages against a real `mlflow server` (one worker, sqlite backend) on loopback: the process
group stopped (connections refused) and frozen with SIGSTOP (connections accepted, never
answered). Each time the running job must end FAILED with a tracking-unavailable error within the
configured ``tracking_timeout_seconds`` (plus the trial in flight), the MCP server must keep
answering (``server_health`` reports "degraded" instead of hanging), and once the store is back
(same port, same backend) a new job must succeed. Figures: ``<pytest tmp>/reliability/outage.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import anyio
import pytest
from tests.support import error_of, error_text, payload, MlflowServer, wait_http
from mcp import Client

from tools.server import build_server
from tests.support import isolated_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.server]

TIMEOUT = 4.0  # settings.tracking_timeout_seconds for this test
LONG = {"dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 150,
        "cv_folds": 3, "seed": 1, "experiment_name": "outage",
        "space": {"n_estimators": {"type": "int", "low": 5, "high": 20}}}
SHORT = {**LONG, "max_trials": 3, "seed": 2}


class StoppableMlflowServer(MlflowServer):
    """The conftest server in its own process group, so stop/freeze reach its worker processes."""

    def start(self, timeout: float = 90) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_http(self.uri + "/health", timeout):
            self.stop()
            raise RuntimeError(f"mlflow server did not start; see {self.root / 'server.log'}")

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGCONT)
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + 20
        while wait_http(self.uri + "/health", 0.2) and time.monotonic() < deadline:  # workers gone too
            time.sleep(0.2)
        self.proc = None
        self.log.close()


async def wait_until_trials(client, job_id: str, n: int) -> None:
    with anyio.fail_after(120):
        while True:
            job = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 0.5}))
            assert not job["done"], job
            if job["progress"]["current"] >= n:
                return


async def wait_for_end(client, job_id: str) -> tuple[dict, float]:
    started = time.perf_counter()
    with anyio.fail_after(120):
        while True:
            job = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 0.2}))
            if job["done"]:
                return job, time.perf_counter() - started


async def health_while_down(client) -> tuple[dict, float]:
    started = time.perf_counter()
    health = payload(await client.call_tool("server_health", {}))
    return health, time.perf_counter() - started


async def test_tuning_job_fails_cleanly_when_the_tracking_server_goes_away(tmp_path, tmp_path_factory):
    mlflow = StoppableMlflowServer(tmp_path)
    mlflow.start()
    settings = isolated_settings(tmp_path / "home", tracking_uri=mlflow.uri, tracking_timeout_seconds=TIMEOUT)
    server = build_server(settings)
    figures: dict = {"tracking_timeout_seconds": TIMEOUT}
    try:
        async with Client(server) as client:
            for outage in ("stopped", "frozen"):
                job_id = payload(await client.call_tool(
                    "tune_hyperparameters", {"request": {**LONG, "seed": len(figures)}, "wait_seconds": 0}
                ))["job_id"]
                await wait_until_trials(client, job_id, 3)
                outage_started = time.perf_counter()
                if outage == "stopped":
                    mlflow.stop()
                else:
                    mlflow.signal_group(signal.SIGSTOP)
                outage_seconds = time.perf_counter() - outage_started
                job, _ = await wait_for_end(client, job_id)
                seconds_to_fail = time.perf_counter() - outage_started
                assert job["state"] == "FAILED", job
                assert "tracking store unavailable" in job["error"], job["error"]
                # Detection takes at most one timeout; the trial in flight may add a second or two
                # (a graceful stop of the server, measured here too, takes a few more).
                assert seconds_to_fail < outage_seconds + TIMEOUT + 6, (seconds_to_fail, outage_seconds)
                health, health_seconds = await health_while_down(client)
                assert health["status"] == "degraded" and not health["tracking_reachable"]
                assert health_seconds < TIMEOUT + 2
                during = await client.call_tool("tune_hyperparameters", {"request": SHORT, "wait_seconds": 30})
                assert "tracking store unavailable" in error_text(during) and error_of(during)["code"] == "unavailable"
                listed = payload(await client.call_tool("list_jobs", {}))
                assert listed["running"] == 0

                restart_started = time.perf_counter()
                if outage == "stopped":
                    mlflow.start()  # same port, same backend store
                else:
                    mlflow.signal_group(signal.SIGCONT)
                    assert wait_http(mlflow.uri + "/health", 30)
                restart_seconds = time.perf_counter() - restart_started
                await anyio.sleep(TIMEOUT)  # the tracker asks a server that failed again after one timeout
                after = await client.call_tool("tune_hyperparameters", {"request": SHORT, "wait_seconds": 50})
                assert not after.is_error, after.content[0].text
                result = payload(after)
                assert result["state"] == "SUCCEEDED" and result["result"]["n_trials"] == 3
                parent = await client.call_tool("get_run", {"run_id": result["result"]["parent_run_id"]})
                assert payload(parent)["status"] == "FINISHED"
                health = payload(await client.call_tool("server_health", {}))
                assert health["status"] == "ok"
                figures[outage] = {
                    "trials_before_outage": job["progress"]["current"],
                    "seconds_to_take_the_store_down": round(outage_seconds, 2),
                    "seconds_from_outage_start_to_job_failed": round(seconds_to_fail, 2),
                    "server_health_seconds_while_down": round(health_seconds, 2),
                    "store_back_seconds": round(restart_seconds, 1),
                    "new_job_after_recovery": result["state"],
                    "job_error": job["error"][:160],
                }
    finally:
        server.state.close()
        mlflow.stop()
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / "outage.json").write_text(json.dumps(figures, indent=2))
    print("\noutage figures:", json.dumps(figures))
