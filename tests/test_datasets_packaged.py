"""The built-in NBA data set ships inside the package with its attribution, loads offline from
anywhere, validates against its schema, and is recorded as an MLflow dataset input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mcp_server.data_validation_pipeline import DataValidationPipeline
from mcp_server.datasets import PACKAGED_DATASETS, DatasetCatalog
from mcp_server.mlflow_integration import MLflowExperimentTracker
from mcp_server.settings import Settings
from mcp_server.training_pipeline import StandardPipelineRequest, run_standard_pipeline

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_SHA256 = "cb64bd15492b540e5a376fcebddc1ba77b94847ee33ab26811d4123ef5fd7160"  # fivethirtyeight/data @ f19a61d
BOX = ["season", "poss", "mp", "raptor_box_offense", "raptor_box_defense", "pace_impact"]


@pytest.fixture
def catalog(tmp_path):
    return DatasetCatalog(Settings(data_home=tmp_path, data_dirs=[]))


def test_raptor_ships_unchanged_with_its_notice():
    raptor = PACKAGED_DATASETS["raptor"]
    assert hashlib.sha256(raptor.resource.read_bytes()).hexdigest() == ORIGINAL_SHA256  # "changes: none"
    notice = (raptor.resource.parent / "NOTICE.md").read_text()
    for text in ("FiveThirtyEight", "CC BY 4.0", "Changes: none", ORIGINAL_SHA256):
        assert text in notice
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "FiveThirtyEight" in readme and "CC BY 4.0" in readme


def test_listed_loaded_and_described_with_attribution(catalog):
    listed = {info.name: info for info in catalog.list()}
    assert listed["nba:raptor"].source == "packaged" and "RAPTOR" in listed["nba:raptor"].description
    frame = catalog.load("nba:raptor")
    assert frame.shape == (4685, 21) and frame["player_id"].nunique() == 1314
    described = catalog.describe("nba:raptor", "predator_total")
    assert "CC BY 4.0" in described.attribution and "Changes: none" in described.attribution
    assert {f.column for f in described.findings if f.rule == "entity_column"} == {"player_id", "player_name"}


def test_schema_names_players_time_and_the_additive_leaks(catalog):
    result = DataValidationPipeline().validate(catalog.load("nba:raptor"), "nba:raptor", schema="nba_raptor",
                                               target="raptor_total")
    assert {i.column for i in result.find("entity_column")} == {"player_id", "player_name"}
    derived = " ".join(i.message for i in result.find("derived_column"))
    for relation in ("'raptor_total' = 'raptor_offense' + 'raptor_defense'",
                     "'war_total' = 'war_reg_season' + 'war_playoffs'",
                     "'raptor_box_total' = 'raptor_box_offense' + 'raptor_box_defense'"):
        assert relation in derived
    assert any(set(i.drop) == {"raptor_offense", "raptor_defense"} for i in result.find("pair_leak"))
    (split,) = result.find("suggested_split")
    assert "{'kind': 'group', 'column': 'player_id'}" in split.message and "'column': 'season'" in split.message
    assert result.find("expected_range", "mp")[0].count == 591  # the small-sample rows SOURCES.md names
    assert not result.find("unexpected_columns") and not result.find("dtype")


def test_raptor_blended_from_its_box_and_on_off_parts_is_a_linear_leak(catalog):
    # raptor_offense = 0.85 * raptor_box_offense + 0.21 * raptor_onoff_offense (residual sd 1% of its own):
    # no sum or difference, so no pair finding; the pair the screen finds (total - defense) is one way,
    # the blend is another, and dropping the pair alone would leave the blend in.
    result = DataValidationPipeline().validate(catalog.load("nba:raptor"), "nba:raptor", target="raptor_offense")
    assert [set(i.drop) for i in result.find("pair_leak")] == [{"raptor_total", "raptor_defense"}]
    (blend,) = result.find("linear_leak")
    assert set(blend.drop) == {"raptor_box_offense", "raptor_onoff_offense"} and blend.score >= 0.999
    # The box-score features the examples train on are honest for PREDATOR: nothing found among them.
    screened = DataValidationPipeline().validate(catalog.load("nba:raptor"), "nba:raptor", target="predator_total",
                                                 features=BOX)
    assert not [i for i in screened.issues if i.rule.endswith(("_leak", "_copy"))]


def test_a_pipeline_records_the_data_set_and_its_holdout_as_inputs(tmp_path):
    settings = Settings(data_home=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = MLflowExperimentTracker("packaged", settings=settings)
    try:
        result = run_standard_pipeline(
            StandardPipelineRequest(dataset="nba:raptor", target="predator_total", features=BOX, cv_folds=None,
                                    split={"kind": "group", "column": "player_id"}, params={"n_estimators": 30}),
            settings=settings, tracker=tracker)
        assert result.status.value == "COMPLETED" and result.warnings == [] and result.promotion.promoted
        from mlflow import MlflowClient

        run = MlflowClient(settings.tracking_uri).get_run(result.run_id)  # the raw MLflow run: what the UI shows
        inputs = {(i.dataset.name, next(t.value for t in i.tags if t.key == "mlflow.data.context")): i
                  for i in run.inputs.dataset_inputs}
        assert set(inputs) == {("nba:raptor", "training"), ("nba:raptor (holdout)", "evaluation")}
        training = inputs[("nba:raptor", "training")]
        assert training.dataset.source_type == "http" and "fivethirtyeight" in training.dataset.source
        assert "CC BY 4.0" in next(t.value for t in training.tags if t.key == "attribution")
        assert tracker.get_run(result.run_id).params["split.column"] == "player_id"
    finally:
        tracker.close()
