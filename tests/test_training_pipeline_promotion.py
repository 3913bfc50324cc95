"""Promotion is a compare-and-set (rule 18): concurrent ``promote_model`` calls on one store, from
threads, from two processes and from two MCP servers, always leave the best version champion, and
every answer (and the run's ``promotion.*`` tags) tells what really happened.

Each round resets the champion to the worst version (force), then promotes better versions at once.
Before the lock, two servers on one sqlite store promoting the best and the second-best both
answered ``promoted: true`` in 16 of 20 rounds and left the second-best champion in 8.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mcp_server.error_handling import TrackingUnavailableError
from mcp_server.mlflow_integration import MLflowExperimentTracker, get_mlflow_tracker
from mcp_server.settings import Settings
from mcp_server.training_pipeline import promote_model
from tests.support import isolated_settings, server_env, template_db  # noqa: F401  (fixture)
from tests.support.data import PROJECT_ROOT

ROUNDS = 20
METRIC = "rmse"  # lower is better
RMSES = [9.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # v1 (the worst, reset each round) … v6 (the best)


def add_versions(tracker, model_name: str, rmses: list[float]) -> list[int]:
    """One finished run per score, each registered as the next version. Promotion reads a version's
    score from its run, so the versions share one (tiny, real) logged model: logging costs time."""
    from sklearn.dummy import DummyRegressor

    model_uri, versions = None, []
    for rmse in rmses:
        with tracker.start_run(f"{model_name}-rmse-{rmse:g}") as run_id:
            tracker.log_params({"primary_metric": METRIC})
            tracker.log_metrics({f"test_{METRIC}": rmse})
            model_uri = model_uri or tracker.log_model(DummyRegressor().fit([[0.0], [1.0]], [0.0, 1.0]),
                                                       run_id=run_id)
        versions.append(tracker.register_model(model_uri, model_name, run_id=run_id,
                                               tags={"primary_metric": METRIC}))
    return versions


def round_errors(answers: list[dict], reset: int, best: int, champion: int) -> list[str]:
    """What is wrong with one round, given every answer and the champion afterwards ([] when right).

    Promotions are serialized when each one moved the alias away from the holder of that moment:
    the ``promoted: true`` answers then form one chain reset → … → champion (no two moved the alias
    away from the same holder: that is a lost update); every ``promoted: false`` answer names as
    ``previous_version`` a version that held the alias in that chain.
    """
    errors = [] if champion == best else [f"champion v{champion}, not the best v{best}"]
    moves = [(a["previous_version"], a["version"]) for a in answers
             if a["promoted"] and a["previous_version"] != a["version"]]
    chain, holder = [reset], reset
    following = dict(moves)
    if len(following) != len(moves):
        errors.append(f"two promotions moved the alias away from the same holder: {sorted(moves)}")
    while holder in following and len(chain) <= len(moves):
        holder = following[holder]
        chain.append(holder)
    if len(chain) != len(moves) + 1 or holder != champion:
        errors.append(f"promoted answers {sorted(moves)} are not one chain from v{reset} to champion v{champion}")
    for a in answers:
        held = a["previous_version"] if not a["promoted"] or a["previous_version"] == a["version"] else None
        if held is not None and held not in chain:
            errors.append(f"v{a['version']} answered against v{held}, which never held the alias: {a['reason']}")
    return errors


def summary(wrong: dict[int, list[str]], rounds: int = ROUNDS) -> str:
    not_best = sum(any(e.startswith("champion v") for e in errors) for errors in wrong.values())
    return f"{len(wrong)} of {rounds} rounds wrong ({not_best} left a champion that is not the best): {wrong}"


# --- threads and two processes on one sqlite store -------------------------------------------------
def _promote_in_rounds(uri: str, home: str, model_name: str, versions: list[int], rounds: int,
                       barrier, answers) -> None:
    """A second process: one tracker, one thread per version, each promoting once a round."""
    tracker = MLflowExperimentTracker("promotion-race", uri, settings=Settings(data_home=home))

    def promote(version: int) -> None:
        for round_number in range(rounds):
            barrier.wait(120)  # the champion was reset
            try:
                answers.put((round_number, promote_model(tracker, model_name, version).model_dump()))
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                answers.put((round_number, {"error": f"{type(exc).__name__}: {exc}"}))
            barrier.wait(120)  # every answer is in

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker.close()


def test_threads_and_two_processes_on_one_sqlite_store_always_leave_the_best_champion(tmp_path, template_db):
    settings = isolated_settings(tmp_path / "home", template_db)
    uri = str(settings.tracking_uri)
    worst, *better = range(1, len(RMSES) + 1)  # the versions add_versions registers
    best = better[-1]
    # Two processes with three threads each: six promotions a round, of the five better versions, the
    # best twice (whichever comes second answers "already holds").
    groups = [[better[1], better[3], best], [better[2], better[0], best]]
    context = multiprocessing.get_context("spawn")  # fork would copy this process's open store
    barrier = context.Barrier(sum(map(len, groups)) + 1)
    answers = context.Queue()
    processes = [context.Process(target=_promote_in_rounds, daemon=True,
                                 args=(uri, str(settings.data_home), "race", g, ROUNDS, barrier, answers))
                 for g in groups]
    for process in processes:
        process.start()  # they start (import MLflow) while the versions are registered
    tracker = MLflowExperimentTracker("promotion-race", uri, settings=settings)
    assert add_versions(tracker, "race", RMSES) == [worst, *better]
    wrong = {}
    try:
        for round_number in range(ROUNDS):
            assert promote_model(tracker, "race", worst, force=True).promoted
            barrier.wait(120)
            barrier.wait(120)
            got = [answers.get(timeout=30) for _ in range(sum(map(len, groups)))]
            assert {r for r, _ in got} == {round_number}
            assert not [a for _, a in got if "error" in a], got
            champion = tracker.get_model_version("race", "champion")["version"]
            errors = round_errors([a for _, a in got], worst, best, champion)
            if errors:
                wrong[round_number] = errors
    finally:
        barrier.abort()
        for process in processes:
            process.join(60)
        tracker.close()
    assert not wrong, summary(wrong)


def test_in_memory_tracker_serializes_promotions_of_its_threads():
    tracker = get_mlflow_tracker("promotion-race", mock_mode=True)
    worst, *better = add_versions(tracker, "race", RMSES)
    # An in-memory promotion takes a millisecond, less than a thread's time slice (5 ms): with slices
    # of 0.1 ms the threads interleave as on a real store (without the lock, 7-12 of 20 rounds wrong).
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        rounds = _in_memory_rounds(tracker, worst, better)
    finally:
        sys.setswitchinterval(switch_interval)
    wrong = {n: errors for n, errors in enumerate(rounds) if errors}
    assert not wrong, summary(wrong)


def _in_memory_rounds(tracker, worst: int, better: list[int]) -> list[list[str]]:
    rounds = []
    for _ in range(ROUNDS):
        promote_model(tracker, "race", worst, force=True)
        start, got = threading.Barrier(len(better) * 2), []

        def promote(version: int) -> None:
            start.wait(30)
            got.append(promote_model(tracker, "race", version).model_dump())

        threads = [threading.Thread(target=promote, args=(v,)) for v in better * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        champion = tracker.get_model_version("race", "champion")["version"]
        rounds.append(round_errors(got, worst, better[-1], champion))
    return rounds


# --- the acceptance: two MCP servers (two processes) on one sqlite store ---------------------------
def test_two_mcp_servers_on_one_store_promote_the_best_every_round(tmp_path, template_db):
    from tests.support.stdio import RawStdioServer

    settings = isolated_settings(tmp_path / "home", template_db)
    env = server_env(settings.data_home)
    servers: list[RawStdioServer] = []
    starting = [threading.Thread(target=lambda i=i: servers.append(RawStdioServer(env, tmp_path / f"s{i}.log")))
                for i in range(2)]
    for thread in starting:
        thread.start()  # the servers start while the versions are registered
    tracker = MLflowExperimentTracker("promotion-race", str(settings.tracking_uri), settings=settings)
    worst, second, best = add_versions(tracker, "acceptance", [3.0, 2.0, 1.0])
    run_of = {v: tracker.get_model_version("acceptance", v)["run_id"] for v in (second, best)}
    for thread in starting:
        thread.join(180)
    assert len(servers) == 2, "a server did not start"
    promote = {"request": {"model_name": "acceptance"}}
    wrong = {}
    try:
        for round_number in range(ROUNDS):
            reset = servers[0].call_json("promote_model", {"request": {**promote["request"], "version": worst,
                                                                       "force": True}})
            assert reset["promoted"] and reset["version"] == worst
            # Alternate which server promotes which version, and start both at once.
            pairs = list(zip(servers if round_number % 2 else servers[::-1], (second, best), strict=True))
            start, got = threading.Barrier(2), {}

            def call(server, version):
                start.wait(30)
                got[version] = server.call_json("promote_model", {"request": {**promote["request"],
                                                                              "version": version}})

            threads = [threading.Thread(target=call, args=pair) for pair in pairs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert set(got) == {second, best}, got
            champion = tracker.get_model_version("acceptance", "champion")["version"]
            errors = round_errors(list(got.values()), worst, best, champion)
            # The runs' promotion tags say what their answers said (never a promotion that did not stick).
            for version, run_id in run_of.items():
                tags = tracker.get_run(run_id).tags
                if tags.get("promotion.promoted") != str(got[version]["promoted"]).lower():
                    errors.append(f"v{version} answered promoted={got[version]['promoted']}, its run's tags say "
                                  f"{tags.get('promotion.promoted')}")
            if not got[second]["promoted"] and (got[second]["previous_version"] != best
                                                or f"v{best}" not in got[second]["reason"]):
                errors.append(f"the losing call does not name the winner v{best}: {got[second]}")
            if errors:
                wrong[round_number] = errors
    finally:
        for server in servers:
            server.stop()
        tracker.close()
    assert not wrong, summary(wrong)


# --- the lock itself, per kind of store --------------------------------------------------------------
HOLD = """
import sys, time
from mcp_server.mlflow_integration import MLflowExperimentTracker
from mcp_server.settings import Settings
tracker = MLflowExperimentTracker("lock-holder", sys.argv[1], settings=Settings(data_home=sys.argv[2]))
with tracker.promotion_lock(sys.argv[3]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["sqlite", "server", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_uri(request, tmp_path, template_db):
    """A tracking store of each kind: a sqlite file, an `mlflow server`, a PostgreSQL database."""
    if request.param == "sqlite":
        return str(isolated_settings(tmp_path / "home", template_db).tracking_uri)
    if request.param == "server":
        return request.getfixturevalue("mlflow_server").uri
    postgres = request.getfixturevalue("postgres_mlflow_server").postgres
    return postgres.create_database(f"locks_{os.getpid()}_{time.monotonic_ns()}")


def test_a_lock_held_by_another_process_bounds_the_wait_and_dies_with_it(store_uri, tmp_path):
    from mcp_server.mlflow_integration import _lock

    holder = subprocess.Popen([sys.executable, "-c", HOLD, store_uri, str(tmp_path), "locked-model"],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE)
    tracker = MLflowExperimentTracker("locks", store_uri, settings=Settings(data_home=tmp_path))
    try:
        assert holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        with pytest.raises(TrackingUnavailableError, match="promoting a version of 'locked-model' gave up waiting"):
            with tracker.promotion_lock("locked-model", timeout=0.5):
                pass
        assert 0.5 <= time.monotonic() - started < 5
        with tracker.promotion_lock("another-model", timeout=5):  # one lock per model name
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        if store_uri.startswith("http"):
            # Nothing ends a registry mutex when its holder dies: a waiter breaks it once it has seen
            # the same holder for the stale time (here 1 s instead of 90).
            with _lock.store_lock(store_uri, "locked-model", client=tracker._client, what="promoting",
                                  deadline=time.monotonic() + 30, stale=1.0):
                pass
            assert 1.0 <= time.monotonic() - started < 10
            left = tracker._client.search_registered_models(f"name LIKE '%{_lock.MUTEX_SUFFIX}%'")
            assert not left, [m.name for m in left]  # neither the lock nor its breaker stays behind
        else:  # the kernel (flock) or the database (advisory lock) released it with the process
            with tracker.promotion_lock("locked-model", timeout=5):
                pass
            assert time.monotonic() - started < 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdout.close()
        tracker.close()


def test_two_trackers_on_an_mlflow_server_promote_the_best_every_round(mlflow_server, tmp_path):
    """The registry mutex under contention: two trackers (as two servers would) with two threads each."""
    settings = Settings(data_home=tmp_path)
    trackers = [MLflowExperimentTracker("promotion-race-server", mlflow_server.uri, settings=settings)
                for _ in range(2)]
    model_name = f"server-race-{time.monotonic_ns()}"
    worst, *better = add_versions(trackers[0], model_name, [3.0, 2.0, 1.5, 1.0])
    wrong = {}
    try:
        for round_number in range(5):
            promote_model(trackers[0], model_name, worst, force=True)
            start, got = threading.Barrier(4), []

            def promote(tracker, version):
                start.wait(30)
                got.append(promote_model(tracker, model_name, version).model_dump())

            threads = [threading.Thread(target=promote, args=(t, v))
                       for t, v in zip(trackers * 2, [better[0], better[2], better[1], better[2]], strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert len(got) == 4
            champion = trackers[0].get_model_version(model_name, "champion")["version"]
            errors = round_errors(got, worst, better[-1], champion)
            if errors:
                wrong[round_number] = errors
        assert not trackers[0]._client.search_registered_models(f"name LIKE '{model_name}.%'")  # no lock left
    finally:
        for tracker in trackers:
            tracker.close()
    assert not wrong, summary(wrong, 5)
