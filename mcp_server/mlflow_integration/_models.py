"""Logging, registering and loading scikit-learn models through ``MlflowClient`` only.

The fluent ``mlflow.sklearn.log_model`` relies on process-global state (active run, tracking
URI), which is not safe when several trackers or threads work at once. We save the model to a
temporary folder, upload it as run artifacts and register that source with explicit ids.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from ..error_handling import InvalidRequestError, ResourceLimitError
from ._store import store_errors


def save_sklearn_model(model: Any, path: Path, input_example: Any = None) -> None:
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
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
        skops_trusted_types=trusted,
    )


class MlflowModelStore:
    """Registry operations on a real MLflow store (sqlite or server)."""

    def __init__(self, client, *, max_load_bytes: int | None = None) -> None:
        self._client = client
        # Loading downloads the artifact folder and unpickles it: bounded like data files are.
        self._max_load_bytes = max_load_bytes
        self._cache: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def log_model(self, model: Any, run_id: str, name: str, input_example: Any = None) -> str:
        with tempfile.TemporaryDirectory(prefix="nba-mcp-model-") as tmp:
            local = Path(tmp) / name
            save_sklearn_model(model, local, input_example)
            with store_errors():
                self._client.log_artifacts(run_id, str(local), artifact_path=name)
        return f"runs:/{run_id}/{name}"

    def register(self, name: str, model_uri: str, run_id: str | None, tags=None) -> int:
        from mlflow.exceptions import MlflowException

        run_id, artifact = _parse_runs_uri(model_uri) if model_uri.startswith("runs:/") else (run_id, None)
        with store_errors():
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = model_uri
            if artifact is not None:
                source = f"{self._client.get_run(run_id).info.artifact_uri}/{artifact}"
            version = self._client.create_model_version(name, source=source, run_id=run_id, tags=tags)
        return int(version.version)

    def set_registered_model_alias(self, name: str, alias: str, version: int) -> None:
        with store_errors():
            self._client.set_registered_model_alias(name, alias, str(version))

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
        }

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        with store_errors():
            versions = self._client.search_model_versions(f"name = '{_quote(name)}'")
        return sorted(
            (self.version_info(name, int(v.version)) for v in versions), key=lambda v: v["version"]
        )

    def load(self, model_uri: str) -> Any:
        name, ref = parse_models_uri(model_uri)
        if name is None:  # runs:/<id>/<path>
            run_id, artifact = _parse_runs_uri(model_uri)
            return self._download_and_load(run_id, artifact)
        info = self.version_info(name, ref)
        key = (name, info["version"])
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        artifact = info["source"].rstrip("/").rsplit("/", 1)[-1]
        model = self._download_and_load(info["run_id"], artifact)
        with self._lock:
            self._cache[key] = model
        return model

    def _download_and_load(self, run_id: str, artifact: str) -> Any:
        import mlflow.sklearn

        self._check_size(run_id, artifact)
        with tempfile.TemporaryDirectory(prefix="nba-mcp-load-") as tmp:
            with store_errors():
                local = self._client.download_artifacts(run_id, artifact, tmp)
            return mlflow.sklearn.load_model(local)


    def _check_size(self, run_id: str, artifact: str) -> None:
        """Refuse, before downloading, a model whose files add up to more than the limit."""
        if self._max_load_bytes is None:
            return
        total, folders = 0, [artifact]
        while folders:
            with store_errors():
                entries = self._client.list_artifacts(run_id, folders.pop())
            for entry in entries:
                if entry.is_dir:
                    folders.append(entry.path)
                else:
                    total += entry.file_size or 0
            if total > self._max_load_bytes:
                raise ResourceLimitError(
                    f"model artifact {artifact!r} of run {run_id} is more than {self._max_load_bytes} bytes "
                    f"(max_data_bytes); it is not loaded"
                )


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


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
