"""The smaller reliability items of round 2, one test each (in-process, fast).

- One tracker per experiment name no longer keeps an idle writer thread each.
- Experiment names ``..`` and ``Default`` cannot put artifacts in the data folder or the working directory.
- A viewer sees no absolute server path in server_health, list_experiments, get_run or ``runs://``.
- ``end_run`` ends a stuck run KILLED (execute permission), refuses a run of a live job of this
  server, and a viewer is denied; the search can then be resumed.
- Orphan leases: a dead instance's lease is judged dead whatever its pid (PID 1 included).
- Job slots: a job whose work ignores its stop frees its slot after the grace; per-principal job cap.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from mcp import Client

from mcp_server import rbac
from mcp_server.error_handling import InvalidRequestError, ResourceLimitError
from mcp_server.jobs import JobManager, JobState
from mcp_server.mlflow_integration import OWNER_TAG
from mcp_server.mlflow_integration import _recovery as recovery
from tools.server import build_server
from tests.support import error_of, error_text, payload, isolated_settings, shared_template

pytestmark = pytest.mark.anyio
VIEWER = rbac.Principal("vera", {"viewer"})
DEVELOPER = rbac.Principal("dev", {"developer"})


@pytest.fixture
def server(tmp_path, tmp_path_factory):
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory))
    srv = build_server(settings)
    yield srv
    srv.state.close(3)


def test_thirty_experiments_do_not_keep_thirty_writer_threads(server):
    app = server.state
    before = threading.active_count()
    for i in range(30):
        tracker = app.tracker(f"exp-{i}")
        parent = tracker.create_run(run_name="p")
        tracker.record_run(run_name="t", params={"a": i}, metrics={"m": 1.0}, parent_run_id=parent, background=True)
        tracker.flush()
        tracker.end_run("FINISHED", run_id=parent)
    time.sleep(0.2)
    assert threading.active_count() - before <= 2, threading.enumerate()


@pytest.mark.parametrize("name", ["..", ".", "Default", "default", "..."])
async def test_experiment_names_that_escape_the_artifact_root_are_refused(server, name):
    async with Client(server) as client:
        result = await client.call_tool("start_experiment", {"request": {"name": name}})
    assert "experiment name" in error_text(result), result.content[0].text


async def test_a_viewer_sees_no_absolute_server_paths(server):
    app = server.state
    tracker = app.tracker()
    run_id = tracker.create_run(run_name="paths")
    tracker.end_run("FINISHED", run_id=run_id)
    home = str(app.settings.data_home)
    seen = {}
    for principal in (VIEWER, DEVELOPER):
        with rbac.acting_as(principal):
            async with Client(server) as client:
                texts = [
                    str(payload(await client.call_tool("server_health", {}))),
                    str(payload(await client.call_tool("list_experiments", {}))),
                    str(payload(await client.call_tool("get_run", {"run_id": run_id}))),
                    str((await client.read_resource(f"runs://{run_id}")).contents[0].text),
                ]
        seen[principal.id] = [home in t for t in texts]
    assert seen["vera"] == [False] * 4
    assert seen["dev"] == [True] * 4


async def test_end_run_ends_a_stuck_run_and_the_search_resumes(server):
    app = server.state
    tracker = app.tracker()
    stuck = tracker.create_run(run_name="stuck", tags={"nba_mcp.kind": "tuning_search"})
    # Pretend another (hung, unreachable) server owns it.
    tracker.set_tag(OWNER_TAG, "elsewhere:4242:feedfacefeedface", run_id=stuck)
    tracker.flush()
    with rbac.acting_as(VIEWER):
        async with Client(server) as client:
            denied = await client.call_tool("end_run", {"run_id": stuck})
    assert error_of(denied)["code"] == "permission_denied"
    mine = tracker.create_run(run_name="mine")  # opened by this process: its job must be cancelled instead
    with rbac.acting_as(DEVELOPER):
        async with Client(server) as client:
            ended = await client.call_tool("end_run", {"run_id": stuck, "reason": "server hung"})
            again = await client.call_tool("end_run", {"run_id": stuck})
            own = await client.call_tool("end_run", {"run_id": mine})
    assert not ended.is_error, ended.content[0].text
    assert payload(ended)["status"] == "KILLED"
    assert "only a RUNNING run can be ended" in error_text(again) and error_of(again)["code"] == "failed_precondition"
    assert "cancel that job" in error_text(own) and error_of(own)["code"] == "failed_precondition"
    run = tracker.get_run(stuck)
    assert run.status.value == "KILLED" and "ended by dev" in run.tags["nba_mcp.termination_reason"]
    tracker.end_run("FINISHED", run_id=mine)


def test_a_dead_instance_is_judged_by_its_lease_whatever_its_pid(tmp_path):
    leases = tmp_path / "leases"
    leases.mkdir()
    # A live holder (another open file description holding the lock) and a dead one (file, no lock).
    live = leases / f"aaaaaaaaaaaaaaaa{recovery.LEASE_SUFFIX}"
    fd = os.open(live, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (leases / f"bbbbbbbbbbbbbbbb{recovery.LEASE_SUFFIX}").write_text("x")
    host = os.uname().nodename
    try:
        assert recovery.owned_by_dead_process(f"{host}:1:aaaaaaaaaaaaaaaa", leases) is None
        assert "lease released" in recovery.owned_by_dead_process(f"{host}:1:bbbbbbbbbbbbbbbb", leases)
        # Another host, same data folder (a restarted container): the lease still decides.
        assert recovery.owned_by_dead_process("old-container:1:bbbbbbbbbbbbbbbb", leases)
        # No lease file: host + pid as before; our own pid with another instance is a previous life.
        assert recovery.owned_by_dead_process(f"{host}:{os.getpid()}:cccccccccccccccc", leases)
        assert recovery.owned_by_dead_process(f"{host}:{os.getpid()}", leases) is None
        assert recovery.owned_by_dead_process(recovery.owner(), leases) is None
        assert recovery.remove_dead_leases(leases) == 1 and live.exists()
    finally:
        os.close(fd)


def test_a_job_that_ignores_its_stop_frees_its_slot_after_the_grace():
    manager = JobManager(max_concurrent=1, job_timeout=None, stop_grace=0.5)
    release = threading.Event()
    stuck = manager.submit("tune", lambda job: release.wait(30))  # never looks at its cancel event
    queued = manager.submit("tune", lambda job: "next")
    time.sleep(0.1)
    started = time.perf_counter()
    manager.cancel(stuck)
    done = manager.wait(queued, timeout=5)
    freed = time.perf_counter() - started
    release.set()
    assert done.state is JobState.SUCCEEDED and freed < 2
    assert manager.get(stuck).state is JobState.CANCELLED and "abandoned" in manager.get(stuck).error
    manager.shutdown(timeout=2)
    assert manager.running_count == 0


def test_jobs_are_capped_per_principal():
    manager = JobManager(max_concurrent=1, job_timeout=None, max_per_owner=2)
    gate = threading.Event()
    for _ in range(2):
        manager.submit("tune", lambda job: gate.wait(5), owner="vera")
    with pytest.raises(ResourceLimitError, match="at most 2 jobs per principal"):
        manager.submit("tune", lambda job: None, owner="vera")
    manager.submit("tune", lambda job: None, owner="dev")  # the others are not affected
    gate.set()
    manager.shutdown(timeout=5)


def test_a_resumed_search_cannot_be_resumed_again_while_it_runs(server):
    app = server.state
    app.claim_resume("f" * 32)
    with pytest.raises(InvalidRequestError, match="already being resumed"):
        app.claim_resume("f" * 32)
    app.release_resume("f" * 32)
    app.claim_resume("f" * 32)
    app.release_resume("f" * 32)


def test_a_version_whose_run_lost_its_metrics_says_how_to_recover(tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    from mcp_server.mlflow_integration import get_mlflow_tracker
    from mcp_server.settings import Settings
    from mcp_server.training_pipeline import promote_model

    tracker = get_mlflow_tracker("registry", mock_mode=True, settings=Settings(data_home=tmp_path))
    run_id = tracker.create_run(run_name="killed-mid-registration")  # never got its metrics
    uri = tracker.log_model(DecisionTreeClassifier().fit([[0], [1]], [0, 1]), run_id=run_id)
    version = tracker.register_model(uri, "m", run_id=run_id)
    with pytest.raises(InvalidRequestError, match="register the model again from a FINISHED run"):
        promote_model(tracker, "m", version)
    decision = promote_model(tracker, "m", version, primary_metric="test_accuracy")
    holder = tracker.register_model(uri, "m", run_id=run_id)
    later = promote_model(tracker, "m", holder, primary_metric="test_accuracy")
    assert decision.promoted and not later.promoted and "register_model from a FINISHED run" in later.reason


@pytest.mark.slow
async def test_two_concurrent_resumes_of_one_search_never_duplicate_trials(server):
    import anyio

    search = {"dataset": "iris", "estimator": "decision_tree", "strategy": "random", "max_trials": 4,
              "cv_folds": 2, "seed": 7, "leak_check": "warn", "experiment_name": "resume-race",
              "space": {"max_depth": {"type": "int", "low": 1, "high": 8}}}
    async with Client(server) as client:
        first = payload(await client.call_tool("tune_hyperparameters", {"request": search, "wait_seconds": 30}))
        parent = first["result"]["parent_run_id"]
        resumed = {**search, "max_trials": 12, "resume_from": parent}
        answers = []

        async def resume() -> None:
            answers.append(await client.call_tool("tune_hyperparameters", {"request": resumed, "wait_seconds": 0}))

        async with anyio.create_task_group() as group:
            group.start_soon(resume)
            group.start_soon(resume)
        accepted = [a for a in answers if not a.is_error]
        refused = [a for a in answers if a.is_error]
        for answer in accepted:
            await client.call_tool("get_job", {"job_id": payload(answer)["job_id"], "wait_seconds": 30})
    tracker = server.state.tracker("resume-race")
    runs, _ = tracker.search_runs_page(f"tags.mlflow.parentRunId = '{parent}'", 100)
    numbers = sorted(int(r.tags["nba_mcp.trial_number"]) for r in runs)
    assert len(accepted) == 1 and len(refused) == 1, [a.content[0].text for a in answers]
    assert "being resumed" in error_text(refused[0]) or "RUNNING" in error_text(refused[0])
    assert numbers == list(range(12)), numbers


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_search_with_a_clear_message():
    from mcp_server.error_handling import ExecutionError
    from mcp_server.hyperparameter_tuning import HyperparameterTuner

    def train(params):
        os._exit(9)  # what the OOM killer does to a worker

    tuner = HyperparameterTuner(enable_mlflow=False, backend="process")
    started = time.perf_counter()
    with pytest.raises(ExecutionError, match="worker process died"):
        tuner.grid_search({"a": [1, 2]}, train_fn=train, eval_fn=lambda model: 0.0)
    assert time.perf_counter() - started < 30


def test_close_ends_the_runs_this_process_left_running(tmp_path, tmp_path_factory):
    settings = isolated_settings(tmp_path / "home", shared_template(tmp_path_factory))
    srv = build_server(settings)
    tracker = srv.state.tracker("leftovers")
    leftover = tracker.create_run(run_name="left-running")  # e.g. a job abandoned after its grace
    other = tracker.create_run(run_name="someone-else's")
    tracker.set_tag(OWNER_TAG, "elsewhere:4242:feedfacefeedface", run_id=other)
    tracker.flush()
    ended = srv.state.close(3, reason="the server stopped (test)")
    assert ended == [leftover]
    reopened = srv.state.tracker("leftovers")
    assert reopened.get_run(leftover).status.value == "KILLED"
    assert reopened.get_run(leftover).tags["nba_mcp.termination_reason"] == "the server stopped (test)"
    assert reopened.get_run(other).status.value == "RUNNING"
    reopened.kill_run(other, "test cleanup")
