"""Several ``nba-mcp serve`` processes sharing one tracking store, each keeping jobs in flight for a
bounded time: tuning searches and pipelines that race to promote the same model's champion.

Used by tests/test_team_deployment.py (a short soak) and by ``python -m benchmarks.team_soak``
(the full minute). ``check_store`` reads the store afterwards: every requested trial FINISHED,
no run RUNNING, registry versions unique and the champion alias on a promoted version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import server_env
from tests.support.stdio import RawStdioServer

TRIALS_PER_SEARCH = 4
MODEL_NAME = "team-soak-model"


@dataclass
class SoakReport:
    seconds: float = 0.0
    searches: list[dict] = field(default_factory=list)  # tuning results (parent_run_id, n_trials)
    pipelines: list[dict] = field(default_factory=list)  # pipeline results (model_version, promotion)
    failures: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "searches": len(self.searches),
                "trials_requested": len(self.searches) * TRIALS_PER_SEARCH, "pipelines": len(self.pipelines),
                "promotions": sum(bool(p["promotion"]["promoted"]) for p in self.pipelines),
                "failures": len(self.failures)}


def _job(kind: int, server_index: int) -> tuple[str, dict]:
    if kind % 2 == 0:
        return "tune_hyperparameters", {
            "dataset": "iris", "estimator": "decision_tree", "strategy": "random", "cv_folds": 3,
            "max_trials": TRIALS_PER_SEARCH, "seed": 100 * server_index + kind, "experiment_name": "team-soak-tuning",
            "space": {"max_depth": {"type": "int", "low": 1, "high": 12}}}
    return "run_pipeline", {
        "dataset": "games", "target": "WL", "estimator": "decision_tree", "params": {"max_depth": 1 + kind % 5},
        "model_name": MODEL_NAME, "experiment_name": "team-soak-pipelines"}


def run_soak(tracking_uri: str, root: Path, data_dir: Path, *, seconds: float, servers: int = 2,
             jobs_per_server: int = 2, drain_timeout: float = 180) -> SoakReport:
    """Start ``servers`` processes on ``tracking_uri``; each keeps ``jobs_per_server`` jobs in flight
    until ``seconds`` have passed, then every job is waited for and the servers stop."""
    report = SoakReport()
    procs: list[RawStdioServer] = []
    try:
        for i in range(servers):
            home = root / f"server-{i}"
            home.mkdir(parents=True, exist_ok=True)
            env = server_env(home, data_dirs=[data_dir], NBA_MCP_TRACKING_URI=tracking_uri,
                             NBA_MCP_MAX_CONCURRENT_JOBS=str(jobs_per_server))
            env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "OMP_NUM_THREADS": "1"})
            procs.append(RawStdioServer(env, root / f"server-{i}.log"))
        started = time.monotonic()
        in_flight: list[list[str]] = [[] for _ in procs]
        submitted = [0] * len(procs)
        while True:
            submitting = time.monotonic() - started < seconds
            if not submitting and not any(in_flight):
                break
            if time.monotonic() - started > seconds + drain_timeout:
                report.failures.append(f"jobs still running {drain_timeout} s after the soak: {in_flight}")
                break
            for i, server in enumerate(procs):
                for job_id in list(in_flight[i]):
                    view = server.call_json("get_job", {"job_id": job_id})
                    if not view["done"]:
                        continue
                    in_flight[i].remove(job_id)
                    if view["state"] != "SUCCEEDED":
                        report.failures.append(f"server {i} job {job_id} {view['state']}: {view['error']}")
                    elif view["kind"] == "tune":
                        report.searches.append(view["result"])
                    else:
                        report.pipelines.append(view["result"])
                while submitting and len(in_flight[i]) < jobs_per_server:
                    tool, request = _job(submitted[i], i)
                    submitted[i] += 1
                    started_job = server.call_json(tool, {"request": request, "wait_seconds": 0})
                    in_flight[i].append(started_job["job_id"])
            time.sleep(0.3)
        report.seconds = time.monotonic() - started
    finally:
        for server in procs:
            server.stop()
    return report


def check_store(tracking_uri: str, report: SoakReport) -> dict[str, Any]:
    """Read the store with MlflowClient: trials per search, RUNNING runs, versions and the champion."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    finished_per_search = []
    for search in report.searches:
        parent = search["parent_run_id"]
        experiment_id = client.get_run(parent).info.experiment_id
        children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)
        finished_per_search.append(sum(r.info.status == "FINISHED" for r in children))
    experiment_ids = [e.experiment_id for e in client.search_experiments(filter_string="name LIKE 'team-soak-%'")]
    running = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000)
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'") if report.pipelines else []
    numbers = sorted(int(v.version) for v in versions)
    champion = None
    if report.pipelines:
        champion = int(client.get_model_version_by_alias(MODEL_NAME, "champion").version)
    promoted = sorted(int(p["model_version"]) for p in report.pipelines if p["promotion"]["promoted"])
    return {"finished_per_search": finished_per_search, "running_runs": len(running),
            "version_numbers": numbers, "champion_version": champion, "promoted_versions": promoted}
