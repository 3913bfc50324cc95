"""Worker processes die with the server, and their memory is bounded (``mcp_server.workers``).

- The real ``nba-mcp serve`` is SIGKILLed while an isolated worker fits 4,000 trees: the worker and
  the resource trackers are gone within seconds (before: still alive 400 s later).
- A worker started from a thread that then ends keeps serving (the parent-death signal follows the
  thread that forked, so every worker is forked by one long-lived thread).
- A fit past ``worker_memory_limit_mb`` fails its trial with an error naming the limit and the setting.
Figures go to ``<pytest tmp>/reliability/workers.json``.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.support import isolated_settings, payload, server_env, shared_template
from tests.support.processes import cpu_seconds, descendants, is_worker, wait_all_dead
from tests.support.stdio import RawStdioServer

FIGURES: dict = {}
ONE_LONG_TRIAL = {
    "dataset": "breast_cancer", "estimator": "random_forest", "strategy": "grid", "max_trials": 1,
    "cv_folds": 3, "seed": 3, "experiment_name": "worker-death", "leak_check": "warn",
    "space": {"n_estimators": {"type": "categorical", "choices": [4000]}},
}


@pytest.fixture(scope="module", autouse=True)
def _write_figures(tmp_path_factory):
    yield
    if FIGURES:
        out = tmp_path_factory.getbasetemp() / "reliability"
        out.mkdir(exist_ok=True)
        (out / "workers.json").write_text(json.dumps(FIGURES, indent=2))
        print(f"\nworkers.json: {json.dumps(FIGURES)}")


def busy_worker(server_pid: int, timeout: float) -> int:
    """The pid of the server's loky worker once it has used 2 s of CPU (imports done, fitting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, command in descendants(server_pid).items():
            if "popen_loky_posix" in command and cpu_seconds(pid) >= 2.0:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no busy worker under the server after {timeout} s: {descendants(server_pid)}")


def test_workers_and_resource_trackers_die_within_seconds_of_a_sigkill_of_the_server(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    server = RawStdioServer(server_env(home), tmp_path / "server.log")
    try:
        job = payload(server.call_tool("tune_hyperparameters", {"request": ONE_LONG_TRIAL, "wait_seconds": 0}))
        assert job["state"] in ("QUEUED", "RUNNING"), job
        worker = busy_worker(server.proc.pid, 90)
        children = {pid: cmd for pid, cmd in descendants(server.proc.pid).items() if is_worker(cmd)}
        assert worker in children and any("resource_tracker" in c for c in children.values()), children
    finally:
        server.kill()  # SIGKILL: no code of the server runs
    alive, seconds = wait_all_dead(list(children), 10)
    assert alive == [], {pid: children[pid] for pid in alive}
    FIGURES["sigkill_during_fit"] = {
        "processes_under_server": len(children), "alive_10s_after": len(alive),
        "last_one_gone_after_s": round(seconds, 2),
    }


def test_a_worker_forked_for_a_thread_that_ended_keeps_serving():
    from mcp_server.hyperparameter_tuning import run_stoppable

    first: list[int] = []
    helper = threading.Thread(target=lambda: first.append(run_stoppable(os.getpid, should_stop=None)))
    helper.start()
    helper.join(120)
    assert first, "the first call did not return"
    time.sleep(0.5)  # a parent-death signal tied to the helper thread would have fired by now
    assert run_stoppable(os.getpid, should_stop=None) == first[0]  # the same warm worker, alive


def test_a_fit_past_the_worker_memory_limit_fails_its_trial_naming_the_setting():
    from mcp_server import workers
    from mcp_server.error_handling import ExecutionError
    from mcp_server.hyperparameter_tuning import HyperparameterTuner

    def train(params):
        import numpy as np

        return np.ones((params["gib"], 1024, 1024, 128))  # gib GiB of float64: past the limit, within the machine

    workers.configure(memory_limit_mb=1536)
    try:
        tuner = HyperparameterTuner(enable_mlflow=False, backend="process")
        started = time.perf_counter()
        with pytest.raises(ExecutionError) as failed:
            tuner.grid_search({"gib": [4]}, train_fn=train, eval_fn=lambda model: 0.0)
        elapsed = time.perf_counter() - started
    finally:
        workers.configure(memory_limit_mb=None)
    error = str(failed.value)
    assert "MemoryError: the fit needed more memory than a worker may use (worker_memory_limit_mb=1536 MB)" in error
    FIGURES["memory_limit_trial"] = {"limit_mb": 1536, "asked_gib": 4, "seconds": round(elapsed, 2),
                                     "error": error[:240]}
