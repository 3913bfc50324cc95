"""An auto search's ensemble through the tools: shown, logged on the parent run, trained by
run_pipeline(from_search=…) as one MLflow model, loaded back from the registry."""

from __future__ import annotations

import pytest
from mcp import Client

from mcp_server.mlflow_integration import MLflowExperimentTracker
from tests.support import data_folder, isolated_settings, payload, template_db  # noqa: F401
from tests.test_tuning_ensemble import _linear_plus_interaction

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def settings(tmp_path_factory, template_db):
    data = tmp_path_factory.mktemp("data")
    X, y = _linear_plus_interaction(400)
    X.assign(y=y).to_csv(data / "blend.csv", index=False)
    return isolated_settings(tmp_path_factory.mktemp("home"), template_db, data_dirs=[data, data_folder()])


@pytest.fixture(scope="module")
def server(settings):
    from tools.server import build_server

    server = build_server(settings)
    yield server
    server.state.close()


async def test_the_ensemble_is_shown_logged_trained_from_the_search_and_loaded_back(server, settings):
    search = {"dataset": "blend.csv", "target": "y", "max_trials": 6, "cv_folds": 3, "seed": 0,
              "split": {"test_size": 0.2, "seed": 1}, "experiment_name": "ensembles"}
    async with Client(server) as client:
        tuned = payload(await client.call_tool("tune_hyperparameters", {"request": search}))["result"]
        trained = payload(await client.call_tool("run_pipeline", {"request": {
            "from_search": tuned["parent_run_id"], "model_name": "blend", "experiment_name": "ensembles"}}))["result"]
        run = payload(await client.call_tool("get_run", {"run_id": trained["run_id"]}))
    ensemble = tuned["ensemble"]
    assert ensemble is not None, tuned["families"]
    assert sum(m["weight"] for m in ensemble["members"]) == pytest.approx(1.0)
    assert ensemble["cv_score"] > ensemble["best_member_cv_score"] >= tuned["best_score"] - 1e-9

    tracker = MLflowExperimentTracker("ensembles", settings.tracking_uri, settings=settings)
    try:
        parent = tracker.get_run(tuned["parent_run_id"])
        logged = tracker.load_dict(tuned["parent_run_id"], "ensemble.json")
        model = tracker.load_model(f"models:/blend/{trained['model_version']}")
    finally:
        tracker.close()
    # Logged as the error itself (cv_rmse, as pipelines log it); the tool answers the scorer's value.
    assert parent.metrics["ensemble_cv_rmse"] == pytest.approx(-ensemble["cv_score"])
    assert logged["members"] == ensemble["members"]

    # One model, the search's members with their weights, judged on the search's holdout.
    assert trained["status"] == "COMPLETED" and trained["metrics"]["test_rmse"] > 0
    assert trained["split"]["test_digest"] == tuned["split"]["test_digest"]
    assert run["params"]["estimator"] == "ensemble" and '"weight"' in run["params"]["ensemble"]
    assert type(model).__name__ == "VotingRegressor"
    assert model.weights == [m["weight"] for m in ensemble["members"]]
    assert [name.split("_", 1)[1] for name, _ in model.estimators] == [m["estimator"] for m in ensemble["members"]]
    X, _ = _linear_plus_interaction(10, seed=3)
    assert list(model.feature_names_in_) == list(X.columns) and model.predict(X).shape == (10,)
