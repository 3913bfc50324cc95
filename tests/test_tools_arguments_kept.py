"""Tool arguments that never get lost (issue 30, item 4): what an agent stumbled on in a held-out
session, each answered so that one retry fixes it, through the SDK's in-memory ``Client``.

- a flat call keeps every key: request fields move inside ``request``, a misspelt one is renamed
  to its did-you-mean, and the suggested call is the fixed call (sent back verbatim, it runs);
- ``dataset`` names the data set in every tool (``name`` still works in ``describe_dataset``) and an
  alias of ``mcp_server.field_aliases`` works in every tool that has its field;
- a split given as a string (or without its column) gets a complete example with the data set's
  date column;
- ``predict`` with text in a numeric column names the row, the column and the expected type;
- an unknown job id lists the caller's recent jobs;
- the default model name keeps the whole data set name (``nba.games.stats``).
"""

from __future__ import annotations

import json

import pytest
from mcp import Client

from mcp_server.field_aliases import FIELD_ALIASES
from tests._leaky_frames import write_game_log
from tests.support import error_of, isolated_settings, payload, template_db  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio
DATASET = "nba.games.stats"  # a file name with dots inside, as the held-out session's data set
FEATURES = ["HOME", "FGM", "FG3M", "FTM", "REB", "AST", "TOV"]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory, template_db):
    from tools.server import build_server

    folder = tmp_path_factory.mktemp("games")
    write_game_log(folder, f"{DATASET}.csv")  # a 'Date' column of ISO dates, target 'WL'
    built = build_server(isolated_settings(tmp_path_factory.mktemp("home"), template_db, data_dirs=[folder]))
    yield built
    built.state.close()


def fixed_call(error: dict, tool: str) -> dict:
    """The call an error's ``fix`` suggests, parsed (it must be exactly JSON after the tool name)."""
    prefix = f"call {tool} with "
    assert error["fix"].startswith(prefix), error
    return json.loads(error["fix"].removeprefix(prefix))


async def test_a_flat_call_with_a_misspelt_field_is_fixed_in_one_retry(server):
    flat = {"dataset": "sklearn:iris", "n_trials": 2, "cv_folds": 2, "estimator": "decision_tree", "wait_seconds": 30}
    async with Client(server) as client:
        error = error_of(await client.call_tool("tune_hyperparameters", flat))
        call = fixed_call(error, "tune_hyperparameters")
        # every key kept: n_trials renamed to what it means, not dropped (the search would run 20 trials)
        assert call == {"request": {"dataset": "sklearn:iris", "max_trials": 2, "cv_folds": 2,
                                    "estimator": "decision_tree"}, "wait_seconds": 30}
        assert error["did_you_mean"] == "max_trials" and "n_trials" in error["message"], error
        assert error["message"].endswith(error["fix"]), error  # the message ends with the same call
        done = payload(await client.call_tool("tune_hyperparameters", call))  # the fix, verbatim
    assert done["state"] == "SUCCEEDED", done
    assert done["result"]["n_trials"] == 2, done["result"]


async def test_a_flat_key_that_means_nothing_is_kept_and_named(server):
    async with Client(server) as client:
        error = error_of(await client.call_tool("run_pipeline", {
            "dataset": DATASET, "drop_columns": ["GAME_ID"], "zorblax": 3, "wait": 1, "request": {"n_folds": 3}}))
    call = fixed_call(error, "run_pipeline")
    # drop_columns is an accepted alias of drop: moved as it is
    assert call == {"request": {"dataset": DATASET, "drop_columns": ["GAME_ID"], "zorblax": 3, "cv_folds": 3},
                    "wait_seconds": 1}, call
    assert "zorblax: unknown field (kept inside 'request'" in error["message"], error
    assert {p["field"] for p in error["problems"]} == {"dataset", "drop_columns", "zorblax", "wait", "n_folds"}


async def test_every_tool_names_the_data_set_dataset(server):
    async with Client(server) as client:
        schemas = {t.name: t.input_schema for t in (await client.list_tools()).tools}
        by_dataset = payload(await client.call_tool("describe_dataset", {"dataset": "sklearn:iris"}))
        by_name = payload(await client.call_tool("describe_dataset", {"name": "sklearn:iris"}))  # kept working
        hint = error_of(await client.call_tool("describe_dataset", {"dataset_name": "sklearn:iris"}))
    naming = {}
    for tool, schema in schemas.items():
        fields = set(schema["properties"])
        request = schema["properties"].get("request")
        if request is not None and "$ref" in request:
            fields |= {f"request.{f}" for f in schema["$defs"][request["$ref"].rsplit("/", 1)[-1]]["properties"]}
        naming[tool] = {f for f in fields if f.rsplit(".", 1)[-1] in ("dataset", "name", "dataset_name")}
    data_tools = {t: f for t, f in naming.items() if t in ("describe_dataset", "validate_data", "tune_hyperparameters",
                                                           "run_pipeline")}
    assert data_tools == {"describe_dataset": {"dataset"}, "validate_data": {"request.dataset"},
                          "tune_hyperparameters": {"request.dataset"}, "run_pipeline": {"request.dataset"}}
    assert by_dataset == by_name and by_dataset["n_rows"] == 150
    assert hint["did_you_mean"] == "dataset", hint


async def test_an_alias_works_in_every_tool_that_has_its_field(server):
    async with Client(server) as client:
        schemas = {t.name: t.input_schema for t in (await client.list_tools()).tools}
        tried = []
        for tool, schema in schemas.items():
            request = schema["properties"].get("request")
            if request is None or "$ref" not in request:
                continue
            fields = schema["$defs"][request["$ref"].rsplit("/", 1)[-1]]["properties"]
            for field, aliases in FIELD_ALIASES.items():
                if field not in fields:
                    continue
                for alias in aliases:
                    value = ["GAME_ID"] if field == "drop" else "player_stats"
                    # a data set that does not exist: the arguments passed, the plan says not_found
                    result = await client.call_tool(tool, {"request": {"dataset": "no_such_data", alias: value}})
                    error = error_of(result)
                    assert error["code"] == "not_found" and "no_such_data" in error["message"], (tool, alias, error)
                    tried.append((tool, alias))
    assert {("tune_hyperparameters", "drop_columns"), ("run_pipeline", "drop_columns"), ("run_pipeline", "schema"),
            ("validate_data", "drop_columns"), ("validate_data", "schema")} <= set(tried), tried


@pytest.mark.parametrize(("split", "kept"), [("time", ""), ({"kind": "time"}, ""), ("by time", ""),
                                             ({"kind": "time", "test_size": 0.3}, ', "test_size": 0.3')])
async def test_a_split_without_its_column_is_answered_with_a_complete_one(server, split, kept):
    request = {"dataset": DATASET, "target": "WL", "features": FEATURES, "max_trials": 1, "cv_folds": 2,
               "estimator": "decision_tree"}
    async with Client(server) as client:
        error = error_of(await client.call_tool("tune_hyperparameters", {"request": {**request, "split": split}}))
        assert error["field"] == "request.split", error
        assert error["fix"] == 'split={"kind": "time", "column": "Date"' + kept + '}', error  # the data set's date column
        fixed = json.loads(error["fix"].removeprefix("split="))
        started = payload(await client.call_tool("tune_hyperparameters", {"request": {**request, "split": fixed},
                                                                          "wait_seconds": 30}))
    assert started["state"] == "SUCCEEDED", started


async def test_a_group_split_given_as_a_word_gets_its_example(server):
    async with Client(server) as client:
        checked = error_of(await client.call_tool("validate_data", {"request": {"dataset": DATASET, "split": "group"}}))
        trained = error_of(await client.call_tool("run_pipeline", {"request": {"dataset": DATASET, "split": "group"}}))
    for error in (checked, trained):
        assert error["field"] == "request.split", error
        assert error["fix"].startswith('split={"kind": "group", "column": "<the column naming each group'), error


async def test_predict_names_the_column_that_is_not_a_number_and_the_model_keeps_the_data_set_name(server):
    request = {"dataset": DATASET, "target": "WL", "features": FEATURES, "estimator": "logistic_regression",
               "cv_folds": 2}
    async with Client(server) as client:
        trained = payload(await client.call_tool("run_pipeline", {"request": request, "wait_seconds": 45}))
        assert trained["state"] == "SUCCEEDED", trained
        model_name = trained["result"]["model_name"]
        row = {"HOME": 1, "FGM": 40, "FG3M": 12, "FTM": 17, "REB": 44, "AST": 24, "TOV": 14}
        error = error_of(await client.call_tool("predict", {
            "model_name": model_name, "alias_or_version": "1", "rows": [row, {**row, "FGM": "ten", "TOV": "many"}]}))
        as_text = payload(await client.call_tool("predict", {
            "model_name": model_name, "alias_or_version": "1", "rows": [{**row, "FGM": "40"}]}))
        plain = payload(await client.call_tool("predict", {"model_name": model_name, "alias_or_version": "1",
                                                            "rows": [row]}))
    assert model_name == f"{DATASET}-WL"  # not 'nba.games-WL'
    assert error["code"] == "invalid_argument" and error["field"] == "rows", error
    assert "rows[1].FGM = 'ten'" in error["message"] and "rows[1].TOV = 'many'" in error["message"], error
    assert "expected a number" in error["message"] and "could not convert" not in error["message"], error
    assert as_text["predictions"] == plain["predictions"]  # a number sent as text is read as the number


async def test_an_unknown_job_id_lists_the_callers_recent_jobs(server):
    async with Client(server) as client:
        started = payload(await client.call_tool("tune_hyperparameters", {
            "request": {"dataset": "sklearn:iris", "max_trials": 1, "cv_folds": 2, "estimator": "decision_tree"},
            "wait_seconds": 30}))
        job_id = started["job_id"]
        typo = job_id[:-1] + ("0" if job_id[-1] != "0" else "1")
        error = error_of(await client.call_tool("get_job", {"job_id": typo}))
        cancel = error_of(await client.call_tool("cancel_job", {"job_id": "abc123"}))
    assert error["code"] == "not_found" and job_id in error["message"] and "list_jobs" in error["message"], error
    assert error["did_you_mean"] == job_id, error
    assert job_id in cancel["message"], cancel
