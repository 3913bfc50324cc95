"""Settings: packaged defaults < the user's config file < environment < arguments; nothing is
found relative to the source tree or the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_server.error_handling import ConfigurationError
from mcp_server.settings import Settings, default_user_config_file


def test_packaged_defaults_name_no_folder_outside_the_package(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dirs == [] and settings.roles_file is None
    assert settings.experiment_name == "nba_model_training" and settings.max_trials == 500


def test_user_file_overrides_defaults_and_anchors_relative_paths(monkeypatch, tmp_path):
    config = tmp_path / "conf" / "mine.toml"
    config.parent.mkdir()
    config.write_text('max_trials = 7\nexperiment_name = "from_file"\ndata_dirs = ["data"]\nroles_file = "roles.toml"\n')
    monkeypatch.setenv("NBA_MCP_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.max_trials == 7 and settings.experiment_name == "from_file"
    assert settings.data_dirs == [(config.parent / "data").resolve()]
    assert settings.roles_file == config.parent / "roles.toml"
    monkeypatch.setenv("NBA_MCP_MAX_TRIALS", "9")  # environment beats the file
    assert Settings().max_trials == 9
    assert Settings(max_trials=11).max_trials == 11  # arguments beat everything


def test_per_user_file_is_read_when_present(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_user_config_file() == tmp_path / "nba-mcp" / "config.toml"
    assert Settings().max_trials == 500
    default_user_config_file().parent.mkdir()
    default_user_config_file().write_text("max_trials = 3\n")
    assert Settings().max_trials == 3


@pytest.mark.parametrize("content", [None, "max_trials = [unclosed"])
def test_a_named_config_file_must_exist_and_parse(monkeypatch, tmp_path, content):
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("NBA_MCP_CONFIG", str(path))
    with pytest.raises(ConfigurationError, match="config.toml"):
        Settings()


def test_default_experiment_artifacts_do_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    from mcp_server.mlflow_integration import get_mlflow_tracker

    monkeypatch.chdir(tmp_path)
    settings = Settings(data_home=tmp_path / "home")
    tracker = get_mlflow_tracker("anywhere", settings=settings)
    try:
        locations = {e["name"]: e["artifact_location"] for e in tracker.list_experiments()}
    finally:
        tracker.close()
    assert locations["Default"] == (tmp_path / "home" / "artifacts" / "Default" / "0").as_uri()
    assert not (Path(tmp_path) / "mlruns").exists()
