"""An in-memory stand-in for the part of ``MlflowClient`` the tracker uses ("mock mode").

It stores real ``mlflow.entities`` objects and filters, sorts and pages them with MLflow's own
``SearchUtils`` (the same code MLflow's file store uses), so filter syntax, ordering and paging
behave exactly as against a real store. Models are kept as Python objects.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from mlflow.entities import (
    Experiment,
    FileInfo,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
    ViewType,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.utils.search_utils import SearchUtils

from ..error_handling import ConflictError, InvalidRequestError, NotFoundError
from ._tracker import MLflowExperimentTracker
from ._types import now_ms


class InMemoryClient:
    """Thread-safe, process-local tracking store with MlflowClient's method names."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._experiments: dict[str, Experiment] = {}
        self._ids = itertools.count(1)
        self._infos: dict[str, RunInfo] = {}
        self._params: dict[str, dict[str, str]] = defaultdict(dict)
        self._tags: dict[str, dict[str, str]] = defaultdict(dict)
        self._history: dict[str, dict[str, list[Metric]]] = defaultdict(lambda: defaultdict(list))
        self._inputs: dict[str, list[Any]] = defaultdict(list)
        self._artifact_dir = Path(tempfile.mkdtemp(prefix="nba-mcp-mock-"))
        self.tracking_uri = "memory://"

    # --- experiments ----------------------------------------------------------------------
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self._lock:
            return next((e for e in self._experiments.values() if e.name == name), None)

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self._lock:
            if experiment_id not in self._experiments:
                raise NotFoundError(f"experiment {experiment_id!r} not found")
            return self._experiments[experiment_id]

    def create_experiment(self, name: str, artifact_location: str | None = None, tags=None) -> str:
        with self._lock:
            if self.get_experiment_by_name(name):
                raise ConflictError(f"experiment {name!r} already exists")
            exp_id = str(next(self._ids))
            location = artifact_location or (self._artifact_dir / exp_id).as_uri()
            self._experiments[exp_id] = Experiment(
                exp_id, name, location, LifecycleStage.ACTIVE, creation_time=now_ms()
            )
            return exp_id

    def search_experiments(self, max_results: int = 1000, page_token: str | None = None, **_: Any) -> PagedList:
        with self._lock:
            experiments = list(self._experiments.values())
        start = int(page_token or 0)
        end = start + max_results
        return PagedList(experiments[start:end], str(end) if end < len(experiments) else None)

    # --- runs -----------------------------------------------------------------------------
    def create_run(self, experiment_id: str, start_time=None, tags=None, run_name=None) -> Run:
        with self._lock:
            self.get_experiment(experiment_id)
            run_id = uuid.uuid4().hex
            name = run_name or f"run-{run_id[:8]}"
            self._infos[run_id] = RunInfo(
                run_id=run_id,
                experiment_id=experiment_id,
                user_id="mock",
                status="RUNNING",
                start_time=start_time or now_ms(),
                end_time=None,
                lifecycle_stage=LifecycleStage.ACTIVE,
                artifact_uri=(self._artifact_dir / experiment_id / run_id / "artifacts").as_uri(),
                run_name=name,
            )
            self._tags[run_id].update({"mlflow.runName": name, **dict(tags or {})})
            return self.get_run(run_id)

    def _info(self, run_id: str) -> RunInfo:
        if run_id not in self._infos:
            raise NotFoundError(f"run {run_id!r} not found")
        return self._infos[run_id]

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        with self._lock:
            self._info(run_id)
            for p in params:
                old = self._params[run_id].get(p.key)
                if old is not None and old != str(p.value):
                    # MLflow refuses to change a logged param; behave the same.
                    raise InvalidRequestError(
                        f"param {p.key!r} was already logged as {old!r}; cannot change it to {p.value!r}"
                    )
                self._params[run_id][p.key] = str(p.value)
            for t in tags:
                self._tags[run_id][t.key] = str(t.value)
                if t.key == "mlflow.runName":  # renames the run, as MLflow's stores do
                    info = self._infos[run_id]
                    self._infos[run_id] = RunInfo(
                        run_id=info.run_id, experiment_id=info.experiment_id, user_id=info.user_id,
                        status=info.status, start_time=info.start_time, end_time=info.end_time,
                        lifecycle_stage=info.lifecycle_stage, artifact_uri=info.artifact_uri, run_name=str(t.value))
            for m in metrics:
                self._history[run_id][m.key].append(m)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        with self._lock:
            info = self._info(run_id)
            if status is not None:
                self._infos[run_id] = RunInfo(
                    run_id=info.run_id, experiment_id=info.experiment_id, user_id=info.user_id,
                    status=status, start_time=info.start_time,
                    end_time=None if status == "RUNNING" else info.end_time,
                    lifecycle_stage=info.lifecycle_stage, artifact_uri=info.artifact_uri,
                    run_name=name or info.run_name,
                )

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time=None) -> None:
        with self._lock:
            info = self._info(run_id)
            self._infos[run_id] = RunInfo(
                run_id=info.run_id,
                experiment_id=info.experiment_id,
                user_id=info.user_id,
                status=status,
                start_time=info.start_time,
                end_time=end_time or now_ms(),
                lifecycle_stage=info.lifecycle_stage,
                artifact_uri=info.artifact_uri,
                run_name=info.run_name,
            )

    def log_inputs(self, run_id: str, datasets=None, models=None) -> None:
        with self._lock:
            self._info(run_id)
            self._inputs[run_id].extend(datasets or [])

    def get_run(self, run_id: str) -> Run:
        with self._lock:
            info = self._info(run_id)
            latest = [_latest(points) for points in self._history[run_id].values()]
            data = RunData(
                metrics=latest,
                params=[Param(k, v) for k, v in self._params[run_id].items()],
                tags=[RunTag(k, v) for k, v in self._tags[run_id].items()],
            )
            return Run(info, data, RunInputs(dataset_inputs=list(self._inputs[run_id])))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self._lock:
            self._info(run_id)
            return list(self._history[run_id].get(key, []))

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        with self._lock:
            runs = [
                self.get_run(rid)
                for rid, info in self._infos.items()
                if info.experiment_id in set(experiment_ids)
            ]
        runs = SearchUtils.filter(runs, filter_string)
        runs = SearchUtils.sort(runs, order_by)
        page, token = SearchUtils.paginate(runs, page_token, max_results)
        return PagedList(page, token)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        with self._lock:
            info = self._info(run_id)
        source = Path(local_path)
        if not source.is_file():
            # Mock mode has no artifact store to protect; remember the name, as the seed example expects.
            self._tags[run_id][f"mock.artifact.{artifact_path or ''}{source.name}"] = str(source)
            return
        dest = Path(info.artifact_uri.removeprefix("file://")) / (artifact_path or "")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / source.name)

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        with self._lock:
            info = self._info(run_id)
        source = Path(info.artifact_uri.removeprefix("file://")) / path
        target = Path(dst_path) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return str(target)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """Every artifact of the run, flat (the tracker walks folders; here there are none)."""
        with self._lock:
            info = self._info(run_id)
            mocked = [k.removeprefix("mock.artifact.") for k in self._tags[run_id] if k.startswith("mock.artifact.")]
        root = Path(info.artifact_uri.removeprefix("file://"))
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.exists() else []
        return [FileInfo(name, False, None) for name in sorted(files + mocked)]


def _latest(points: list[Metric]) -> Metric:
    # MLflow's "latest" value is the one with the highest (step, timestamp).
    return max(points, key=lambda m: (m.step, m.timestamp))


class InMemoryModelStore:
    """The model registry of mock mode: models stay Python objects, versions and aliases in dicts."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, Any] = {}
        self._registry: dict[str, dict[int, dict[str, Any]]] = {}
        self._aliases: dict[str, dict[str, int]] = defaultdict(dict)
        self._descriptions: dict[str, str] = {}

    def log_model(self, model: Any, run_id: str, name: str, input_example: Any = None,
                  description: str | None = None) -> str:
        model_id = f"m-{uuid.uuid4().hex}"
        with self._lock:
            self._models[model_id] = model
        return f"models:/{model_id}"

    def register(self, name: str, model_uri: str, run_id: str | None, tags=None, *,
                 description: str | None = None, model_description: str | None = None) -> int:
        with self._lock:
            versions = self._registry.setdefault(name, {})
            if model_description and not self._descriptions.get(name):
                self._descriptions[name] = model_description
            version = len(versions) + 1
            versions[version] = {
                "name": name, "version": version, "source": model_uri, "run_id": run_id,
                "tags": dict(tags or {}), "creation_timestamp": now_ms(), "description": description or "",
            }
            return version

    def set_registered_model_alias(self, name: str, alias: str, version: int) -> None:
        with self._lock:
            self.version_info(name, version)
            self._aliases[name][alias] = int(version)

    def version_info(self, name: str, version: int | str) -> dict[str, Any]:
        with self._lock:
            if name not in self._registry:
                raise NotFoundError(f"registered model {name!r} not found")
            key = self._aliases[name].get(str(version)) if not str(version).isdigit() else int(version)
            if key is None or key not in self._registry[name]:
                raise NotFoundError(f"model {name!r} has no version or alias {version!r}")
            aliases = [a for a, v in self._aliases[name].items() if v == key]
            return {**self._registry[name][key], "aliases": aliases,
                    "model_description": self._descriptions.get(name, "")}

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self.version_info(name, v) for v in sorted(self._registry.get(name, {}))]

    def model_names(self, max_results: int = 1000) -> list[str]:
        with self._lock:
            return sorted(self._registry)[:max_results]

    def load(self, model_uri: str) -> Any:
        with self._lock:
            model = self._models.get(model_uri.removeprefix("models:/"))
        if model is not None:
            return model
        from ._models import parse_models_uri

        name, ref = parse_models_uri(model_uri)
        if name is None:
            raise NotFoundError(f"model {model_uri!r} not found")
        return self.load(self.version_info(name, ref)["source"])


class InMemoryTracker(MLflowExperimentTracker):
    """The tracker of mock mode: runs, metrics, artifacts, the model registry and crash recovery
    behave as on an MLflow store, but live in this process's memory (nothing is written)."""

    mock_mode = True

    def _open(self, uri: str) -> tuple[InMemoryClient, InMemoryModelStore]:
        client = InMemoryClient()
        self.tracking_uri = client.tracking_uri
        return client, InMemoryModelStore()

    def _store_lock(self, model_name: str, deadline: float, what: str):
        # The registry lives in this tracker: its threads, serialized by promotion_lock's
        # process-local lock, are all that can race.
        return contextlib.nullcontext()
