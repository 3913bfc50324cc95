"""Load over streamable HTTP: 20 concurrent clients x 50 read calls while 2 tuning jobs run.

The real ``nba-mcp serve --transport http`` process on a free loopback port (token from
NBA_MCP_HTTP_TOKEN). Zero errors allowed; afterwards every trial run of each search holds exactly
that search's hyperparameters and metrics (no value logged to the wrong run). p50/p95 latency and
the figures go to ``<pytest tmp>/reliability/load.json``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from tests.support import payload, free_port, stop_process, wait_http
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support import data_folder, isolated_settings, server_env, shared_template

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token-0123456789"
CLIENTS, CALLS_PER_CLIENT = 20, 50
# Two searches whose hyperparameters do not overlap, so a trial logged under the wrong parent shows.
JOBS = {
    "forest": {"dataset": "breast_cancer", "estimator": "random_forest", "strategy": "random", "max_trials": 40,
               "cv_folds": 3, "seed": 1, "experiment_name": "load",
               "space": {"n_estimators": {"type": "int", "low": 20, "high": 60},
                         "max_depth": {"type": "int", "low": 2, "high": 10}}},
    "extra": {"dataset": "wine", "estimator": "extra_trees", "strategy": "random", "max_trials": 40,
              "cv_folds": 3, "seed": 2, "experiment_name": "load",
              "space": {"n_estimators": {"type": "int", "low": 20, "high": 60},
                        "min_samples_leaf": {"type": "int", "low": 1, "high": 8}}},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def connect(base: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    return Client(streamable_http_client(base + "/mcp", http_client=http))


async def test_twenty_clients_read_while_two_searches_run(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(home, data_dirs=[data_folder()], NBA_MCP_HTTP_TOKEN=TOKEN, NBA_MCP_LOG_LEVEL="WARNING")
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port", str(port)],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_http(base + "/health", 60)
        async with connect(base) as control:
            job_ids = {}
            for name, request in JOBS.items():
                started = await control.call_tool("tune_hyperparameters", {"request": request, "wait_seconds": 0})
                assert not started.is_error, started.content[0].text
                job_ids[name] = payload(started)["job_id"]
            # Both searches are running (a parent run exists) before the load starts.
            with anyio.fail_after(60):
                while True:
                    jobs = payload(await control.call_tool("list_jobs", {}))
                    if jobs["running"] == 2 and all(j["progress"]["current"] >= 1 for j in jobs["jobs"]):
                        break
                    await anyio.sleep(0.1)
            parents_seen = payload(await control.call_tool("search_runs", {"request": {
                "experiment_name": "load", "filter_string": "tags.`nba_mcp.kind` = 'tuning_search'"}}))
            a_parent = parents_seen["runs"][0]["run_id"]

            latencies: list[float] = []
            per_tool: dict[str, list[float]] = {}
            errors: list[str] = []
            reads = [
                ("list_jobs", {}), ("get_job", {"job_id": job_ids["forest"]}), ("get_job", {"job_id": job_ids["extra"]}),
                ("server_health", {}), ("list_datasets", {}), ("list_experiments", {}),
                ("search_runs", {"request": {"experiment_name": "load", "max_results": 5}}),
                ("get_run", {"run_id": a_parent, "history_limit": 5}),
                ("describe_dataset", {"name": "sklearn:wine"}),
            ]

            async def reader(number: int) -> None:
                async with connect(base) as client:
                    for i in range(CALLS_PER_CLIENT):
                        tool, args = reads[(number + i) % len(reads)]
                        started = time.perf_counter()
                        try:
                            result = await client.call_tool(tool, args)
                            if result.is_error:
                                errors.append(f"{tool}: {result.content[0].text[:200]}")
                        except Exception as exc:  # noqa: BLE001 - counted, then asserted to be zero
                            errors.append(f"{tool}: {type(exc).__name__}: {exc}")
                        elapsed = time.perf_counter() - started
                        latencies.append(elapsed)
                        per_tool.setdefault(tool, []).append(elapsed)

            load_started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for number in range(CLIENTS):
                    group.start_soon(reader, number)
            load_seconds = time.perf_counter() - load_started
            during = payload(await control.call_tool("list_jobs", {}))
            finals = {name: payload(await control.call_tool("get_job", {"job_id": job_id, "wait_seconds": 50}))
                      for name, job_id in job_ids.items()}
            for name, final in finals.items():
                if not final["done"]:
                    final = payload(await control.call_tool("get_job", {"job_id": job_ids[name], "wait_seconds": 50})
                             )
                    finals[name] = final
                assert final["state"] == "SUCCEEDED", final
            cross_logged, checked = await check_trials_stayed_with_their_search(control, finals)
    finally:
        stop_process(proc)
        log.close()

    assert errors == [], errors[:5]
    assert len(latencies) == CLIENTS * CALLS_PER_CLIENT
    assert cross_logged == [] and checked == sum(JOBS[n]["max_trials"] for n in JOBS)
    figures = {
        "clients": CLIENTS, "calls": len(latencies), "errors": len(errors), "load_seconds": round(load_seconds, 1),
        "calls_per_second": round(len(latencies) / load_seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1), "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "per_tool_p50_ms": {t: round(1000 * statistics.median(v), 1) for t, v in sorted(per_tool.items())},
        "per_tool_p95_ms": {t: round(1000 * percentile(v, 0.95), 1) for t, v in sorted(per_tool.items())},
        "jobs_running_when_load_ended": during["running"],
        "trials_done_when_load_ended": {j["job_id"]: j["progress"]["current"] for j in during["jobs"]},
        "trial_runs_checked": checked, "trial_runs_under_the_wrong_parent": len(cross_logged),
    }
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(figures, indent=2))
    print("\nload figures:", json.dumps(figures))


async def check_trials_stayed_with_their_search(client, finals: dict) -> tuple[list[str], int]:
    """Every trial run under a search's parent has that search's params, its metrics, a unique number."""
    wrong, checked = [], 0
    for name, final in finals.items():
        parent = final["result"]["parent_run_id"]
        expected_params = set(JOBS[name]["space"])
        page = payload(await client.call_tool("search_runs", {"request": {
            "experiment_name": "load", "max_results": 100,
            "filter_string": f"tags.mlflow.parentRunId = '{parent}'"}}))["runs"]
        numbers = set()
        for run in page:
            checked += 1
            detail = payload(await client.call_tool("get_run", {"run_id": run["run_id"], "history_limit": 0}))
            numbers.add(detail["tags"]["nba_mcp.trial_number"])
            if (set(run["params"]) != expected_params | {"estimator", "dataset", "target"}
                    or not any(m.startswith("cv_") and m.endswith("_mean") for m in run["metrics"])
                    or detail["tags"].get("mlflow.parentRunId") != parent):
                wrong.append(f"{name}: {run['run_id']} params={run['params']}")
        if len(numbers) != len(page) or len(page) != JOBS[name]["max_trials"]:
            wrong.append(f"{name}: {len(page)} trial runs, {len(numbers)} distinct numbers")
    return wrong, checked
