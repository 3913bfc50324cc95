"""Hostile input: thousands of invalid or malicious tool calls, generated from each tool's inputSchema.

Schema violations are generated from the ``inputSchema`` the server publishes (tools/list): one
field of a valid baseline call is replaced by a value that breaks its schema (wrong type, out of
range, NaN/inf, huge strings and lists, unknown fields, missing fields, unicode, patterns...); a
JSON Schema validator confirms the call is invalid before it is sent (the generators are in
``_hostile_strategies.py``). Semantic attacks are
schema-valid calls that must still be refused: path escapes (``..``, absolute, symlinks), unknown
data sets, columns, hyperparameters, scorers, runs, jobs and models, enormous grids, budgets past
the server's limits. Every call must come back as a tool error naming the field, no call may start
a job or create an experiment, and the server must keep serving. Figures go to
``<pytest tmp>/reliability/hostile.json`` and docs/reliability.md.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters

from tests._hostile_strategies import is_invalid, schema_violation, unbounded_nodes
from mcp_server import rbac
from tools.server import build_server
from tests.support import error_text, payload, ADMIN, data_folder_with_escapes, isolated_settings, server_env, shared_template

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_EXAMPLES = 1700
SEMANTIC_EXAMPLES = 500
STDIO_EXAMPLES = 120
RUN_A, RUN_B = "0" * 32, "1" * 32
# The same calls on every run (no example database), however slow a call is.
REPEATABLE = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# A valid call per tool: each generated call breaks exactly one field of one of these.
BASELINES: dict[str, dict[str, Any]] = {
    "list_datasets": {},
    "describe_dataset": {"dataset": "players"},
    "validate_data": {"request": {"dataset": "players", "target": "target"}},
    "start_experiment": {"request": {"name": "hostile"}},
    "list_experiments": {},
    "search_runs": {"request": {"max_results": 5}},
    "get_run": {"run_id": RUN_A},
    "compare_runs": {"run_ids": [RUN_A, RUN_B]},
    "end_run": {"run_id": RUN_A},
    "tune_hyperparameters": {
        "request": {"dataset": "iris", "estimator": "decision_tree", "max_trials": 2, "cv_folds": 2,
                    "space": {"max_depth": {"type": "int", "low": 1, "high": 3}}},
        "wait_seconds": 0,
    },
    "run_pipeline": {"request": {"dataset": "iris", "estimator": "decision_tree", "params": {"max_depth": 2}},
                     "wait_seconds": 0},
    "list_models": {"max_results": 5},
    "register_model": {"run_id": RUN_A, "model_name": "hostile-model"},
    "promote_model": {"request": {"model_name": "hostile-model", "version": 1}},
    "predict": {"model_name": "hostile-model", "rows": [{"a": 1.0, "b": 2.0}]},
    "get_job": {"job_id": "abc123"},
    "list_jobs": {"limit": 5},
    "cancel_job": {"job_id": "abc123"},
    "server_health": {},
}

FIGURES: dict[str, Any] = {"schema_calls": 0, "semantic_calls": 0, "stdio_calls": 0, "by_tool": {}, "failures": []}


# --- the servers and a blocking client ----------------------------------------------------------------


@asynccontextmanager
async def admin_client(target):
    with rbac.acting_as(ADMIN):
        async with Client(target) as client:
            yield client


class BlockingClient:
    """An MCP client driven from synchronous (hypothesis) code through an anyio portal."""

    def __init__(self, target) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self._client_cm = self.portal.wrap_async_context_manager(admin_client(target))
        self.client = self._client_cm.__enter__()

    def call(self, tool: str, args: dict):
        return self.portal.call(lambda: self.client.call_tool(tool, args))

    def list_tools(self):
        return self.portal.call(self.client.list_tools).tools

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)
        self._portal_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    players = "a,b,target\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60))
    return root, data_folder_with_escapes(root, players), shared_template(tmp_path_factory)


@pytest.fixture(scope="module")
def hostile(hostile_home):
    root, data, template = hostile_home
    app_settings = isolated_settings(root / "home", template, data_dirs=[data], max_grid_size=50,
                                     max_trials=40, max_cv_folds=5)
    server = build_server(app_settings)
    client = BlockingClient(server)
    tools = {t.name: t.input_schema for t in client.list_tools()}
    experiments_before = payload(client.call("list_experiments", {"max_results": 100}))
    yield server, client, tools
    try:
        # After everything: no job was started, no experiment created, and the server still serves.
        assert server.state.jobs.list(limit=500) == []
        assert payload(client.call("list_experiments", {"max_results": 100})) == experiments_before
        health = client.call("server_health", {})
        assert not health.is_error and payload(health)["status"] == "ok"
        described = client.call("describe_dataset", {"name": "players"})
        assert not described.is_error and payload(described)["n_rows"] == 60
    finally:
        client.close()
        server.state.close()
        write_figures(root)


def write_figures(root: Path) -> None:
    out = root.parent / "reliability"
    out.mkdir(exist_ok=True)
    (out / "hostile.json").write_text(json.dumps(FIGURES, indent=2))
    print("\nhostile-input figures:", json.dumps({k: v for k, v in FIGURES.items() if k != "by_tool"}))


def check_refused(result, tool: str, args: dict, fields: tuple[str, ...], category: str) -> None:
    FIGURES[category] += 1
    FIGURES["by_tool"][tool] = FIGURES["by_tool"].get(tool, 0) + 1
    text = error_text(result) if result.is_error else (result.content[0].text if result.content else "")
    ok = result.is_error and any(f.lower() in text.lower() for f in fields)
    if not ok:
        FIGURES["failures"].append({"tool": tool, "fields": fields, "text": text[:300],
                                    "args": json.dumps(args, default=str)[:300]})
    assert result.is_error, f"{tool} accepted invalid {fields}: {json.dumps(args, default=str)[:300]}"
    assert ok, f"{tool}: error does not name any of {fields}: {text[:400]}"
    assert "Traceback" not in text and "internal error" not in text, text[:400]


# --- tests ------------------------------------------------------------------------------------------------


def test_every_tool_has_a_valid_baseline_and_bounded_inputs(hostile):
    _, _, tools = hostile
    assert set(tools) == set(BASELINES), "a new tool needs a baseline call here"
    unbounded = []
    for name, schema in tools.items():
        jsonschema.Draft202012Validator(schema).validate(BASELINES[name])
        assert schema.get("additionalProperties") is False, name
        unbounded += [f"{name}: {where}" for where in unbounded_nodes(schema, schema)]
    # Every string, list and map a caller sends has a size limit in the published schema.
    assert unbounded == []


@pytest.mark.slow
def test_schema_violations_are_refused_naming_the_field(hostile):
    _, client, tools = hostile
    started = time.perf_counter()

    @settings(REPEATABLE, max_examples=SCHEMA_EXAMPLES)
    @given(call=schema_violation(tools, BASELINES))
    def run(call):
        tool, args, fields = call
        if not is_invalid(tools[tool], args):
            return  # the mutation happened to be valid (e.g. text that is a valid name): not counted
        check_refused(client.call(tool, args), tool, args, fields, "schema_calls")

    run()
    FIGURES["schema_seconds"] = round(time.perf_counter() - started, 1)
    assert FIGURES["schema_calls"] >= 1500


# Schema-valid calls the server must still refuse: (tool, arguments strategy, words the error must name).
KNOWN_DATASETS = {"players", "escape", "dangling", "iris", "wine", "diabetes", "breast_cancer", "nba_logreg",
                  "all_seasons"}


def _unknown_dataset(name: str) -> bool:
    if not name.strip() or name.startswith(" "):
        return True
    bare = os.path.normpath(name).removeprefix("sklearn:")
    for suffix in (".csv", ".parquet", ".pq"):
        bare = bare.removesuffix(suffix)
    return bare not in KNOWN_DATASETS


DATASET_NAMES = (
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "~root/x", "escape", "escape.csv", "dangling",
                     "dangling.csv", "linked/secret", "linked/secret.csv", "..", ".", "sub/../../players",
                     "../outside/secret", "sklearn:nope", "sklearn:../iris", "a\x00b", "linked"])
    | st.text(min_size=1, max_size=200).filter(_unknown_dataset)
)
HEX_ID = st.from_regex(r"\A[0-9a-f]{32}\Z")
WORD = st.from_regex(r"\A[a-z][a-z_]{0,24}\Z")
TREE_PARAMS = {"ccp_alpha", "class_weight", "criterion", "max_depth", "max_features", "max_leaf_nodes",
               "min_impurity_decrease", "min_samples_leaf", "min_samples_split", "min_weight_fraction_leaf",
               "monotonic_cst", "random_state", "splitter"}
TUNE = BASELINES["tune_hyperparameters"]["request"]


def _tune(**changes) -> dict:
    return {"request": {**TUNE, **changes}, "wait_seconds": 0}


SEMANTIC_CASES: list[tuple[str, st.SearchStrategy[dict], tuple[str, ...]]] = [
    ("describe_dataset", DATASET_NAMES.map(lambda n: {"dataset": n}), ("dataset",)),
    ("validate_data", DATASET_NAMES.map(lambda n: {"request": {"dataset": n}}), ("dataset",)),
    ("tune_hyperparameters", DATASET_NAMES.map(lambda n: _tune(dataset=n)), ("dataset",)),
    ("run_pipeline", DATASET_NAMES.map(lambda n: {"request": {"dataset": n}, "wait_seconds": 0}), ("dataset",)),
    ("tune_hyperparameters", WORD.filter(lambda w: w not in TREE_PARAMS).map(
        lambda w: _tune(space={w: {"type": "int", "low": 1, "high": 3}})), ("hyperparameter",)),
    ("run_pipeline", WORD.filter(lambda w: w not in TREE_PARAMS).map(
        lambda w: {"request": {"dataset": "iris", "estimator": "decision_tree", "params": {w: 1}}}),
     ("hyperparameter",)),
    # Enormous grids: up to 30 hyperparameters x 100 values (10**60 candidates); max_grid_size is 50.
    ("tune_hyperparameters", st.tuples(st.integers(2, 30), st.integers(8, 100)).map(
        lambda kn: _tune(strategy="grid", space={f"p{i}": {"type": "categorical", "choices": list(range(kn[1]))}
                                                 for i in range(kn[0])})), ("space",)),
    ("tune_hyperparameters", st.integers(41, 500).map(lambda n: _tune(max_trials=n)), ("max_trials",)),
    ("tune_hyperparameters", st.integers(6, 20).map(lambda n: _tune(cv_folds=n)), ("cv_folds",)),
    ("tune_hyperparameters", st.text(min_size=1, max_size=64).map(lambda s: _tune(scoring=s)), ("scoring",)),
    ("tune_hyperparameters", st.sampled_from(["r2", "neg_mean_squared_error", "roc_auc"]).map(
        lambda s: _tune(scoring=s)), ("scoring",)),
    ("tune_hyperparameters", WORD.filter(lambda w: w != "target").map(lambda w: _tune(target=w)), ("target",)),
    ("tune_hyperparameters", st.lists(WORD, min_size=1, max_size=5).filter(
        lambda cols: not set(cols) <= {"petal_length", "sepal_length"}).map(lambda c: _tune(features=c + ["zz"])),
     ("features",)),
    ("tune_hyperparameters", HEX_ID.map(lambda r: _tune(resume_from=r)), ("resume_from",)),
    ("tune_hyperparameters", st.just(_tune(space={"max_depth": {"type": "int", "low": 9, "high": 2}})),
     ("max_depth",)),
    ("tune_hyperparameters", st.just(_tune(space={"max_depth": {"type": "float", "low": -1.0, "high": 2.0,
                                                                "log": True}})), ("max_depth",)),
    ("validate_data", WORD.map(lambda w: {"request": {"dataset": "players", "schema_name": w + "_missing"}}),
     ("schema",)),
    ("get_run", HEX_ID.map(lambda r: {"run_id": r}), ("run",)),
    ("end_run", HEX_ID.map(lambda r: {"run_id": r}), ("run",)),
    ("compare_runs", st.lists(HEX_ID, min_size=2, max_size=10, unique=True).map(lambda r: {"run_ids": r}), ("run",)),
    ("register_model", HEX_ID.map(lambda r: {"run_id": r, "model_name": "m"}), ("run",)),
    ("get_job", HEX_ID.map(lambda j: {"job_id": j}), ("job_id",)),
    ("cancel_job", HEX_ID.map(lambda j: {"job_id": j}), ("job_id",)),
    ("predict", WORD.map(lambda m: {"model_name": m + "-missing", "rows": [{"a": 1}]}), ("model",)),
    ("promote_model", WORD.map(lambda m: {"request": {"model_name": m + "-missing", "version": 1}}), ("model",)),
    ("search_runs", WORD.map(lambda e: {"request": {"experiment_name": e + "-missing"}}), ("experiment_name",)),
    ("search_runs", st.sampled_from(["metrics.x >", "params.a = 'b' OR params.c = 'd'", "drop table",
                                     "attributes.status = ", "tags.`x = 1", "metrics.a > 'x'"]).map(
        lambda f: {"request": {"filter_string": f}}), ("filter",)),
    ("search_runs", st.text(min_size=1, max_size=100).map(lambda t: {"request": {"page_token": t}}),
     ("page_token", "page token")),
]


@pytest.mark.slow
def test_schema_valid_attacks_are_refused_naming_the_field(hostile):
    _, client, _ = hostile
    started = time.perf_counter()

    @settings(REPEATABLE, max_examples=SEMANTIC_EXAMPLES)
    @given(data=st.data())
    def run(data):
        tool, arguments, fields = data.draw(st.sampled_from(SEMANTIC_CASES))
        args = data.draw(arguments)
        check_refused(client.call(tool, args), tool, args, fields, "semantic_calls")

    run()
    FIGURES["semantic_seconds"] = round(time.perf_counter() - started, 1)
    assert FIGURES["semantic_calls"] == SEMANTIC_EXAMPLES


@pytest.mark.slow
def test_a_real_stdio_process_survives_hostile_calls(hostile, hostile_home):
    """The same generators against ``nba-mcp serve`` over stdio: no crash, errors, still serving."""
    _, _, tools = hostile
    root, data, _ = hostile_home
    home = root / "stdio-home"
    isolated_settings(home, hostile_home[2])
    env = server_env(home, data_dirs=[data], NBA_MCP_MAX_GRID_SIZE="50", NBA_MCP_MAX_TRIALS="40",
                     NBA_MCP_MAX_CV_FOLDS="5", NBA_MCP_LOCAL_ROLE="admin")
    params = StdioServerParameters(command=sys.executable, args=["-m", "tools.cli", "serve"], env=env,
                                   cwd=str(PROJECT_ROOT))
    client = BlockingClient(params)
    semantic = st.sampled_from(SEMANTIC_CASES).flatmap(
        lambda case: case[1].map(lambda args: (case[0], args, case[2], True)))
    try:
        @settings(REPEATABLE, max_examples=STDIO_EXAMPLES)
        @given(call=schema_violation(tools, BASELINES).map(lambda c: (*c, False)) | semantic)
        def run(call):
            tool, args, fields, schema_valid_attack = call
            if not schema_valid_attack and not is_invalid(tools[tool], args):
                return
            check_refused(client.call(tool, args), tool, args, fields, "stdio_calls")

        run()
        health = client.call("server_health", {})
        jobs = payload(client.call("list_jobs", {}))
    finally:
        client.close()
    assert not health.is_error and payload(health)["status"] == "ok"
    assert jobs["jobs"] == []
    assert FIGURES["stdio_calls"] >= 100


@pytest.mark.slow
def test_raw_json_with_nan_infinity_and_garbage_over_stdio(hostile_home, tmp_path):
    """What an SDK client cannot send: NaN / Infinity tokens, broken JSON, a 4 MB argument."""
    from tests.support.stdio import RawStdioServer

    root, data, template = hostile_home
    home = tmp_path / "home"
    isolated_settings(home, template)
    server = RawStdioServer(server_env(home, data_dirs=[data]), tmp_path / "raw.log")
    calls = [
        ("tune_hyperparameters", {"request": {**TUNE, "max_trials": math.nan}}, "max_trials"),
        ("tune_hyperparameters", {"request": {**TUNE, "timeout_seconds": math.inf}}, "timeout_seconds"),
        ("tune_hyperparameters", {"request": {**TUNE, "space": {"max_depth": {
            "type": "float", "low": -math.inf, "high": math.nan}}}}, "low"),
        ("get_job", {"job_id": "abc", "wait_seconds": math.nan}, "wait_seconds"),
        ("predict", {"model_name": "m", "rows": [{"a": math.inf}]}, "rows"),
        ("start_experiment", {"request": {"name": "n", "params": {"p": math.nan}}}, "params"),
        ("describe_dataset", {"dataset": "x" * 4_000_000}, "dataset"),
    ]
    answers = []
    try:
        for number, (tool, args, field) in enumerate(calls, start=100):
            line = json.dumps({"jsonrpc": "2.0", "id": number, "method": "tools/call",
                               "params": {"name": tool, "arguments": args}})  # NaN / Infinity tokens
            answer = server.exchange(line.encode(), number)
            text = json.dumps(answer)
            refused = answer.get("result", {}).get("isError") or "error" in answer
            assert refused and field in text, text[:500]
            answers.append(answer)
        for garbage in (b"{not json", b"[]", b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call"}', b"\xff\xfe"):
            server.proc.stdin.write(garbage + b"\n")
            server.proc.stdin.flush()
        health = server.request("tools/call", {"name": "server_health", "arguments": {}})
        assert server.proc.poll() is None and payload(health)["status"] == "ok"
    finally:
        server.stop()
    FIGURES["raw_stdio_calls"] = len(calls) + 4
