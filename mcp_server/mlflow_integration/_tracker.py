"""The experiment tracker: one facade over a real MLflow store or the in-memory one.

Design notes
- Every call names its run explicitly (``MlflowClient``); the "current run" of ``start_run`` is a
  per-thread / per-asyncio-task context variable, never MLflow's global fluent stack.
- Params, metrics and tags are buffered per run and written with ``log_batch`` (``_writer``);
  ``record_run`` writes a whole finished run in three store calls, optionally on a background
  writer thread, which keeps per-trial logging off the caller's critical path.
- Reads flush first, so a caller always reads what it wrote.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..error_handling import InvalidRequestError, NotFoundError
from ..settings import Settings
from ._compare import compare_runs, comparison_frame
from ._lock import MUTEX_SUFFIX, LocalLocks
from ._recovery import OWNER_TAG, TERMINATION_REASON_TAG, owned_by_dead_process, owner
from ._types import DatasetRef, DatasetSource, MetricPoint, RunMetadata, RunStatus
from ._writer import MAX_PARAM_LENGTH, BatchWriter, run_tags, tag_value


# MLflow's built-in experiment keeps its artifacts under the server's working directory (./mlruns).
RESERVED_EXPERIMENT_NAMES = {"default"}


def check_experiment_name(name: str) -> None:
    """Refuse names that would put artifacts outside the artifact root: ``Default`` (MLflow's own,
    artifacts in the working directory) and names made only of dots (``..`` is the data folder)."""
    stripped = str(name).strip()
    if not stripped or set(stripped) <= {"."}:
        raise InvalidRequestError(f"experiment name {name!r} is not allowed: it must contain a letter or digit")
    if stripped.lower() in RESERVED_EXPERIMENT_NAMES:
        raise InvalidRequestError(
            f"experiment name {name!r} is reserved (MLflow's default experiment keeps artifacts in the "
            "server's working directory); choose another name"
        )


def listed(items: list[Any], limit: int = 20) -> str:
    """At most ``limit`` items, comma-separated, saying how many more there are."""
    if not items:
        return "none"
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# What a person opening an experiment we created reads first; and it opens on runs and models, not
# on the GenAI trace views (MLflow 3 asks the kind of a new experiment).
EXPERIMENT_TAGS = {
    "mlflow.note.content": (
        "Model training through the nba-mcp server. Pipeline runs are named <role> <estimator> <data set> "
        "<target> (role: tuned, baseline, trained, forced, flagged, stopped) and their descriptions start with "
        "the outcome (CHAMPION, Not champion, FLAGGED, STOPPED); a tuning search is one parent run with a "
        "child run per trial (trial-NNN <family>) and its best-so-far curve as the stepped metric best_cv_<m>."),
    "mlflow.experimentKind": "custom_model_development",
}


class MLflowExperimentTracker:
    """Track experiments, runs, metrics and models in an MLflow store; implements ``Tracker``
    (``InMemoryTracker`` is the same in memory: ``get_mlflow_tracker(mock_mode=True)``)."""

    mock_mode = False

    def __init__(
        self,
        experiment_name: str | None = None,
        tracking_uri: str | None = None,
        *,
        settings: Settings | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.settings = settings or Settings()
        self.experiment_name = experiment_name or self.settings.experiment_name
        self._current: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
            f"tracker-{id(self)}-runs", default=()
        )
        self._ended: set[str] = set()  # runs ended inside their start_run block
        self._writer = BatchWriter(self._call, flush_interval=flush_interval)
        self.tracking_uri = tracking_uri or str(self.settings.tracking_uri)
        self._client, self._models = self._open(self.tracking_uri)
        check_experiment_name(self.experiment_name)  # refused at once, though created on first write
        self._experiment_id: str | None = None
        self._experiment_lock = threading.Lock()
        self._promotion_locks = LocalLocks()  # this tracker's threads queue here, then on the store's lock

    @property
    def experiment_id(self) -> str:
        """The experiment's id, created on first write: opening a tracker (or a server) creates nothing."""
        if self._experiment_id is None:
            with self._experiment_lock:
                if self._experiment_id is None:
                    self._experiment_id = self.get_or_create_experiment(self.experiment_name)
        return self._experiment_id

    def _readable_experiment_ids(self) -> list[str]:
        """This tracker's experiment for a read: [] while it does not exist (a read creates nothing)."""
        if self._experiment_id is None:
            experiment = self._call("get_experiment_by_name", self.experiment_name)
            return [experiment.experiment_id] if experiment is not None else []
        return [self._experiment_id]

    def _open(self, uri: str):
        from mlflow import MlflowClient

        from . import _store
        from ._models import MlflowModelStore

        timeout = self.settings.tracking_timeout_seconds
        if uri.startswith(("http://", "https://")):
            _store.configure_http_client(timeout)
            _store.probe_http(uri, timeout)
        _store.ensure_sqlite_migrated(uri)  # before the client opens the file (cwd-free Default experiment)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return client, MlflowModelStore(client, max_load_bytes=self.settings.max_data_bytes)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from ._store import guarded_call

        timeout = self.settings.tracking_timeout_seconds
        return guarded_call(self._client, self.tracking_uri, timeout, method, *args, **kwargs)

    # --- experiments --------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> str:
        check_experiment_name(name)
        experiment = self._call("get_experiment_by_name", name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self._call("create_experiment", name, artifact_location=self._artifact_location(name),
                              tags=EXPERIMENT_TAGS)
        except InvalidRequestError:  # created concurrently by another process
            return self._call("get_experiment_by_name", name).experiment_id

    def _artifact_location(self, name: str) -> str | None:
        if self.mock_mode or self.tracking_uri.startswith(("http://", "https://")):
            return None  # the server (or the mock) decides where artifacts live
        from ._store import sqlite_path

        # Artifacts live beside a sqlite store (the default store is <data_home>/mlflow.db).
        db = sqlite_path(self.tracking_uri)
        root = db.parent / "artifacts" if db else Path(str(self.settings.artifact_root))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"
        location = (root / safe).resolve()
        if not location.is_relative_to(root.resolve()):
            raise InvalidRequestError(f"experiment name {name!r} would place artifacts outside {root.name}/")
        return location.as_uri()

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
        run = self._call(
            "create_run", experiment_id or self.experiment_id, tags=run_tags(tags, parent_run_id),
            run_name=run_name,
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
        self._writer.flush_run(run_id)
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
        self._writer.add(self._target(run_id), params=params)

    def log_metric(self, key: str, value: float, step: int | None = None, run_id: str | None = None) -> None:
        self.log_metrics({key: value}, step=step, run_id=run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, run_id: str | None = None, *,
                    model_id: str | None = None, dataset: DatasetRef | None = None) -> None:
        """Buffered metrics of a run; with ``model_id`` (``m-…``) they are the logged model's too, and
        ``dataset`` (one of the run's inputs) names the data they were measured on."""
        self._writer.add(self._target(run_id), metrics=metrics, step=step, model_id=model_id,
                         dataset=(dataset.name, dataset.digest) if dataset is not None else None)

    def set_tag(self, key: str, value: Any, run_id: str | None = None) -> None:
        self.set_tags({key: value}, run_id=run_id)

    def set_tags(self, tags: Mapping[str, Any], run_id: str | None = None) -> None:
        self._writer.add(self._target(run_id), tags=tags)

    def flush(self) -> None:
        """Write every buffered value and wait for background writes; re-raise their first error."""
        self._writer.flush()

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
        """Create a complete, terminated run (create + log_batch + terminate).

        With ``background=True`` it is queued on the writer thread and a future is returned; if
        an earlier background write under the same parent failed, that error is raised here.
        """
        return self._writer.record(
            self.experiment_id, background=background, parent_run_id=parent_run_id,
            run_name=run_name, params=dict(params), metrics=dict(metrics), tags=dict(tags or {}),
            status=RunStatus.parse(status), metric_history=dict(metric_history or {}),
            start_time_ms=start_time_ms, end_time_ms=end_time_ms,
        )

    # --- artifacts ------------------------------------------------------------------------------
    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None, run_id: str | None = None) -> None:
        target = self._target(run_id)
        path = Path(local_path)
        if not self.mock_mode and not path.is_file():
            raise NotFoundError(f"artifact file {str(local_path)!r} does not exist")
        self._call("log_artifact", target, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str, run_id: str | None = None) -> None:
        self._log_bytes(json.dumps(data, indent=2, default=str).encode(), artifact_file, run_id)

    def log_dataset(
        self, frame: Any, *, name: str, source: DatasetSource, context: str, targets: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Record ``frame`` as an input of the run with MLflow's dataset API (name, digest, source,
        schema, profile, context ``training`` / ``evaluation``); the attribution rides as an input tag."""
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        # A URL or a name in the data folders resolves to MLflow's http / local source by itself.
        location = CodeDatasetSource({"loader": source.location}) if source.kind == "code" else source.location
        with warnings.catch_warnings():  # MLflow's hint about integer columns is for model signatures
            warnings.simplefilter("ignore", UserWarning)
            entity = mlflow.data.from_pandas(frame, source=location, name=name, targets=targets)._to_mlflow_entity()
        tags = [InputTag(key="mlflow.data.context", value=context)]
        if source.attribution:
            tags.append(InputTag(key="attribution", value=source.attribution))
        self._call("log_inputs", self._target(run_id), datasets=[DatasetInput(entity, tags=tags)])

    def log_figure(self, figure: Any, artifact_file: str, run_id: str | None = None) -> None:
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format=Path(artifact_file).suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
        self._log_bytes(buffer.getvalue(), artifact_file, run_id)

    def log_text(self, text: str, artifact_file: str, run_id: str | None = None) -> None:
        self._log_bytes(text.encode(), artifact_file, run_id)

    def _log_bytes(self, data: bytes, artifact_file: str, run_id: str | None) -> None:
        target = self._target(run_id)
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="nba-mcp-artifact-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            self._call("log_artifact", target, str(local), folder or None)

    def load_dict(self, run_id: str, artifact_file: str) -> Any:
        """A JSON artifact of the run (``log_dict``'s counterpart); ``NotFoundError`` when absent."""
        if artifact_file not in self.list_artifacts(run_id):
            raise NotFoundError(f"run {run_id} has no artifact {artifact_file!r}")
        with tempfile.TemporaryDirectory(prefix="nba-mcp-artifact-") as tmp:
            local = self._call("download_artifacts", run_id, artifact_file, tmp)
            return json.loads(Path(local).read_text())

    def list_artifacts(self, run_id: str) -> list[str]:
        paths: list[str] = []
        stack = [None]
        while stack:
            for item in self._call("list_artifacts", run_id, stack.pop()):
                (stack.append(item.path) if item.is_dir else paths.append(item.path))
        return sorted(paths)

    # --- models -----------------------------------------------------------------------------
    def log_model(self, model: Any, name: str = "model", *, input_example: Any = None, run_id: str | None = None,
                  description: str | None = None) -> str:
        """Log a scikit-learn model (with signature and input example) named ``name`` with
        ``description``; returns its model URI."""
        target = self._target(run_id)
        self._writer.flush_run(target)  # the logged model copies the run's params: write them first
        return self._models.log_model(model, target, name, input_example, description=description)

    def register_model(
        self, model_uri: str, name: str, *, run_id: str | None = None, tags: Mapping[str, Any] | None = None,
        description: str | None = None, model_description: str | None = None,
    ) -> int:
        """Register ``model_uri`` as a new version of ``name``; ``description`` is the version's,
        ``model_description`` the registered model's (set when it has none yet)."""
        return self._models.register(name, model_uri, run_id, {str(k): tag_value(v) for k, v in (tags or {}).items()},
                                     description=description, model_description=model_description)

    def set_model_alias(self, name: str, alias: str, version: int) -> None:
        self._models.set_registered_model_alias(name, alias, int(version))

    @contextlib.contextmanager
    def promotion_lock(self, model_name: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold while an alias of ``model_name`` is read, compared and moved: one holder at a time
        across every process sharing the store (``_lock`` says how, per store). Waits at most
        ``timeout`` seconds (default: a dozen tracking timeouts), then ``TrackingUnavailableError``."""
        from . import _lock

        wait = _lock.wait_seconds(self.settings.tracking_timeout_seconds) if timeout is None else timeout
        deadline = time.monotonic() + wait
        what = f"promoting a version of {model_name!r}"
        with self._promotion_locks.hold(model_name, deadline, what), self._store_lock(model_name, deadline, what):
            yield

    def _store_lock(self, model_name: str, deadline: float, what: str) -> contextlib.AbstractContextManager[None]:
        from . import _lock

        stale = _lock.stale_seconds(self.settings.tracking_timeout_seconds)
        return _lock.store_lock(self.tracking_uri, model_name, client=self._client, deadline=deadline,
                                stale=stale, what=what)

    def get_model_version(self, name: str, alias_or_version: int | str) -> dict[str, Any]:
        """One registered version by number or alias; not found: the error lists what exists."""
        try:
            return self._models.version_info(name, alias_or_version)
        except NotFoundError:
            names = self._models.model_names()
            if name not in names:
                raise NotFoundError(f"registered model {name!r} not found; registered models: {listed(names)}") from None
            versions = self._models.list_versions(name)
            aliases = sorted({a for v in versions for a in v["aliases"]})
            raise NotFoundError(
                f"model {name!r} version or alias {str(alias_or_version)!r} not found; versions: "
                f"{listed([v['version'] for v in versions])}; aliases: {listed(aliases)}"
            ) from None

    def list_models(self, max_results: int = 100) -> list[dict[str, Any]]:
        """Registered models, by name, each with its versions (newest last)."""
        return [{"name": n, "versions": self._models.list_versions(n)} for n in self._models.model_names(max_results)
                if MUTEX_SUFFIX not in n]  # a promotion in progress on a server store (``_lock``)

    def load_model(self, model_uri: str) -> Any:
        """Load ``models:/name@alias``, ``models:/name/<version>`` or ``runs:/<id>/<path>``."""
        return self._models.load(model_uri)

    # --- reading ------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunMetadata:
        """One run by id; not found: the error lists the latest runs of the store."""
        self._writer.flush_run(run_id)
        try:
            return RunMetadata.from_mlflow(self._call("get_run", run_id))
        except NotFoundError:
            recent = self.search_runs(max_results=5, order_by=["attributes.start_time DESC"],
                                      experiment_ids=self.all_experiment_ids())
            shown = [f"{r.run_id} ({r.run_name})" for r in recent]
            raise NotFoundError(f"run {run_id!r} not found; the latest runs: {listed(shown)}") from None

    def get_metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self._writer.flush_run(run_id)
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
        # An experiment not created yet is searched as none: MLflow still checks the query.
        experiment_ids = experiment_ids or self._readable_experiment_ids()
        page = self._call(
            "search_runs",
            experiment_ids,
            filter_string=filter_string or "",
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )
        return [RunMetadata.from_mlflow(r) for r in page], page.token

    def compare_runs(self, run_ids: list[str], *, include_bookkeeping: bool = False) -> dict[str, Any]:
        """Model metrics side by side with diffs from the first run and the best run; params that
        differ. ``include_bookkeeping``: stage timings, counts and durations too."""
        return compare_runs([self.get_run(r) for r in run_ids], include_bookkeeping=include_bookkeeping)

    def compare_runs_frame(self, run_ids: list[str]):
        return comparison_frame([self.get_run(r) for r in run_ids])

    # --- crash recovery -----------------------------------------------------------------------
    @property
    def lease_dir(self) -> Path:
        """Where serving processes hold their leases (``_recovery``): beside the data they share."""
        return Path(self.settings.data_home) / "leases"

    def _running_runs(self, experiment_ids: list[str] | None, extra_filter: str = ""):
        experiment_ids = experiment_ids or self._readable_experiment_ids()
        if not experiment_ids:  # the experiment was never created: nothing can be running in it
            return
        token: str | None = None
        query = "attributes.status = 'RUNNING'" + (f" and {extra_filter}" if extra_filter else "")
        while True:
            runs, token = self.search_runs_page(query, 1000, experiment_ids=experiment_ids, page_token=token)
            yield from runs
            if not token:
                return

    def kill_run(self, run_id: str, reason: str) -> None:
        """End a run KILLED, recording why (``nba_mcp.termination_reason``)."""
        self._writer.flush_run(run_id)
        self._call("set_tag", run_id, TERMINATION_REASON_TAG, reason[:MAX_PARAM_LENGTH])
        self._call("set_terminated", run_id, status=RunStatus.KILLED.value)

    def reap_orphaned_runs(self, experiment_ids: list[str] | None = None) -> list[str]:
        """End KILLED every RUNNING run whose owning process is gone.

        ``experiment_ids``: where to look (default: this tracker's experiment). Every page of
        RUNNING runs is read, so a store with many crashed searches is cleaned in one call. The
        owner is judged by its lease when it held one (any pid, PID 1 included), else by host + pid;
        runs of live processes, and of other hosts without a lease here, are left alone.
        """
        reaped = []
        for run in list(self._running_runs(experiment_ids)):
            dead = owned_by_dead_process(run.tags.get(OWNER_TAG, ""), self.lease_dir)
            if dead is None:
                continue
            self.kill_run(run.run_id, f"owner process {dead} died")
            reaped.append(run.run_id)
        return reaped

    def end_own_runs(self, experiment_ids: list[str] | None = None, *, reason: str) -> list[str]:
        """End KILLED the runs this process opened that are still RUNNING (the last step of a shutdown)."""
        ended = []
        mine = f"tags.`{OWNER_TAG}` = '{owner()}'"
        for run in list(self._running_runs(experiment_ids, mine)):
            self.kill_run(run.run_id, reason)
            ended.append(run.run_id)
        return ended

    def reopen_run(self, run_id: str) -> None:
        """Mark an ended run RUNNING again, owned by this process (a resumed search)."""
        self._writer.flush_run(run_id)
        self._call("set_tag", run_id, OWNER_TAG, owner())
        self._call("update_run", run_id, status=RunStatus.RUNNING.value)
        self._ended.discard(run_id)

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
        self._writer.close()
