"""Test helpers for servers built by ``build_server``: fast, isolated, real tracking stores.

A fresh sqlite MLflow store costs ~2 s of migrations; tests migrate one template per session and
copy the file (about 1 MB) into each test's own data home instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mcp_server.settings import Settings
from tools._store import prepare_tracking_store

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def migrated_template(directory: Path) -> Path:
    """Create and migrate ``directory/mlflow.db`` once; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    prepare_tracking_store(Settings(data_home=directory))
    return directory / "mlflow.db"


def isolated_settings(data_home: Path, template_db: Path | None = None, **overrides: Any) -> Settings:
    """Settings whose store, artifacts and audit log live under ``data_home``."""
    data_home.mkdir(parents=True, exist_ok=True)
    if template_db is not None and not (data_home / "mlflow.db").exists():
        shutil.copyfile(template_db, data_home / "mlflow.db")
    overrides.setdefault("data_dirs", [SHARED_DATA])
    return Settings(data_home=data_home, **overrides)
