"""Batched, optionally background, writes of params, metrics and tags.

Values logged one by one are buffered per run and written with ``log_batch`` (chunked to MLflow's
per-call limits) when a buffer is full, after ``flush_interval`` seconds, or on ``flush``. Whole
finished runs (one per tuning trial) are written in three store calls, optionally on a single
writer thread so the caller's loop never waits on the store.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..error_handling import InvalidRequestError
from ..logged_values import MAX_LOGGED_LENGTH, logged_text
from ._origin import origin_tags
from ._recovery import OWNER_TAG, owner
from ._types import RunStatus, now_ms

MAX_PARAM_LENGTH = MAX_LOGGED_LENGTH
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits


class _Buffer:
    def __init__(self) -> None:
        self.metrics: list = []
        self.params: list = []
        self.tags: list = []
        self.started = time.monotonic()


class BatchWriter:
    """Buffers per run and a background writer, on top of ``call(method, *args, **kwargs)``."""

    def __init__(self, call: Callable[..., Any], *, flush_interval: float = 1.0) -> None:
        self._call = call
        self.flush_interval = flush_interval
        self._buffers: dict[str, _Buffer] = {}
        self._lock = threading.RLock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future] = set()
        # First failed background write per parent run, raised by the next record under the same
        # parent: a search must stop when its store goes away, not run every remaining trial into
        # the void (keyed by parent so one search's failure never stops another's).
        self._background_errors: dict[str | None, BaseException] = {}

    # --- buffered values ------------------------------------------------------------------
    def add(self, run_id: str, *, params: Mapping[str, Any] = {}, metrics: Mapping[str, Any] = {},
            tags: Mapping[str, Any] = {}, step: int | None = None, model_id: str | None = None,
            dataset: tuple[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        ts = now_ms()
        with self._lock:
            buffer = self._buffers.setdefault(run_id, _Buffer())
            buffer.params += [Param(str(k), param_value(v)) for k, v in params.items()]
            # With model_id the metric is also the logged model's (its page and the Models tab show it).
            # ``dataset`` (name, digest): the run input the metric was measured on.
            name, digest = dataset or (None, None)
            buffer.metrics += [Metric(str(k), number(k, v), ts, step or 0, model_id=model_id, dataset_name=name,
                                      dataset_digest=digest) for k, v in metrics.items()]
            buffer.tags += [RunTag(str(k), tag_value(v)) for k, v in tags.items()]
            due = any(len(getattr(buffer, kind)) >= n for kind, n in BATCH_LIMITS.items())
            due = due or time.monotonic() - buffer.started >= self.flush_interval
        if due:
            self.flush_run(run_id)

    def flush_run(self, run_id: str) -> None:
        with self._lock:
            buffer = self._buffers.pop(run_id, None)
        if buffer:
            # A tag set twice before a flush is written once, with its last value (one batch may
            # not name a key twice).
            tags = list({tag.key: tag for tag in buffer.tags}.values())
            self.write_batch(run_id, buffer.metrics, buffer.params, tags)

    def write_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        while metrics or params or tags:
            self._call("log_batch", run_id, metrics=metrics[: BATCH_LIMITS["metrics"]],
                       params=params[: BATCH_LIMITS["params"]], tags=tags[: BATCH_LIMITS["tags"]])
            metrics = metrics[BATCH_LIMITS["metrics"]:]
            params = params[BATCH_LIMITS["params"]:]
            tags = tags[BATCH_LIMITS["tags"]:]

    def flush(self) -> None:
        """Write every buffer and wait for background writes; re-raise their first error."""
        with self._lock:
            run_ids = list(self._buffers)
            pending = list(self._pending)
        for run_id in run_ids:
            self.flush_run(run_id)
        for future in concurrent.futures.as_completed(pending):
            future.result()
        self._release_idle_thread()

    def _release_idle_thread(self) -> None:
        """End the writer thread once nothing is pending: one tracker per experiment name used to
        keep one idle thread each for the life of the server (30 experiments, 30 threads)."""
        with self._lock:
            if self._pending or self._executor is None:
                return
            executor, self._executor = self._executor, None
        executor.shutdown(wait=False)

    # --- whole runs -----------------------------------------------------------------------
    def record(self, experiment_id: str, *, background: bool, parent_run_id: str | None,
               **run: Any) -> str | concurrent.futures.Future:
        # Tags are settled in the caller's thread: who asked for the run lives in its context.
        run["tags"] = run_tags(run["tags"], parent_run_id)
        if not background:
            return self._record(experiment_id, parent_run_id, **run)
        with self._lock:
            failed = self._background_errors.pop(parent_run_id, None)
            if failed is not None:
                raise failed
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tracker-writer")
            future = self._executor.submit(self._record, experiment_id, parent_run_id, **run)
            self._pending.add(future)
        future.add_done_callback(lambda done: self._background_done(done, parent_run_id))
        return future

    def _background_done(self, future: concurrent.futures.Future, parent_run_id: str | None) -> None:
        with self._lock:
            self._pending.discard(future)
            exc = None if future.cancelled() else future.exception()
            if exc is not None:
                self._background_errors.setdefault(parent_run_id, exc)

    def _record(self, experiment_id: str, parent_run_id: str | None, *, run_name: str | None,
                params: Mapping[str, Any], metrics: Mapping[str, Any], tags: Mapping[str, Any],
                status: RunStatus, metric_history: Mapping[str, list[float]],
                start_time_ms: int | None, end_time_ms: int | None) -> str:
        from mlflow.entities import Metric, Param

        run = self._call("create_run", experiment_id, start_time=start_time_ms or now_ms(),
                         tags=dict(tags), run_name=run_name)
        run_id = run.info.run_id
        ts = end_time_ms or now_ms()
        entries = [Metric(k, number(k, v), ts, 0) for k, v in metrics.items()]
        for key, values in metric_history.items():
            entries += [Metric(key, number(key, v), ts, step) for step, v in enumerate(values)]
        self.write_batch(run_id, entries, [Param(k, param_value(v)) for k, v in params.items()], [])
        self._call("set_terminated", run_id, status=status.value, end_time=end_time_ms or now_ms())
        return run_id

    def close(self) -> None:
        self.flush()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def run_tags(tags: Mapping[str, Any] | None, parent_run_id: str | None) -> dict[str, str]:
    """The tags every run we open carries: its owner process, who asked for it and through what
    (``mlflow.user``, ``mlflow.source.name``) and, if any, its parent."""
    given = {str(k): tag_value(v) for k, v in (tags or {}).items()}
    all_tags = {OWNER_TAG: owner(), **given, **origin_tags(given)}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return all_tags


def param_value(value: Any) -> str:
    """A param as text: the one rendering of ``mcp_server.logged_values`` (tags use it too)."""
    return logged_text(value)


tag_value = param_value


def number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"metric {key!r} must be a number, got {value!r}") from None
