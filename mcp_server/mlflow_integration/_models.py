"""Logging, registering and loading scikit-learn models through ``MlflowClient`` only.

Models are MLflow 3 *logged models* (``models:/m-<id>``): created with the run as their source and
linked to it as a run output, carrying the run's params, saved with the flavour's ``save_model``
(signature, input example, pinned requirements, skops with the model's own trusted types), uploaded
with ``log_model_artifacts`` and marked READY; registered versions point at them. This is what the
fluent ``mlflow.sklearn.log_model`` does, but with explicit ids: the fluent API's process-global
state (active run, tracking URI) is not safe when several trackers or threads work at once.
Versions registered from run artifacts by earlier releases (``file://…/artifacts/model``) still load.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import operator_metrics
from ..error_handling import InvalidRequestError, ResourceLimitError
from ._store import store_errors


def save_sklearn_model(model: Any, path: Path, input_example: Any = None, mlflow_model: Any = None) -> None:
    """Save with skops, trusting exactly the types of a model we built ourselves, and pinned requirements."""
    import mlflow.sklearn
    import skops
    import skops.io
    import sklearn
    from mlflow.models import infer_signature

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    signature = None
    if input_example is not None:
        signature = infer_signature(input_example, model.predict(input_example))
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=signature,
        input_example=input_example,
        # Explicit requirements: inference spawns a subprocess and costs ~9 s per model.
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}",
                          *_library_requirements(trusted)],
        skops_trusted_types=trusted,
        mlflow_model=mlflow_model,
    )


def _library_requirements(types: list[str]) -> list[str]:
    """Pins for the estimator libraries beyond scikit-learn that a model's types come from (LightGBM)."""
    from importlib.metadata import version

    libraries = sorted({t.split(".", 1)[0] for t in types} & {"lightgbm"})
    return [f"{library}=={version(library)}" for library in libraries]


class MlflowModelStore:
    """Registry operations on a real MLflow store (sqlite or server)."""

    def __init__(self, client, *, max_load_bytes: int | None = None) -> None:
        self._client = client
        # Loading downloads the artifact folder and unpickles it: bounded like data files are.
        self._max_load_bytes = max_load_bytes
        self._cache: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    @operator_metrics.store_call("log_model")
    def log_model(self, model: Any, run_id: str, name: str, input_example: Any = None,
                  description: str | None = None) -> str:
        """A logged model from ``run_id``, READY; returns ``models:/m-<id>``. ``description`` is the
        model's ``mlflow.note.content``, the text the UI shows as its description."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        with store_errors():
            run = self._client.get_run(run_id)
            logged = self._client.create_logged_model(
                run.info.experiment_id, name=name, source_run_id=run_id, params=dict(run.data.params),
                model_type=type(model).__name__, tags={"mlflow.note.content": description} if description else None,
            )
            self._client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        described = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                          model_id=logged.model_id)
        with tempfile.TemporaryDirectory(prefix="nba-mcp-model-") as tmp:
            local = Path(tmp) / name
            save_sklearn_model(model, local, input_example, mlflow_model=described)
            with store_errors():
                self._client.log_model_artifacts(logged.model_id, str(local))
                self._client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return f"models:/{logged.model_id}"

    @operator_metrics.store_call("registry")
    def register(self, name: str, model_uri: str, run_id: str | None, tags=None, *,
                 description: str | None = None, model_description: str | None = None) -> int:
        """A new version of ``name`` from a logged model; ``model_description`` is set on the
        registered model when it has none yet, ``description`` on the version."""
        from mlflow.exceptions import MlflowException

        model_id = _logged_model_id(model_uri)
        if model_id is None:
            raise InvalidRequestError(f"model uri must be a logged model models:/m-<id>, got {model_uri!r}")
        with store_errors():
            try:
                self._client.create_registered_model(name, description=model_description)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
                if model_description and not self._client.get_registered_model(name).description:
                    self._client.update_registered_model(name, description=model_description)
            with _registry_resolves_here(self._client.tracking_uri):
                version = self._client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                                            model_id=model_id, description=description)
            self._link_version(model_id, name, int(version.version))
        return int(version.version)

    def _link_version(self, model_id: str, name: str, version: int) -> None:
        """List the version on its logged model (``mlflow.modelVersions``), as ``mlflow.register_model``
        does: the UI's Models tab and logged-model page read the link from there. A tracking server
        links it itself; a database store does not."""
        import json

        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        linked = self._client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
        versions = json.loads(linked) if linked else []
        if any(v.get("name") == name and str(v.get("version")) == str(version) for v in versions):
            return
        versions.append({"name": name, "version": version})
        self._client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})

    @operator_metrics.store_call("registry")
    def set_registered_model_alias(self, name: str, alias: str, version: int) -> None:
        with store_errors():
            self._client.set_registered_model_alias(name, alias, str(version))

    @operator_metrics.store_call("registry")
    def version_info(self, name: str, version: int | str) -> dict[str, Any]:
        with store_errors():
            if str(version).isdigit():
                mv = self._client.get_model_version(name, str(version))
            else:
                mv = self._client.get_model_version_by_alias(name, str(version))
        return {
            "name": mv.name,
            "version": int(mv.version),
            "source": mv.source,
            "run_id": mv.run_id,
            "tags": dict(mv.tags or {}),
            "aliases": list(mv.aliases or []),
            "creation_timestamp": mv.creation_timestamp,
            "description": mv.description or "",
        }

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        with operator_metrics.store_call("registry"), store_errors():
            versions = self._client.search_model_versions(f"name = '{_quote(name)}'")
        return sorted(
            (self.version_info(name, int(v.version)) for v in versions), key=lambda v: v["version"]
        )

    @operator_metrics.store_call("registry")
    def model_names(self, max_results: int = 1000) -> list[str]:
        with store_errors():
            return sorted(m.name for m in self._client.search_registered_models(max_results=max_results))

    def load(self, model_uri: str) -> Any:
        model_id = _logged_model_id(model_uri)
        if model_id is not None:
            return self._cached(model_id, lambda: self._load_logged(model_id))
        name, ref = parse_models_uri(model_uri)
        if name is None:  # runs:/<id>/<path>
            run_id, artifact = _parse_runs_uri(model_uri)
            return self._load_run_artifact(run_id, artifact)
        source = self.version_info(name, ref)
        if _logged_model_id(source["source"]) is not None:
            return self.load(source["source"])
        artifact = source["source"].rstrip("/").rsplit("/", 1)[-1]  # a run-artifact version of old
        return self._cached((name, source["version"]), lambda: self._load_run_artifact(source["run_id"], artifact))

    def _cached(self, key: Any, load: Any) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        model = load()
        with self._lock:
            self._cache[key] = model
        return model

    def _load_logged(self, model_id: str) -> Any:
        import mlflow.sklearn
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with operator_metrics.store_call("read"), store_errors():
            location = self._client.get_logged_model(model_id).artifact_location
        self._check_size(lambda path: self._client.list_logged_model_artifacts(model_id, path), "", model_id)
        with tempfile.TemporaryDirectory(prefix="nba-mcp-load-") as tmp:
            with operator_metrics.store_call("artifact"), store_errors():
                repo = get_artifact_repository(location, tracking_uri=self._client.tracking_uri)
                local = repo.download_artifacts("", dst_path=tmp)
            return mlflow.sklearn.load_model(local)

    def _load_run_artifact(self, run_id: str, artifact: str) -> Any:
        import mlflow.sklearn

        self._check_size(lambda path: self._client.list_artifacts(run_id, path), artifact, f"run {run_id}")
        with tempfile.TemporaryDirectory(prefix="nba-mcp-load-") as tmp:
            with operator_metrics.store_call("artifact"), store_errors():
                local = self._client.download_artifacts(run_id, artifact, tmp)
            return mlflow.sklearn.load_model(local)


    def _check_size(self, list_folder: Any, artifact: str, owner: str) -> None:
        """Refuse, before downloading, a model whose files add up to more than the limit."""
        if self._max_load_bytes is None:
            return
        total, folders = 0, [artifact]
        while folders:
            with store_errors():
                entries = list_folder(folders.pop() or None)
            for entry in entries:
                if entry.is_dir:
                    folders.append(entry.path)
                else:
                    total += entry.file_size or 0
            if total > self._max_load_bytes:
                raise ResourceLimitError(
                    f"model {artifact or 'artifacts'!r} of {owner} is more than {self._max_load_bytes} bytes "
                    f"(max_data_bytes); it is not loaded"
                )


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


_DEFAULT_URI_LOCK = threading.Lock()


@contextlib.contextmanager
def _registry_resolves_here(tracking_uri: str):
    """MLflow's database registry resolves a ``models:/m-<id>`` source through the process-default
    tracking URI (an upstream TODO in ``SqlAlchemyStore.create_model_version``), not the client's:
    point that default at this store for the call, one call at a time. A tracking server resolves
    it on its own side."""
    if str(tracking_uri).startswith(("http://", "https://")):
        yield
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _DEFAULT_URI_LOCK, _use_tracking_uri(tracking_uri):
        yield


def _logged_model_id(uri: str) -> str | None:
    """'models:/m-<id>' -> 'm-<id>'; None for registered-model or run URIs."""
    body = uri.removeprefix("models:/") if isinstance(uri, str) and uri.startswith("models:/") else ""
    return body if body.startswith("m-") and "/" not in body and "@" not in body else None


def _parse_runs_uri(uri: str) -> tuple[str, str]:
    parts = uri.removeprefix("runs:/").strip("/").split("/", 1)
    if len(parts) != 2 or not all(parts):
        raise InvalidRequestError(f"model uri must look like runs:/<run_id>/<path>, got {uri!r}")
    return parts[0], parts[1]


def parse_models_uri(uri: str) -> tuple[str | None, str]:
    """'models:/name@alias' -> (name, alias); 'models:/name/3' -> (name, '3'); runs:/ -> (None, '')."""
    if uri.startswith("runs:/"):
        return None, ""
    if not uri.startswith("models:/"):
        raise InvalidRequestError(f"model uri must start with models:/ or runs:/, got {uri!r}")
    body = uri.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        if name and alias:
            return name, alias
    elif "/" in body:
        name, version = body.rsplit("/", 1)
        if name and version.isdigit():
            return name, version
    raise InvalidRequestError(f"model uri must be models:/<name>@<alias> or models:/<name>/<version>, got {uri!r}")
