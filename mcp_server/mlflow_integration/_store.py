"""Opening a tracking store safely: bounded timeouts, one-time sqlite migration, error mapping."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .. import operator_metrics
from ..error_handling import ConflictError, InvalidRequestError, NotFoundError, TrackingUnavailableError

_migrated: set[str] = set()
# Tracking server URI -> (monotonic time until which it is not asked again, why it failed), after
# it failed to answer: shared by every tracker of the process (one per experiment) on that server.
_unavailable_until: dict[str, tuple[float, str]] = {}
_migrate_lock = threading.Lock()


def configure_http_client(timeout_seconds: float) -> None:
    """Bound MLflow's HTTP calls: its defaults (7 retries with backoff) can hang for minutes."""
    # MLflow reads these from the environment at request time; this is the only way to set them.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout_seconds)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"


def probe_http(tracking_uri: str, timeout_seconds: float) -> None:
    """Fail fast, within the timeout, when a tracking server is down."""
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310 (configured URI)
            if response.status != 200:
                raise TrackingUnavailableError(
                    f"tracking server at {tracking_uri} answered /health with HTTP {response.status}"
                )
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise TrackingUnavailableError(
            f"tracking server at {tracking_uri} is unreachable within {timeout_seconds:g}s: {_reason(exc)}"
        ) from None


def guarded_call(client, tracking_uri: str, timeout_seconds: float, method: str, *args, **kwargs):
    """Call ``client.<method>``, mapping errors, and skip a tracking server that just failed.

    A search with 50 queued trial writes would otherwise wait one timeout per write after its
    server went away; instead the server is not asked again for one timeout.
    """
    until, reason = _unavailable_until.get(tracking_uri, (0.0, ""))
    if time.monotonic() < until:
        raise TrackingUnavailableError(
            f"tracking store unavailable: {tracking_uri} failed a moment ago ({reason}); "
            f"not asked again for {timeout_seconds:g}s"
        )
    try:
        with operator_metrics.store_call(operation_kind(method)), store_errors():
            return getattr(client, method)(*args, **kwargs)
    except TrackingUnavailableError as exc:
        if tracking_uri.startswith(("http://", "https://")):
            reason = str(exc).removeprefix("tracking store unavailable: ")[:200]
            _unavailable_until[tracking_uri] = (time.monotonic() + timeout_seconds, reason)
        raise


# MlflowClient methods -> the operation kind they are counted under (a bounded label: a method not
# listed is "other"). Run writes are batched (log_batch) off the search's critical path; reads serve
# tools; artifacts and registry calls are the slow ones over HTTP.
OPERATION_KINDS = {
    "log_batch": "log_batch", "set_tag": "log_batch", "log_inputs": "log_batch",
    "create_run": "run_lifecycle", "set_terminated": "run_lifecycle", "update_run": "run_lifecycle",
    "get_run": "read", "search_runs": "read", "get_metric_history": "read", "list_artifacts": "read",
    "get_experiment_by_name": "read", "search_experiments": "read",
    "create_experiment": "experiment",
    "log_artifact": "artifact", "download_artifacts": "artifact",
}


def operation_kind(method: str) -> str:
    return OPERATION_KINDS.get(method, "other")


def sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def default_experiment_artifact_root(db_path: Path) -> Path:
    """Where the Default experiment of a sqlite store keeps artifacts: beside the store file, as
    every experiment the tracker creates does (MLflow would use ``./mlruns`` of the current folder)."""
    return db_path.resolve().parent / "artifacts" / "Default"


def create_sqlite_store(tracking_uri: str) -> None:
    """Create and migrate a sqlite store whose Default experiment does not depend on the cwd.

    Call under the store's file lock. A store that already has its schema is left as it is.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = sqlite_path(tracking_uri)
    if path is None:
        raise InvalidRequestError(f"not a sqlite tracking URI: {tracking_uri!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_errors():
        store = SqlAlchemyStore(tracking_uri, default_experiment_artifact_root(path).as_uri())
        store.engine.dispose()


def is_migrated(db_path: Path) -> bool:
    """True when the file holds an MLflow schema stamped by alembic (read with the standard
    library: a few milliseconds, where importing mlflow to ask costs about 2 s)."""
    if not db_path.exists() or db_path.stat().st_size == 0:
        return False
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=20) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            conn.execute("SELECT 1 FROM experiments LIMIT 1").fetchall()
    except sqlite3.Error:
        return False
    return row is not None


def ensure_sqlite_migrated(tracking_uri: str) -> bool:
    """Create and migrate a sqlite store once, under a file lock, before a client opens it;
    returns True if it had to migrate (False: migrated already, or not a sqlite store).

    Several processes opening a fresh store at once race in MLflow's migrations (2 of 3 failed in
    a measurement); the lock makes the first one migrate while the others wait, then find the
    schema ready.
    """
    path = sqlite_path(tracking_uri)
    if path is None or tracking_uri in _migrated:
        return False
    with _migrate_lock:
        if tracking_uri in _migrated:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                migrate = not is_migrated(path)
                if migrate:
                    create_sqlite_store(tracking_uri)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        _migrated.add(tracking_uri)
    return migrate


def count_running_runs(tracking_uri: str) -> int | None:
    """RUNNING runs in a sqlite store, read with the standard library (None: cannot tell)."""
    path = sqlite_path(tracking_uri)
    if path is None:
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20) as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING' AND lifecycle_stage = 'active'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(count)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Translate MLflow and transport errors into the product's exception tree."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        message = exc.message if hasattr(exc, "message") else str(exc)
        # MLflow reports some missing things (e.g. an unknown alias) as invalid parameters.
        if code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message.lower():
            raise NotFoundError(_first_line(message)) from None
        if code == "RESOURCE_ALREADY_EXISTS":
            raise ConflictError(_first_line(message)) from None
        if code in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}:
            raise InvalidRequestError(_first_line(message)) from None
        if "API request to" in message or "Max retries exceeded" in message:
            raise TrackingUnavailableError(f"tracking store unavailable: {_first_line(message)}") from None
        raise
    except (ConnectionError, TimeoutError) as exc:
        raise TrackingUnavailableError(f"tracking store unavailable: {_reason(exc)}") from None
    except Exception as exc:  # requests / sqlalchemy transport errors, matched by name to stay lazy
        if type(exc).__name__ in {"ConnectionError", "ReadTimeout", "ConnectTimeout", "OperationalError"}:
            raise TrackingUnavailableError(f"tracking store unavailable: {_first_line(str(exc))}") from None
        raise


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else text


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", exc))[:200]
