"""``python -m benchmarks.team_soak`` — the team setup measured: a private PostgreSQL cluster, an
`mlflow server --serve-artifacts` on it, and two ``nba-mcp serve`` processes with 2 jobs each for
``--seconds`` (default 60, the issue's minute; the suite runs 12 s of the same in
tests/test_team_deployment.py). Then the per-trial logging cost on the three stores.

    python -m benchmarks.team_soak                  # PostgreSQL soak (60 s) + logging cost
    python -m benchmarks.team_soak --seconds 20 --skip-logging

Needs PostgreSQL's server binaries (initdb, pg_ctl; Debian: apt-get install postgresql).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def logging_cost(uri: str, root: Path, trials: int = 40) -> float:
    """Median seconds to record one trial run (params, 2 metrics, a 5-step history) under a parent."""
    from mcp_server.mlflow_integration import get_mlflow_tracker
    from mcp_server.settings import Settings

    tracker = get_mlflow_tracker(f"logging-cost-{int(time.time())}", tracking_uri=uri,
                                 settings=Settings(data_home=root))
    try:
        times = []
        with tracker.start_run("search") as parent:
            for i in range(trials):
                started = time.perf_counter()
                tracker.record_run(run_name=f"trial-{i}", params={"max_depth": i, "min_samples_leaf": 2},
                                   metrics={"cv_roc_auc_mean": 0.8, "cv_roc_auc_std": 0.01},
                                   metric_history={"fold_score": [0.8] * 5}, parent_run_id=parent)
                times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]
    finally:
        tracker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.team_soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-logging", action="store_true", help="only the soak")
    args = parser.parse_args(argv)

    from tests._leaky_frames import game_log
    from tests.support import MlflowServer
    from tests.support.engines import PostgresCluster, postgres_skip_reason
    from tests.support.soak import check_store, run_soak

    reason = postgres_skip_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="nba-mcp-team-soak-"))
    data = root / "data"
    data.mkdir()
    game_log().drop(columns=["PTS", "OPP_PTS", "Date", "GAME_ID"]).to_csv(data / "games.csv", index=False)
    figures: dict = {"load_before": os.getloadavg(), "cores": os.cpu_count()}
    with PostgresCluster() as postgres:
        server = MlflowServer(root / "mlflow-pg", backend_store_uri=postgres.uri())
        (root / "mlflow-pg").mkdir()
        server.start()
        figures["postgres_start_seconds"] = round(postgres.start_seconds, 1)
        figures["mlflow_server_start_seconds"] = round(server.start_seconds, 1)
        try:
            report = run_soak(server.uri, root / "soak", data, seconds=args.seconds)
            figures["soak"] = report.figures()
            figures["store"] = check_store(server.uri, report)
            figures["failures"] = report.failures
            if not args.skip_logging:
                figures["trial_logging_ms"] = {"mlflow server on PostgreSQL": round(
                    1000 * logging_cost(server.uri, root / "cost-pg"), 1)}
        finally:
            server.stop()
    if not args.skip_logging:
        sqlite_server = MlflowServer(root / "mlflow-sqlite")
        (root / "mlflow-sqlite").mkdir()
        sqlite_server.start()
        try:
            figures["trial_logging_ms"]["mlflow server on sqlite"] = round(
                1000 * logging_cost(sqlite_server.uri, root / "cost-sqlite-server"), 1)
        finally:
            sqlite_server.stop()
        figures["trial_logging_ms"]["embedded sqlite"] = round(
            1000 * logging_cost(f"sqlite:///{root / 'embedded.db'}", root / "cost-sqlite"), 1)
    figures["load_after"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    store = figures["store"]
    ok = (not figures["failures"] and store["running_runs"] == 0
          and store["finished_per_search"] == [4] * len(store["finished_per_search"])
          and store["champion_version"] in store["promoted_versions"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
