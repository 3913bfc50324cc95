"""Arguments an agent gets wrong are answered so that one retry fixes them (tools.arguments)."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from tests.support import error_text, payload, template_db, tool_server, tool_settings  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio
TUNE = {"dataset": "sklearn:iris", "max_trials": 2, "cv_folds": 2}


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


async def call(server, tool: str, arguments: dict) -> str:
    async with Client(server) as client:
        return error_text(await client.call_tool(tool, arguments))


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        # an unknown field: the closest real one, by spelling or by what agents call it
        ("tune_hyperparameters", {"request": {**TUNE, "n_trials": 3}}, "request.n_trials: unknown field; did you mean 'max_trials'?"),
        ("tune_hyperparameters", {"request": {**TUNE, "max_trial": 3}}, "did you mean 'max_trials'?"),
        ("tune_hyperparameters", {"request": {**TUNE, "exclude_columns": ["x"]}}, "did you mean 'drop'?"),
        ("run_pipeline", {"request": {"dataset": "sklearn:iris", "n_folds": 3}}, "did you mean 'cv_folds'?"),
        # an option of the call given inside request
        ("tune_hyperparameters", {"request": {**TUNE, "wait_seconds": 5}}, "'wait_seconds' goes beside 'request', not inside it"),
        # an enum value: the closest choice and the choices
        ("tune_hyperparameters", {"request": {**TUNE, "strategy": "bayes"}}, "did you mean 'bayesian'?"),
        ("tune_hyperparameters", {"request": {**TUNE, "estimator": "randomforest"}}, "did you mean 'random_forest'?"),
        ("list_jobs", {"state": "running"}, "did you mean 'RUNNING'?"),
        # a malformed space: the expected form
        ("tune_hyperparameters", {"request": {**TUNE, "space": ["max_depth"]}}, '{"max_depth": {"type": "int", "low": 2, "high": 12}'),
        ("tune_hyperparameters", {"request": {**TUNE, "space": {"max_depth": [2, 4]}}}, '"type": "categorical", "choices"'),
        ("tune_hyperparameters", {"request": {**TUNE, "space": {"max_depth": {"type": "integer"}}}}, '"type": "int"'),
        # bounds: field, rule, value
        ("tune_hyperparameters", {"request": TUNE, "wait_seconds": 55}, "wait_seconds: Input should be less than or equal to 50 (got 55)"),
        ("get_job", {"job_id": "ab", "wait_seconds": 60}, "less than or equal to 50"),
    ],
)
async def test_a_wrong_argument_is_answered_with_the_fix(tool_server, tool, arguments, expected):
    text = await call(tool_server, tool, arguments)
    assert expected in text, text
    assert "errors.pydantic.dev" not in text and "validation error" not in text and "[type=" not in text


@pytest.mark.parametrize("tool", ["tune_hyperparameters", "run_pipeline"])
async def test_arguments_passed_flat_are_answered_with_the_wrapped_call(tool_server, tool):
    text = await call(tool_server, tool, {"dataset": "sklearn:iris", "estimator": "random_forest", "wait_seconds": 5})
    assert "dataset, estimator belong inside 'request'" in text
    wrapped = json.loads(text.split(" with ", 1)[1])
    assert wrapped == {"request": {"dataset": "sklearn:iris", "estimator": "random_forest"}, "wait_seconds": 5}


async def test_both_training_tools_name_the_left_out_columns_drop(tool_server):
    async with Client(tool_server) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    for name, def_name in (("tune_hyperparameters", "TuneRequest"), ("run_pipeline", "StandardPipelineRequest")):
        fields = tools[name]["$defs"][def_name]["properties"]
        assert "drop" in fields and "drop_columns" not in fields, name


async def test_job_views_leave_out_the_request_and_waits_stay_under_a_client_timeout(tool_server, tool_settings):
    assert tool_settings.default_wait_seconds == 40
    async with Client(tool_server) as client:
        started = payload(await client.call_tool("tune_hyperparameters", {"request": TUNE, "wait_seconds": 0}))
        polled = payload(await client.call_tool("get_job", {"job_id": started["job_id"], "wait_seconds": 30}))
        listed = payload(await client.call_tool("list_jobs", {"limit": 1}))["jobs"][0]
    assert "params" not in started and "params" not in polled and polled["result"]["best_score"] is not None
    assert listed["params"]["dataset"] == "sklearn:iris"  # the list says what each job is


async def test_compare_runs_shows_model_metrics_and_bookkeeping_only_on_request(tool_server):
    tracker = tool_server.state.tracker("compare-bookkeeping")
    ids = [tracker.record_run(run_name=f"r{i}", params={"max_depth": i}, tags={},
                              metrics={"roc_auc": 0.7 + i / 100, "stage.model_training.seconds": 1.0 + i,
                                       "duration_seconds": 2.0}) for i in (1, 2)]
    async with Client(tool_server) as client:
        default = payload(await client.call_tool("compare_runs", {"run_ids": ids}))
        everything = payload(await client.call_tool("compare_runs", {"run_ids": ids, "include_bookkeeping": True}))
    assert set(default["metrics"]) == {"roc_auc"}
    assert set(everything["metrics"]) == {"roc_auc", "stage.model_training.seconds", "duration_seconds"}
