"""The experiment tracker: one facade over a real MLflow store or the in-memory one.

Design notes
- Every call names its run explicitly (``MlflowClient``); the "current run" of ``start_run`` is a
  per-thread / per-asyncio-task context variable, never MLflow's global fluent stack.
- Params, metrics and tags are buffered per run and written with ``log_batch``; a buffer is flushed
  when it is full, after ``flush_interval`` seconds, on ``end_run``, on ``flush()`` and before reads.
- ``record_run`` writes a whole finished run in three store calls and can do it on a background
  writer thread, which keeps per-trial logging off the caller's critical path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..error_handling import InvalidRequestError, NotFoundError
from ..settings import Settings
from ._compare import compare_runs, comparison_frame
from ._types import MetricPoint, RunMetadata, RunStatus, now_ms

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits
OWNER_TAG = "nba_mcp.owner"  # host:pid of the process that opened the run (crash recovery)
# Tracking server URI -> (monotonic time until which it is not asked again, why it failed), after
# it failed to answer: shared by every tracker of the process (one per experiment) on that server.
_unavailable_until: dict[str, tuple[float, str]] = {}


class _Buffer:
    def __init__(self) -> None:
        self.metrics: list = []
        self.params: list = []
        self.tags: list = []
        self.last_flush = time.monotonic()

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


class MLflowExperimentTracker:
    """Track experiments, runs, metrics and models in MLflow (or in memory with ``mock_mode``)."""

    def __init__(
        self,
        experiment_name: str | None = None,
        tracking_uri: str | None = None,
        *,
        mock_mode: bool = False,
        settings: Settings | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.settings = settings or Settings()
        self.experiment_name = experiment_name or self.settings.experiment_name
        self.mock_mode = mock_mode
        self.flush_interval = flush_interval
        self._current: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
            f"tracker-{id(self)}-runs", default=()
        )
        self._buffers: dict[str, _Buffer] = {}
        self._lock = threading.RLock()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future] = set()
        self._ended: set[str] = set()  # runs ended inside their start_run block
        # First failed background write per parent run, raised by the next record_run under the
        # same parent: a search must stop when its store goes away, not run every remaining trial
        # into the void (keyed by parent so one search's failure never stops another's).
        self._background_errors: dict[str | None, BaseException] = {}
        if mock_mode:
            from ._memory import InMemoryClient

            self._client = InMemoryClient()
            self._models = self._client
            self.tracking_uri = self._client.tracking_uri
        else:
            self.tracking_uri = tracking_uri or str(self.settings.tracking_uri)
            self._client, self._models = self._open(self.tracking_uri)
        self.experiment_id = self.get_or_create_experiment(self.experiment_name)

    def _open(self, uri: str):
        from mlflow import MlflowClient

        from . import _store
        from ._models import MlflowModelStore

        timeout = self.settings.tracking_timeout_seconds
        if uri.startswith(("http://", "https://")):
            _store.configure_http_client(timeout)
            _store.probe_http(uri, timeout)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        _store.ensure_sqlite_migrated(client, uri)
        return client, MlflowModelStore(client, max_load_bytes=self.settings.max_data_bytes)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from ..error_handling import TrackingUnavailableError
        from ._store import store_errors

        until, reason = _unavailable_until.get(self.tracking_uri, (0.0, ""))
        if time.monotonic() < until:
            # A tracking server that just failed to answer is not asked again for a while: a
            # search with 50 queued trial writes would otherwise wait one timeout per write.
            raise TrackingUnavailableError(
                f"tracking store unavailable: {self.tracking_uri} failed a moment ago ({reason}); "
                f"not asked again for {self.settings.tracking_timeout_seconds:g}s"
            )
        try:
            with store_errors():
                return getattr(self._client, method)(*args, **kwargs)
        except TrackingUnavailableError as exc:
            if self.tracking_uri.startswith(("http://", "https://")):
                reason = str(exc).removeprefix("tracking store unavailable: ")[:200]
                _unavailable_until[self.tracking_uri] = (
                    time.monotonic() + self.settings.tracking_timeout_seconds, reason)
            raise

    # --- experiments --------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> str:
        experiment = self._call("get_experiment_by_name", name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self._call("create_experiment", name, artifact_location=self._artifact_location(name))
        except InvalidRequestError:  # created concurrently by another process
            return self._call("get_experiment_by_name", name).experiment_id

    def _artifact_location(self, name: str) -> str | None:
        if self.mock_mode or self.tracking_uri.startswith(("http://", "https://")):
            return None  # the server (or the mock) decides where artifacts live
        from ._store import sqlite_path

        # Artifacts live beside a sqlite store (the default store is <data_home>/mlflow.db).
        db = sqlite_path(self.tracking_uri)
        root = db.parent / "artifacts" if db else Path(str(self.settings.artifact_root))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return (root / safe).resolve().as_uri()

    def list_experiments(self, max_results: int = 100) -> list[dict[str, Any]]:
        experiments = self._call("search_experiments", max_results=max_results)
        return [
            {"experiment_id": e.experiment_id, "name": e.name, "artifact_location": e.artifact_location,
             "lifecycle_stage": e.lifecycle_stage, "tags": dict(e.tags or {})}
            for e in experiments
        ]

    # --- runs -----------------------------------------------------------------------------
    @property
    def active_run_id(self) -> str | None:
        stack = self._current.get()
        return stack[-1] if stack else None

    def create_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        parent_run_id: str | None = None,
        experiment_id: str | None = None,
    ) -> str:
        """Open a run without making it the current one; end it with ``end_run(run_id=...)``."""
        all_tags = {OWNER_TAG: _owner(), **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self._call(
            "create_run", experiment_id or self.experiment_id, tags=all_tags, run_name=run_name
        )
        return run.info.run_id

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        nested: bool = False,
        *,
        parent_run_id: str | None = None,
    ) -> Iterator[str]:
        """Open a run, make it current in this thread/task, yield its id; an exception ends it FAILED."""
        current = self.active_run_id
        if current and not nested and parent_run_id is None:
            raise InvalidRequestError(
                f"run {current} is already active in this context; pass nested=True to open a child run"
            )
        parent = parent_run_id or (current if nested else None)
        run_id = self.create_run(run_name, tags, parent_run_id=parent)
        token = self._current.set(self._current.get() + (run_id,))
        try:
            yield run_id
        except BaseException as exc:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            with contextlib.suppress(Exception):
                self.set_tag("error", f"{type(exc).__name__}: {exc}"[:MAX_PARAM_LENGTH], run_id=run_id)
            self._end(run_id, status)
            raise
        else:
            if run_id not in self._ended:
                self._end(run_id, RunStatus.FINISHED)
        finally:
            self._current.reset(token)

    def end_run(self, status: RunStatus | str = RunStatus.FINISHED, run_id: str | None = None) -> None:
        target = run_id or self.active_run_id
        if target is None:
            raise InvalidRequestError("no active run to end; pass run_id")
        self._end(target, RunStatus.parse(status))

    def _end(self, run_id: str, status: RunStatus) -> None:
        self._flush_run(run_id)
        self._call("set_terminated", run_id, status=status.value)
        self._ended.add(run_id)

    def get_status(self, run_id: str) -> RunStatus:
        return RunStatus.parse(self._call("get_run", run_id).info.status)

    def _target(self, run_id: str | None) -> str:
        target = run_id or self.active_run_id
        if target is None:
            raise InvalidRequestError("no active run: use start_run() or pass run_id")
        return target

    # --- logging (buffered) -------------------------------------------------------------------
    def log_param(self, key: str, value: Any, run_id: str | None = None) -> None:
        self.log_params({key: value}, run_id=run_id)

    def log_params(self, params: Mapping[str, Any], run_id: str | None = None) -> None:
        from mlflow.entities import Param

        self._buffer(self._target(run_id), "params", [Param(str(k), _param_value(v)) for k, v in params.items()])

    def log_metric(self, key: str, value: float, step: int | None = None, run_id: str | None = None) -> None:
        self.log_metrics({key: value}, step=step, run_id=run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, run_id: str | None = None) -> None:
        from mlflow.entities import Metric

        ts = now_ms()
        entries = [Metric(str(k), _number(k, v), ts, step or 0) for k, v in metrics.items()]
        self._buffer(self._target(run_id), "metrics", entries)

    def set_tag(self, key: str, value: Any, run_id: str | None = None) -> None:
        self.set_tags({key: value}, run_id=run_id)

    def set_tags(self, tags: Mapping[str, Any], run_id: str | None = None) -> None:
        from mlflow.entities import RunTag

        self._buffer(self._target(run_id), "tags", [RunTag(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in tags.items()])

    def _buffer(self, run_id: str, kind: str, entries: list) -> None:
        with self._lock:
            buffer = self._buffers.setdefault(run_id, _Buffer())
            getattr(buffer, kind).extend(entries)
            due = any(len(getattr(buffer, k)) >= n for k, n in _BATCH_LIMITS.items())
            due = due or time.monotonic() - buffer.last_flush >= self.flush_interval
        if due:
            self._flush_run(run_id)

    def _flush_run(self, run_id: str) -> None:
        with self._lock:
            buffer = self._buffers.pop(run_id, None)
        if not buffer:
            return
        self._write_batch(run_id, buffer.metrics, buffer.params, buffer.tags)

    def _write_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        # Chunk to MLflow's per-call limits.
        while metrics or params or tags:
            self._call(
                "log_batch",
                run_id,
                metrics=metrics[: _BATCH_LIMITS["metrics"]],
                params=params[: _BATCH_LIMITS["params"]],
                tags=tags[: _BATCH_LIMITS["tags"]],
            )
            metrics = metrics[_BATCH_LIMITS["metrics"]:]
            params = params[_BATCH_LIMITS["params"]:]
            tags = tags[_BATCH_LIMITS["tags"]:]

    def flush(self) -> None:
        """Write every buffered value and wait for background writes; re-raise their first error."""
        with self._lock:
            run_ids = list(self._buffers)
            pending = list(self._pending)
        for run_id in run_ids:
            self._flush_run(run_id)
        for future in concurrent.futures.as_completed(pending):
            future.result()

    # --- whole runs in one go ---------------------------------------------------------------
    def record_run(
        self,
        *,
        run_name: str | None,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, Any] | None = None,
        status: RunStatus | str = RunStatus.FINISHED,
        parent_run_id: str | None = None,
        metric_history: Mapping[str, list[float]] | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        background: bool = False,
    ) -> str | concurrent.futures.Future:
        """Create a complete, terminated run (create + log_batch + terminate)."""
        status = RunStatus.parse(status)
        args = (run_name, dict(params), dict(metrics), dict(tags or {}), status, parent_run_id,
                dict(metric_history or {}), start_time_ms, end_time_ms)
        if not background:
            return self._record(*args)
        with self._lock:
            failed = self._background_errors.pop(parent_run_id, None)
        if failed is not None:
            raise failed
        with self._lock:
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tracker-writer")
            future = self._writer.submit(self._record, *args)
            self._pending.add(future)
        future.add_done_callback(lambda done: self._background_done(done, parent_run_id))
        return future

    def _background_done(self, future: concurrent.futures.Future, parent_run_id: str | None) -> None:
        self._pending.discard(future)
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            with self._lock:
                self._background_errors.setdefault(parent_run_id, exc)

    def _record(self, run_name, params, metrics, tags, status, parent_run_id, history, start_ms, end_ms) -> str:
        from mlflow.entities import Metric, Param, RunTag

        all_tags = {OWNER_TAG: _owner(), **{k: str(v) for k, v in tags.items()}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        start_ms = start_ms or now_ms()
        run = self._call("create_run", self.experiment_id, start_time=start_ms, tags=all_tags, run_name=run_name)
        run_id = run.info.run_id
        ts = end_ms or now_ms()
        entries = [Metric(k, _number(k, v), ts, 0) for k, v in metrics.items()]
        for key, values in history.items():
            entries += [Metric(key, _number(key, v), ts, step) for step, v in enumerate(values)]
        self._write_batch(run_id, entries, [Param(k, _param_value(v)) for k, v in params.items()], [])
        self._call("set_terminated", run_id, status=status.value, end_time=end_ms or now_ms())
        return run_id

    # --- artifacts ------------------------------------------------------------------------------
    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None, run_id: str | None = None) -> None:
        target = self._target(run_id)
        path = Path(local_path)
        if not self.mock_mode and not path.is_file():
            raise NotFoundError(f"artifact file {str(local_path)!r} does not exist")
        self._call("log_artifact", target, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str, run_id: str | None = None) -> None:
        self._log_bytes(json.dumps(data, indent=2, default=str).encode(), artifact_file, run_id)

    def log_figure(self, figure: Any, artifact_file: str, run_id: str | None = None) -> None:
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format=Path(artifact_file).suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
        self._log_bytes(buffer.getvalue(), artifact_file, run_id)

    def _log_bytes(self, data: bytes, artifact_file: str, run_id: str | None) -> None:
        target = self._target(run_id)
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="nba-mcp-artifact-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            self._call("log_artifact", target, str(local), folder or None)

    def list_artifacts(self, run_id: str) -> list[str]:
        if self.mock_mode:
            return self._client.list_artifacts(run_id)
        paths: list[str] = []
        stack = [None]
        while stack:
            for item in self._call("list_artifacts", run_id, stack.pop()):
                (stack.append(item.path) if item.is_dir else paths.append(item.path))
        return sorted(paths)

    # --- models -----------------------------------------------------------------------------
    def log_model(self, model: Any, name: str = "model", *, input_example: Any = None, run_id: str | None = None) -> str:
        """Log a scikit-learn model (with signature and input example); returns its model URI."""
        target = self._target(run_id)
        if self.mock_mode:
            return self._models.store_model(model)
        return self._models.log_model(model, target, name, input_example)

    def register_model(self, model_uri: str, name: str, *, run_id: str | None = None, tags: Mapping[str, Any] | None = None) -> int:
        if self.mock_mode:
            return self._models.register(name, model_uri, run_id, tags)
        return self._models.register(name, model_uri, run_id, {k: str(v) for k, v in (tags or {}).items()})

    def set_model_alias(self, name: str, alias: str, version: int) -> None:
        self._models.set_registered_model_alias(name, alias, int(version))

    def get_model_version(self, name: str, alias_or_version: int | str) -> dict[str, Any]:
        return self._models.version_info(name, alias_or_version)

    def list_model_versions(self, name: str) -> list[dict[str, Any]]:
        return self._models.list_versions(name)

    def load_model(self, model_uri: str) -> Any:
        """Load ``models:/name@alias``, ``models:/name/<version>`` or ``runs:/<id>/<path>``."""
        if self.mock_mode and model_uri.startswith("models:/") and ("@" in model_uri or model_uri.count("/") > 1):
            from ._models import _parse_models_uri

            name, ref = _parse_models_uri(model_uri)
            return self._models.load(self._models.version_info(name, ref)["source"])
        return self._models.load(model_uri)

    # --- reading ------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunMetadata:
        self._flush_run(run_id)
        return RunMetadata.from_mlflow(self._call("get_run", run_id))

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self._flush_run(run_id)
        points = self._call("get_metric_history", run_id, key)
        return sorted(
            (MetricPoint(step=m.step, value=m.value, timestamp=m.timestamp) for m in points),
            key=lambda p: (p.step, p.timestamp),
        )

    def search_runs(
        self,
        filter_string: str = "",
        max_results: int = 100,
        order_by: list[str] | None = None,
        *,
        experiment_ids: list[str] | None = None,
    ) -> list[RunMetadata]:
        return self.search_runs_page(filter_string, max_results, order_by, experiment_ids=experiment_ids)[0]

    def search_runs_page(
        self,
        filter_string: str = "",
        max_results: int = 100,
        order_by: list[str] | None = None,
        *,
        experiment_ids: list[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[RunMetadata], str | None]:
        """One page of runs honouring MLflow's filter syntax, plus the token of the next page."""
        self.flush()
        page = self._call(
            "search_runs",
            experiment_ids or [self.experiment_id],
            filter_string=filter_string or "",
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )
        return [RunMetadata.from_mlflow(r) for r in page], page.token

    def compare_runs(self, run_ids: list[str]) -> dict[str, Any]:
        """Metrics side by side with diffs from the first run and the best run; params that differ."""
        return compare_runs([self.get_run(r) for r in run_ids])

    def compare_runs_frame(self, run_ids: list[str]):
        return comparison_frame([self.get_run(r) for r in run_ids])

    # --- crash recovery -----------------------------------------------------------------------
    def reap_orphaned_runs(self, experiment_ids: list[str] | None = None) -> list[str]:
        """End KILLED every RUNNING run whose owning process on this host is gone.

        ``experiment_ids``: where to look (default: this tracker's experiment). Every page of
        RUNNING runs is read, so a store with many crashed searches is cleaned in one call.
        Runs of live processes, and of other hosts (whose processes we cannot see), are left alone.
        """
        reaped = []
        host = socket.gethostname()
        token: str | None = None
        while True:
            runs, token = self.search_runs_page(
                "attributes.status = 'RUNNING'", 1000, experiment_ids=experiment_ids, page_token=token
            )
            for run in runs:
                owner = run.tags.get(OWNER_TAG, "")
                owner_host, _, pid = owner.rpartition(":")
                if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                    continue
                self._call("set_tag", run.run_id, "nba_mcp.termination_reason", f"owner process {pid} died")
                self._call("set_terminated", run.run_id, status=RunStatus.KILLED.value)
                reaped.append(run.run_id)
            if not token:
                return reaped

    def all_experiment_ids(self) -> list[str]:
        """Ids of every active experiment in the store (paged: no cap)."""
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call("search_experiments", max_results=1000, page_token=token)
            ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                return ids

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None


def get_mlflow_tracker(
    experiment_name: str = "nba_model_training",
    tracking_uri: str | None = None,
    mock_mode: bool = False,
    *,
    settings: Settings | None = None,
) -> MLflowExperimentTracker:
    """Build a tracker (the seed's entry point)."""
    return MLflowExperimentTracker(experiment_name, tracking_uri, mock_mode=mock_mode, settings=settings)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    return text[:MAX_PARAM_LENGTH]


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"metric {key!r} must be a number, got {value!r}") from None
