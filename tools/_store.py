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
            from mcp_server.mlflow_integration import create_sqlite_store

            create_sqlite_store(str(settings.tracking_uri))
            return True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def count_running_runs(db_path: Path) -> int | None:
    """RUNNING runs in a sqlite store, read with the standard library (None: cannot tell)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=20) as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING' AND lifecycle_stage = 'active'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(count)


def reap_orphaned_runs(settings: Settings) -> list[str]:
    """End KILLED the RUNNING runs, in every experiment of the store, whose owning process died.

    A server killed mid-search (SIGKILL, OOM, power loss) leaves its runs RUNNING forever; every
    run records its owner (``host:pid``), so a starting server ends those of dead processes on
    this host and leaves the runs of live servers sharing the store alone. On a sqlite store
    with no RUNNING run (the usual start) this costs one query and never imports mlflow.
    """
    from mcp_server.mlflow_integration._recovery import remove_dead_leases

    db_path = sqlite_store_path(str(settings.tracking_uri))
    if db_path is not None and count_running_runs(db_path) == 0:
        remove_dead_leases(settings.data_home / "leases")
        return []
    from mcp_server.mlflow_integration import get_mlflow_tracker

    tracker = get_mlflow_tracker(settings.experiment_name, settings=settings)
    try:
        reaped = tracker.reap_orphaned_runs(experiment_ids=tracker.all_experiment_ids())
    finally:
        tracker.close()
    remove_dead_leases(settings.data_home / "leases")  # their runs are ended: the files may go
    if reaped:
        logger.warning("ended %d orphaned run(s) KILLED (their server process died): %s",
                       len(reaped), ", ".join(reaped))
    return reaped
