"""Prepare the tracking store before serving: migrate a fresh sqlite store once, under a file lock.

Several server processes (one per MCP client) may start together on a fresh store, and MLflow's
migrations race (2 of 3 processes failed in a measurement). Checking whether the store is
already migrated costs a few milliseconds with the standard library's sqlite3, so the common case
(an existing store) does not pay for importing mlflow (~2 s) before the first ``tools/list``.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
from pathlib import Path

from mcp_server.settings import Settings

logger = logging.getLogger(__name__)


def sqlite_store_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def is_migrated(db_path: Path) -> bool:
    """True when the file holds an MLflow schema stamped by alembic."""
    if not db_path.exists() or db_path.stat().st_size == 0:
        return False
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=20) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            conn.execute("SELECT 1 FROM experiments LIMIT 1").fetchall()
    except sqlite3.Error:
        return False
    return row is not None


def prepare_tracking_store(settings: Settings) -> bool:
    """Migrate a fresh local sqlite store once; returns True if it had to migrate."""
    db_path = sqlite_store_path(str(settings.tracking_uri))
    if db_path is None:
        return False  # a remote server migrates itself
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # The same lock file the tracker uses, so a CLI and a running server never migrate together.
    with open(db_path.with_name(db_path.name + ".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if is_migrated(db_path):
                return False
            logger.info("migrating a fresh MLflow store at %s (first start only)", db_path)
            import mcp_server.mlflow_integration  # noqa: F401  (sets MLflow's quiet-mode environment)
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=str(settings.tracking_uri)).search_experiments(max_results=1)
            return True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
