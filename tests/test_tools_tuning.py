"""tune_hyperparameters and the job tools through the in-memory Client, on real data and MLflow."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server import rbac
from mcp_server.logged_values import logged_text
from tests.support import payload, ANALYST, VIEWER, error_text, template_db, tool_server, tool_settings  # noqa: F401

pytestmark = pytest.mark.anyio

SMALL = {"dataset": "iris", "estimator": "decision_tree", "max_trials": 4, "cv_folds": 3, "seed": 7}
SLOW = {"dataset": "breast_cancer", "estimator": "random_forest", "max_trials": 60, "cv_folds": 5, "seed": 1,
        "space": {"n_estimators": {"type": "int", "low": 50, "high": 120}}}


async def test_tuning_returns_the_result_and_reports_progress_per_trial(tool_server):
    progress = []

    async def on_progress(current, total, message):
        progress.append((current, total, message))

    async with Client(tool_server) as client:
        result = await client.call_tool(
            "tune_hyperparameters",
            {"request": {**SMALL, "experiment_name": "tuning-tests", "strategy": "random"}},
            progress_callback=on_progress,
        )
        job = payload(result)
        parent = await client.call_tool("get_run", {"run_id": job["result"]["parent_run_id"]})
    assert job["state"] == "SUCCEEDED" and job["done"]
    outcome = job["result"]
    assert outcome["n_trials"] == 4 and outcome["seed"] == 7 and outcome["scoring"] == "f1_macro"
    assert set(outcome["best_params"]) == {"max_depth", "min_samples_split", "min_samples_leaf"}
    assert outcome["top_trials"][0]["score"] == outcome["best_score"]
    trial_messages = [m for _, _, m in progress if m.startswith("trial ")]
    assert [m.split(",")[0] for m in trial_messages] == [f"trial {i}/4" for i in range(1, 5)]  # one per trial
    assert trial_messages[-1].startswith("trial 4/4, best f1_macro ")
    assert [c for c, _, _ in progress] == sorted(c for c, _, _ in progress)
    assert payload(parent)["status"] == "FINISHED"


async def test_halving_reports_progress_per_rung_and_trials_carry_their_rung(tool_server):
    progress = []

    async def on_progress(current, total, message):
        progress.append(message)

    request = {**SMALL, "dataset": "breast_cancer", "max_trials": 12, "experiment_name": "tuning-tests",
               "strategy": "halving", "factor": 3, "min_resource": 30,
               "space": {"max_depth": {"type": "categorical", "choices": [1, 2, 3, 4, 6, 8]}}}
    async with Client(tool_server) as client:
        result = await client.call_tool("tune_hyperparameters", {"request": request}, progress_callback=on_progress)
    outcome = payload(result)["result"]
    assert outcome["strategy"] == "halving" and outcome["n_trials"] == 6 + 2 + 1
    assert outcome["top_trials"][0]["rung"] == 2 and outcome["top_trials"][0]["resource"] > 30
    assert any(m.startswith("rung 1/3 (") for m in progress) and any(m.startswith("rung 3/3 (") for m in progress)


@pytest.mark.parametrize(
    ("request_update", "expected"),
    [
        ({"cv_folds": 1}, "request.cv_folds: Input should be greater than or equal to 2 (got 1)"),
        ({"strategy": "annealing"}, "request.strategy: \"annealing\" is not one of 'grid', 'random', 'bayesian', 'halving'"),
        ({"strategy": "halving", "factor": 1}, "request.factor: Input should be greater than 1 (got 1)"),
        ({"estimator": "xgboost"}, "request.estimator: \"xgboost\" is not one of 'random_forest'"),
        ({"space": {"max_depth": {"type": "int", "low": 2}}}, "request.space.max_depth.high: required"),
        ({"scoring": "r2"}, "scoring 'r2' does not fit task classification"),
        ({"dataset": "no_such_data"}, "dataset 'no_such_data' not found"),
        ({"dataset": "../../etc/passwd"}, "is not allowed"),
        ({"dataset": "nba_logreg"}, "target is required for the data set 'nba_logreg'"),
        ({"space": {"max_depth": {"type": "int", "low": 9, "high": 2}}}, "max_depth"),
        ({"strategy": "halving", "space": {"max_depth": {"type": "categorical", "choices": list(range(1, 61))},
                                           "min_samples_leaf": {"type": "categorical", "choices": list(range(1, 61))}}},
         "space is too large for strategy='halving' over grid candidates"),
    ],
)
async def test_invalid_requests_say_what_to_fix(tool_server, request_update, expected):
    async with Client(tool_server) as client:
        result = await client.call_tool("tune_hyperparameters", {"request": {**SMALL, **request_update}})
    assert expected in error_text(result)


async def test_viewer_may_not_tune(tool_server):
    with rbac.acting_as(VIEWER):
        async with Client(tool_server) as client:
            result = await client.call_tool("tune_hyperparameters", {"request": SMALL})
    assert error_text(result).endswith("permission denied")


async def test_job_id_when_not_done_in_time_then_poll_and_cancel(tool_server):
    async with Client(tool_server) as client:
        started = payload(await client.call_tool(
            "tune_hyperparameters", {"request": {**SLOW, "experiment_name": "tuning-cancel"}, "wait_seconds": 0}
        ))
        assert started["state"] in ("QUEUED", "RUNNING") and not started["done"]
        assert "get_job" in started["hint"] and started["result"] is None
        job_id = started["job_id"]
        # Wait until at least one trial finished, then cancel.
        seen = []

        async def on_progress(current, total, message):
            seen.append(message)

        while not any(m.startswith("trial ") for m in seen):
            await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 0.5}, progress_callback=on_progress)
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert payload(cancelled)["state"] in ("RUNNING", "CANCELLED")
        final = payload(await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 30}))
        assert final["state"] == "CANCELLED"
        partial = final["result"]
        assert partial["stopped_reason"] == "cancelled" and 1 <= partial["n_trials"] < 60
        parent = await client.call_tool("get_run", {"run_id": partial["parent_run_id"]})
        assert payload(parent)["status"] == "KILLED"
        listed = payload(await client.call_tool("list_jobs", {"state": "CANCELLED"}))
        assert job_id in [j["job_id"] for j in listed["jobs"]]


async def test_jobs_beyond_the_limit_queue_and_others_jobs_need_delete(tool_server):
    async with Client(tool_server) as client:
        ids = []
        for seed in range(3):
            job = await client.call_tool(
                "tune_hyperparameters", {"request": {**SLOW, "seed": seed}, "wait_seconds": 0}
            )
            ids.append(payload(job)["job_id"])
        listed = payload(await client.call_tool("list_jobs", {"kind": "tune", "limit": 3}))
        assert listed["running"] <= 2 and listed["running"] + listed["queued"] == 3
        with rbac.acting_as(ANALYST):  # analysts run jobs, but may not cancel someone else's
            async with Client(tool_server) as other:
                denied = await other.call_tool("cancel_job", {"job_id": ids[0]})
        assert error_text(denied).endswith("permission denied")
        for job_id in ids:
            await client.call_tool("cancel_job", {"job_id": job_id})
        for job_id in ids:
            final = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 30})
            assert payload(final)["state"] == "CANCELLED"


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("get_job", {"job_id": "0123abcd"}, "job_id '0123abcd' does not name a known job"),
        ("get_job", {"job_id": "NOT-HEX"}, "String should match pattern"),
        ("cancel_job", {"job_id": "0123abcd"}, "does not name a known job"),
        ("list_jobs", {"state": "PAUSED"}, "state: \"PAUSED\" is not one of 'QUEUED'"),
    ],
)
async def test_job_tools_reject_unknown_ids_and_states(tool_server, tool, args, expected):
    async with Client(tool_server) as client:
        assert expected in error_text(await client.call_tool(tool, args))


async def test_abandoning_a_get_job_poll_leaves_the_job_running(tool_server):
    import anyio

    async with Client(tool_server) as client:
        job_id = payload(await client.call_tool(
            "tune_hyperparameters", {"request": {**SLOW, "seed": 11}, "wait_seconds": 0}))["job_id"]
        with anyio.move_on_after(0.5):
            await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 20})
        still = payload(await client.call_tool("get_job", {"job_id": job_id}))
        assert still["state"] in ("QUEUED", "RUNNING")
        await client.call_tool("cancel_job", {"job_id": job_id})
        final = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 30})
        assert payload(final)["state"] == "CANCELLED"


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory, template_db):
    """A server whose default search budget is 6 s (the product's is 60 s)."""
    from tests.support import isolated_settings
    from tools.server import build_server

    settings = isolated_settings(tmp_path_factory.mktemp("budget-home"), template_db, default_time_budget_seconds=6.0)
    server = build_server(settings)
    yield server
    server.state.close()


async def test_the_default_call_searches_the_families_within_the_default_budget(budget_server):
    """Only data set, target, drop and split: estimator='auto', bounded by default_time_budget_seconds."""
    import time

    request = {"dataset": "nba_logreg", "target": "TARGET_5Yrs", "drop": ["Name"],
               "split": {"kind": "kfold", "test_size": 0.2, "seed": 0}, "experiment_name": "auto-default"}
    async with Client(budget_server) as client:
        # A server that has served a search has its trial worker and imports warm; this one too.
        warm = {**request, "estimator": "lightgbm", "max_trials": 1, "cv_folds": 2}
        assert payload(await client.call_tool("tune_hyperparameters", {"request": warm, "wait_seconds": 40}))["done"]
        began = time.monotonic()
        job = payload(await client.call_tool("tune_hyperparameters", {"request": request, "wait_seconds": 40}))
        elapsed = time.monotonic() - began
        outcome = job["result"]
        parent = payload(await client.call_tool("get_run", {"run_id": outcome["parent_run_id"]}))
    assert job["state"] == "SUCCEEDED" and outcome["stopped_reason"] == "timeout"
    families = {f["name"]: f for f in outcome["families"]}
    assert set(families) == {"logistic_regression", "lightgbm", "hist_gradient_boosting", "extra_trees",
                             "random_forest"}
    tried = [f for f in families.values() if f["n_trials"]]
    assert tried and outcome["estimator"] in families and "estimator" not in outcome["best_params"]
    assert outcome["best_score"] == max(f["best_score"] for f in tried if f["best_score"] is not None)
    assert parent["params"]["estimator"] == "auto"
    # The job's own budget holds (a cold worker or data load before the job is not in it).
    assert outcome["elapsed_seconds"] <= 6 * 1.1 and elapsed < 6 * 1.1 + 5, (outcome["elapsed_seconds"], elapsed)


async def test_run_pipeline_from_search_trains_exactly_the_winner_on_the_searched_holdout(tool_server):
    search = {"dataset": "breast_cancer", "estimator": "decision_tree", "max_trials": 3, "cv_folds": 3, "seed": 2,
              "split": {"test_size": 0.25, "seed": 5}, "experiment_name": "from-search"}
    async with Client(tool_server) as client:
        job = payload(await client.call_tool("tune_hyperparameters", {"request": search}))
        tuned = job["result"]
        by_run = payload(await client.call_tool("run_pipeline", {"request": {
            "from_search": tuned["parent_run_id"], "model_name": "from-search", "experiment_name": "from-search"}}))
        by_job = payload(await client.call_tool("run_pipeline", {"request": {
            "from_search": job["job_id"], "model_name": "from-search", "experiment_name": "from-search",
            "promote": False}}))
        clash = await client.call_tool("run_pipeline", {"request": {
            "from_search": tuned["parent_run_id"], "estimator": "random_forest"}})
        run = payload(await client.call_tool("get_run", {"run_id": by_run["result"]["run_id"]}))
    trained = by_run["result"]
    assert trained["status"] == "COMPLETED" and "test_roc_auc" in trained["metrics"]
    # The holdout the search kept out, and the winner's own hyperparameters under their names.
    assert trained["split"]["test_digest"] == tuned["split"]["test_digest"]
    assert run["params"]["estimator"] == "decision_tree"
    # As the store renders values (max_depth=None is "null").
    assert {k: run["params"][k] for k in tuned["best_params"]} == {
        k: logged_text(v) for k, v in tuned["best_params"].items()}
    assert by_job["result"]["split"]["test_digest"] == tuned["split"]["test_digest"]
    assert "estimator='random_forest' (the search: 'decision_tree')" in error_text(clash)
