"""run_pipeline, register_model, promote_model and predict: train → register → promote → predict."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server import rbac
from tests._leaky_frames import game_log
from tests.support import payload, ANALYST, VIEWER, error_text, isolated_settings, template_db, tool_server  # noqa: F401

pytestmark = pytest.mark.anyio

# Box scores without the points: a real but imperfect signal (a near-perfect model would be flagged).
GAMES = game_log().drop(columns=["PTS", "OPP_PTS", "Date", "GAME_ID"])
PIPELINE = {"dataset": "games", "target": "WL", "estimator": "logistic_regression", "model_name": "bc-model",
            "experiment_name": "pipeline-tests"}


@pytest.fixture(scope="module")
def tool_settings(tmp_path_factory, template_db):
    data = tmp_path_factory.mktemp("data")
    GAMES.to_csv(data / "games.csv", index=False)
    return isolated_settings(tmp_path_factory.mktemp("home"), template_db, data_dirs=[data])


@pytest.fixture(scope="module")
def feature_rows():
    return GAMES.drop(columns="WL").head(3).to_dict(orient="records")


@pytest.fixture(scope="module")
async def trained(tool_server):
    """A champion (logistic regression) and a weaker challenger (a depth-1 tree)."""
    async with Client(tool_server) as client:
        champion = payload(await client.call_tool("run_pipeline", {"request": PIPELINE}))
        challenger = payload(await client.call_tool("run_pipeline", {"request": {
            **PIPELINE, "estimator": "decision_tree", "params": {"max_depth": 1}}}))
    return champion["result"], challenger["result"]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


async def test_pipeline_trains_registers_and_promotes_only_the_better_model(trained):
    champion, challenger = trained
    assert champion["status"] == "COMPLETED" and champion["model_version"] == 1
    assert [s["stage"] for s in champion["stages"]][0] == "data_validation"
    assert champion["promotion"]["promoted"] and champion["metrics"]["test_roc_auc"] > 0.7
    assert champion["warnings"] == [] and champion["flagged"] is False
    assert {"cv_roc_auc_mean", "cv_roc_auc_std"} <= set(champion["metrics"])
    assert challenger["model_version"] == 2 and not challenger["promotion"]["promoted"]
    assert "worse than champion v1" in challenger["promotion"]["reason"]


async def test_pipeline_reports_stage_progress(tool_server):
    progress = []

    async def on_progress(current, total, message):
        progress.append(message)

    async with Client(tool_server) as client:
        job = payload(await client.call_tool("run_pipeline", {"request": {
            **PIPELINE, "model_name": "knn-model", "estimator": "knn"}},
            progress_callback=on_progress))
    assert job["result"]["status"] == "COMPLETED"
    stages = [m for m in progress if m.startswith("stage ")]
    assert stages[0] == "stage 1/6 data_validation: running"
    assert stages[-1] == "stage 6/6 model_deployment: completed" and len(stages) == 12  # each stage starts and ends


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"params": {"no_such_param": 3}}, "no_such_param"),
        ({"target": "nope"}, "target names unknown columns: 'nope'"),
        ({"split": {"test_size": 0.9}}, "less than or equal to 0.5"),
        ({"split": {"kind": "group", "column": "Team"}}, "split.column 'Team' is not a column"),
        ({"split": {"kind": "time", "column": "TEAM"}}, "does not parse as time"),
        ({"primary_metric": "r2"}, "primary_metric for classification must be one of"),
        ({"model_name": "bad name!"}, "model_name must be"),
        ({"schema_name": "no_such_schema"}, "schema 'no_such_schema' not found"),
    ],
)
async def test_pipeline_rejects_bad_requests(tool_server, update, expected):
    async with Client(tool_server) as client:
        before = payload(await client.call_tool("list_jobs", {}))["jobs"]
        assert expected in error_text(await client.call_tool("run_pipeline", {"request": {**PIPELINE, **update}}))
        after = payload(await client.call_tool("list_jobs", {}))["jobs"]
    assert after == before  # refused at the call: no job was queued


async def test_register_promote_and_predict(tool_server, trained, feature_rows):
    champion, challenger = trained
    async with Client(tool_server) as client:
        registered = payload(await client.call_tool(
            "register_model", {"run_id": champion["run_id"], "model_name": "bc-copy"}))
        refused = payload(await client.call_tool("promote_model", {"request": {"model_name": "bc-model", "version": 2}}))
        forced = payload(await client.call_tool("promote_model", {"request": {
            "model_name": "bc-model", "version": 2, "force": True}}))
        by_alias = payload(await client.call_tool("predict", {
            "model_name": "bc-model", "rows": feature_rows, "probabilities": True}))
        by_version = payload(await client.call_tool("predict", {
            "model_name": "bc-model", "alias_or_version": "1", "rows": feature_rows}))
    assert registered["version"] == 1 and registered["primary_metric"] == "roc_auc"
    assert not refused["promoted"] and forced["promoted"] and forced["previous_version"] == 1
    assert len(by_alias["predictions"]) == 3 and set(by_alias["probabilities"][0]) == {"0", "1"}
    assert by_alias["model_ref"] == "champion" and set(by_version["predictions"]) <= {0, 1}
    assert by_alias["row_warnings"] == []


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("predict", {"model_name": "bc-model", "rows": [{"FGM": 1.0}]}, "missing required columns"),
        ("predict", {"model_name": "bc-model", "rows": []}, "at least 1 item"),
        ("predict", {"model_name": "no-such-model", "rows": [{"a": 1}]}, "no-such-model"),
        ("promote_model", {"request": {"model_name": "bc-model", "version": 99}}, "99"),
        ("promote_model", {"request": {"model_name": "bc-model", "version": 1, "alias": "latest"}}, "alias must"),
        ("register_model", {"run_id": "a" * 32, "model_name": "x"}, "not found"),
    ],
)
async def test_model_tools_explain_errors(tool_server, trained, tool, args, expected):
    async with Client(tool_server) as client:
        text = error_text(await client.call_tool(tool, args))
    assert expected in text and "internal error" not in text


async def test_list_models_shows_versions_aliases_metrics_and_warnings(tool_server, trained):
    champion, challenger = trained
    async with Client(tool_server) as client:
        listed = payload(await client.call_tool("list_models", {}))
    model = next(m for m in listed["models"] if m["name"] == "bc-model")
    versions = {v["version"]: v for v in model["versions"]}
    assert versions[1]["run_id"] == champion["run_id"] and versions[2]["run_id"] == challenger["run_id"]
    assert sum("champion" in v["aliases"] for v in versions.values()) == 1  # wherever promotion left it
    assert versions[1]["metrics"]["test_roc_auc"] == pytest.approx(champion["metrics"]["test_roc_auc"])
    assert versions[2]["warnings"] == [] and versions[1]["warnings"] == []
    assert not any(name.startswith("stage.") for v in versions.values() for name in v["metrics"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"model_name": "no-such-model"}, ["registered model 'no-such-model' not found", "bc-model"]),
        ({"model_name": "bc-model", "alias_or_version": "99"}, ["version or alias '99' not found", "versions: 1, 2",
                                                                 "aliases: champion"]),
        ({"model_name": "bc-model", "alias_or_version": "staging"}, ["'staging' not found", "aliases: champion"]),
    ],
)
async def test_missing_models_versions_and_aliases_list_what_exists(tool_server, trained, feature_rows, args, expected):
    async with Client(tool_server) as client:
        text = error_text(await client.call_tool("predict", {**args, "rows": feature_rows}))
    assert all(part in text for part in expected), text


async def test_a_missing_run_lists_the_latest_runs(tool_server, trained):
    champion, _ = trained
    async with Client(tool_server) as client:
        text = error_text(await client.call_tool("get_run", {"run_id": "f" * 32}))
    assert f"run '{'f' * 32}' not found" in text and champion["run_id"] in text


@pytest.mark.parametrize(
    ("principal", "tool", "args"),
    [
        (VIEWER, "run_pipeline", {"request": PIPELINE}),
        (VIEWER, "predict", {"model_name": "bc-model", "rows": [{"a": 1}]}),
        (ANALYST, "promote_model", {"request": {"model_name": "bc-model", "version": 1}}),
        (ANALYST, "register_model", {"run_id": "a" * 32, "model_name": "x"}),
    ],
)
async def test_roles_without_the_permission_are_denied(tool_server, principal, tool, args):
    with rbac.acting_as(principal):
        async with Client(tool_server) as client:
            assert error_text(await client.call_tool(tool, args)).endswith("permission denied")


async def test_runs_name_the_calling_principal_and_the_tool(tool_server):
    # The job runs in a worker thread: who called and through which tool still reach its run.
    with rbac.acting_as(ANALYST):
        async with Client(tool_server) as client:
            job = payload(await client.call_tool("run_pipeline", {"request": {
                **PIPELINE, "model_name": "ann-model", "estimator": "decision_tree", "params": {"max_depth": 2}}})
            )
    run = tool_server.state.tracker(PIPELINE["experiment_name"]).get_run(job["result"]["run_id"])
    assert run.tags["mlflow.user"] == ANALYST.id
    assert run.tags["mlflow.source.name"] == "nba-mcp run_pipeline"
    assert run.run_name == "trained decision_tree games WL"  # role first: hyperparameters were given
    assert run.tags["mlflow.note.content"].split(":")[0] in ("CHAMPION", "Not champion")
    assert "decision_tree classification of WL on games" in run.tags["mlflow.note.content"]
    assert run.params["max_depth"] == "2" and run.params["min_samples_leaf"] == "1"  # with its defaults
