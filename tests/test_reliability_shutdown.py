"""A shutdown that fits the window MCP clients give (``tools.shutdown``).

The SDK's stdio client closes the server's stdin, waits 2 s, SIGTERMs the process group, and SIGKILLs
it 2 s later. With the SDK's own ``Client`` over stdio and a spawned ``nba-mcp serve``, closing in
the middle of a 4,000-tree trial: the server exits within 2.5 s, no run is left RUNNING (the search's
parent KILLED with its best score), no worker process is left, and no resource tracker reports leaked
semaphores. A second signal during the stop waits for its run-ending step. The 20-close soak is
``slow``; the normal suite closes twice. Figures go to ``<pytest tmp>/reliability/shutdown.json``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.support import isolated_settings, payload, server_env, shared_template
from tests.support.processes import cpu_seconds, descendants, is_alive, is_worker, wait_all_dead
from tests.support.stdio import RawStdioServer
from tests.test_reliability_crash import running_runs, store_rows
from tests.test_reliability_stop import first_trial_done

pytestmark = pytest.mark.anyio
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIGURES: dict = {}
# Trial 0 is quick (a best score exists), trial 1 (4,000 trees x 3 folds) is in progress at the close.
SEARCH = {
    "dataset": "breast_cancer", "estimator": "random_forest", "strategy": "grid", "max_trials": 3,
    "cv_folds": 3, "seed": 3, "experiment_name": "client-close", "leak_check": "warn",
    "space": {"n_estimators": {"type": "categorical", "choices": [10, 4000, 4001]}},
}
EXIT_BOUND_SECONDS = 2.5


@pytest.fixture(scope="module", autouse=True)
def _write_figures(tmp_path_factory):
    yield
    if FIGURES:
        out = tmp_path_factory.getbasetemp() / "reliability"
        out.mkdir(exist_ok=True)
        path = out / "shutdown.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **FIGURES}, indent=2))
        print(f"\nshutdown.json: {json.dumps(FIGURES)}")


def servers_of_this_test() -> set[int]:
    return {pid for pid, cmd in descendants(os.getpid()).items() if "tools.cli serve" in cmd}


def inside_the_long_trial(server_pid: int, db: Path, timeout: float = 90) -> None:
    """Once trial 0 is in the store and the worker has spent 0.5 s more CPU: trial 1 is being fitted."""
    deadline = time.monotonic() + timeout
    while not first_trial_done(db):
        assert time.monotonic() < deadline, "trial 0 did not finish"
        time.sleep(0.05)
    workers = [p for p, c in descendants(server_pid).items() if "popen_loky_posix" in c]
    assert workers, descendants(server_pid)
    start = {p: cpu_seconds(p) for p in workers}
    while not any(cpu_seconds(p) - start[p] >= 0.5 for p in workers):
        assert time.monotonic() < deadline, "the worker is not fitting"
        time.sleep(0.05)


def search_parents_with_a_best_score(db: Path) -> list[tuple[str, float | None]]:
    return store_rows(db, "SELECT r.status, m.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND "
                          "t.key = 'nba_mcp.kind' AND t.value = 'tuning_search' LEFT JOIN latest_metrics m "
                          "ON m.run_uuid = r.run_uuid AND m.key LIKE 'best_cv_%'")


class DeathClock:
    """The seconds from ``start()`` until ``pid`` is gone (a zombie counts as gone)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.seconds = pid, None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread.start()

    def _watch(self) -> None:
        while is_alive(self.pid) and time.perf_counter() - self._started < 30:
            time.sleep(0.005)
        self.seconds = time.perf_counter() - self._started

    def join(self) -> float:
        self._thread.join(35)
        return self.seconds


async def close_during_a_trial(home: Path, db: Path, log: Path) -> dict:
    params = StdioServerParameters(command="sh", args=["-c", f'exec "{sys.executable}" -m tools.cli serve 2>>"{log}"'],
                                   env=server_env(home), cwd=str(PROJECT_ROOT))
    before = servers_of_this_test()
    client = Client(params)
    await client.__aenter__()
    try:
        (server,) = servers_of_this_test() - before
        job = payload(await client.call_tool("tune_hyperparameters", {"request": SEARCH, "wait_seconds": 0}))
        assert job["state"] in ("QUEUED", "RUNNING"), job
        inside_the_long_trial(server, db)
        children = {p: c for p, c in descendants(server).items() if is_worker(c)}
        clock = DeathClock(server)
    except BaseException:
        await client.__aexit__(None, None, None)
        raise
    clock.start()
    await client.__aexit__(None, None, None)  # the SDK's close: stdin closed, SIGTERM 2 s later, ...
    close_seconds = time.perf_counter() - clock._started
    exit_seconds = clock.join()
    left, _ = wait_all_dead(list(children), 0.5)
    return {"exit_s": exit_seconds, "close_s": close_seconds, "workers_left": len(left), "running": running_runs(db)}


async def closes(tmp_path, tmp_path_factory, repeats: int) -> None:
    outcomes, parents, logs = [], [], ""
    for i in range(repeats):  # a store per close: "trial 0 done" is read from it
        home = tmp_path / f"home{i}"
        isolated_settings(home, shared_template(tmp_path_factory))
        db, log = home / "mlflow.db", tmp_path / f"server{i}.log"
        outcomes.append(await close_during_a_trial(home, db, log))
        parents += search_parents_with_a_best_score(db)
        logs += log.read_text()
    assert all(o["exit_s"] <= EXIT_BOUND_SECONDS for o in outcomes), outcomes
    assert all(o["running"] == 0 and o["workers_left"] == 0 for o in outcomes), outcomes
    assert len(parents) == repeats and all(s == "KILLED" and best is not None for s, best in parents), parents
    assert "leaked" not in logs and "again: exiting now" not in logs, logs[-3000:]
    exits = [o["exit_s"] for o in outcomes]
    FIGURES[f"sdk_client_close_x{repeats}"] = {
        "exit_p50_s": round(statistics.median(exits), 2), "exit_max_s": round(max(exits), 2),
        "client_close_max_s": round(max(o["close_s"] for o in outcomes), 2),
        "runs_running_after": sum(o["running"] for o in outcomes),
        "workers_left": sum(o["workers_left"] for o in outcomes),
        "parents_killed_with_best_score": len(parents), "second_signals": logs.count("again: exiting now"),
    }


async def test_sdk_client_closes_during_a_trial_exit_within_the_window(tmp_path, tmp_path_factory):
    await closes(tmp_path, tmp_path_factory, 2)


@pytest.mark.slow
async def test_twenty_sdk_client_closes_during_a_trial_all_exit_within_the_window(tmp_path, tmp_path_factory):
    await closes(tmp_path, tmp_path_factory, 20)


def test_a_second_signal_during_the_stop_waits_for_the_runs_to_end(tmp_path, tmp_path_factory):
    """EOF, then SIGTERM 0.3 s later (an impatient client): the SIGTERM no longer skips the run-ending step."""
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    db = home / "mlflow.db"
    server = RawStdioServer(server_env(home), tmp_path / "server.log")
    try:
        server.call_tool("tune_hyperparameters", {"request": SEARCH, "wait_seconds": 0})
        inside_the_long_trial(server.proc.pid, db)
        children = [p for p, c in descendants(server.proc.pid).items() if is_worker(c)]
        started = time.perf_counter()
        server.proc.stdin.close()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(10)
        exit_seconds = time.perf_counter() - started
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        server.log.close()
    left, _ = wait_all_dead(children, 1.0)
    log = (tmp_path / "server.log").read_text()
    assert "SIGTERM again: exiting now" in log and "not all ended" not in log, log[-2000:]
    assert code == 128 + signal.SIGTERM and exit_seconds <= EXIT_BOUND_SECONDS, (code, exit_seconds)
    assert running_runs(db) == 0 and left == []
    assert [s for s, _ in search_parents_with_a_best_score(db)] == ["KILLED"]
    FIGURES["eof_then_sigterm_0.3s"] = {"exit_s": round(exit_seconds, 2), "exit_code": code, "runs_running_after": 0}
