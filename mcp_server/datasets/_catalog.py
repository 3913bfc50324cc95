"""DatasetCatalog: find, load and cache data sets (see the package docstring for the rules)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from mcp_server.datasets._csv import CsvLimits, check_cells, read_csv_bounded
from mcp_server.datasets._describe import DatasetDescription, bounded_list, describe_frame, load_xy
from mcp_server.datasets._packaged import NBA_PREFIX, PACKAGED_DATASETS, packaged_dataset
from mcp_server.error_handling import (
    ExecutionError,
    InvalidRequestError,
    NotFoundError,
    ResourceLimitError,
)
from mcp_server.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from mcp_server.mlflow_integration import DatasetSource

logger = logging.getLogger(__name__)

SKLEARN_PREFIX = "sklearn:"
# name -> (loader in sklearn.datasets, task)
SKLEARN_DATASETS: dict[str, tuple[str, str]] = {
    "iris": ("load_iris", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
FILE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
TARGET_COLUMN = "target"
MAX_LISTED_FILES = 1000


class DatasetInfo(BaseModel):
    name: str
    source: Literal["file", "packaged", "sklearn"]
    path: str | None = Field(default=None, description="Relative to its data folder")
    size_bytes: int | None = None
    format: Literal["csv", "parquet", "sklearn"]
    description: str | None = None


class DatasetCatalog:
    """Finds, loads (with a (path, mtime) cache bounded in bytes) and describes data sets.

    ``stop``: an event the caller sets when it gives up (a client that cancelled); a read in
    progress then ends within one 256 KiB block of the file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._data_dirs = [Path(d).resolve() for d in settings.data_dirs]
        # key -> (frame, its bytes); the total stays within settings.max_frame_cache_bytes
        self._cache: OrderedDict[tuple[str, int, int], tuple[pd.DataFrame, int]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        """Memory of the frames kept for reuse (bounded by settings.max_frame_cache_bytes)."""
        return self._cached_bytes

    def _csv_limits(self) -> CsvLimits:
        s = self._settings
        return CsvLimits(max_bytes=s.max_data_bytes, max_rows=s.max_data_rows, max_columns=s.max_data_columns,
                         max_cell_chars=s.max_data_cell_chars, max_seconds=s.max_data_parse_seconds)

    # --- discovery -----------------------------------------------------------------------
    def list(self) -> list[DatasetInfo]:
        """File data sets (by name relative to their folder, without suffix) then built-ins."""
        infos: list[DatasetInfo] = []
        seen: set[str] = set()
        for folder in self._data_dirs:
            for path in self._files_in(folder):
                relative = path.relative_to(folder)
                name = relative.with_suffix("").as_posix()
                if name in seen:  # a stem shared by two formats or folders: use the full name
                    name = relative.as_posix()
                if name in seen:
                    continue
                seen.add(name)
                infos.append(
                    DatasetInfo(
                        name=name,
                        source="file",
                        path=relative.as_posix(),
                        size_bytes=path.stat().st_size,
                        format=FILE_FORMATS[path.suffix.lower()],  # type: ignore[arg-type]
                    )
                )
        for packaged in PACKAGED_DATASETS.values():
            infos.append(DatasetInfo(name=packaged.full_name, source="packaged", format="csv",
                                     description=packaged.description))
        for name in SKLEARN_DATASETS:
            infos.append(DatasetInfo(name=f"{SKLEARN_PREFIX}{name}", source="sklearn", format="sklearn"))
        return infos

    def _files_in(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in FILE_FORMATS or not path.is_file():
                continue
            if not path.resolve().is_relative_to(folder):  # symlink pointing out: not ours
                continue
            found.append(path)
            if len(found) >= MAX_LISTED_FILES:
                logger.warning("listing of %s stopped at %d files", folder, MAX_LISTED_FILES)
                break
        return found

    def _available_names(self) -> list[str]:
        return [info.name for info in self.list()]

    # --- resolution ----------------------------------------------------------------------
    def resolve_path(self, name: str) -> Path:
        """The file behind ``name`` inside a data folder; refuses anything that leaves the folders."""
        path = self._find_file(name)
        if path is None:
            raise NotFoundError(
                f"dataset {name!r} not found; available datasets: {bounded_list(self._available_names())}"
            )
        return path

    def _find_file(self, name: str) -> Path | None:
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            raise InvalidRequestError(f"dataset name must be a non-empty string, got {name!r}")
        relative = Path(name)
        outside = InvalidRequestError(
            f"dataset name {name!r} is not allowed: use a name or a path relative to a data folder"
        )
        if relative.is_absolute() or ".." in relative.parts or name.startswith("~"):
            raise outside
        has_format_suffix = relative.suffix.lower() in FILE_FORMATS
        for folder in self._data_dirs:
            candidates = [folder / relative] if has_format_suffix else [
                folder / f"{name}{suffix}" for suffix in FILE_FORMATS
            ]
            for candidate in candidates:
                # Resolve first, check containment second, existence last: the answer for a
                # symlink pointing out is the same whether its target exists or not.
                resolved = candidate.resolve()
                if not resolved.is_relative_to(folder):
                    raise outside
                if resolved.is_file():
                    return resolved
        return None

    # --- loading -------------------------------------------------------------------------
    def load(self, name: str, *, stop: threading.Event | None = None) -> pd.DataFrame:
        """A fresh copy of the data set (callers may mutate it)."""
        if isinstance(name, str) and name.startswith(NBA_PREFIX):
            return self._load_packaged(name, stop)
        builtin = self._builtin_name(name)
        if builtin is not None:
            return self._load_sklearn(name, builtin)
        return self._load_file(name, self.resolve_path(name), stop)

    def _load_packaged(self, name: str, stop: threading.Event | None) -> pd.DataFrame:
        dataset = packaged_dataset(name)
        if dataset is None:
            raise NotFoundError(
                f"dataset {name!r} not found; packaged datasets: {', '.join(d.full_name for d in PACKAGED_DATASETS.values())}"
            )

        def read() -> pd.DataFrame:
            with dataset.resource.open("rb") as handle:  # the same reader and limits as any file
                return read_csv_bounded(handle, name=name, limits=self._csv_limits(), stop=stop)

        return self._cached((dataset.full_name, 0, 0), read)

    def _builtin_name(self, name: str) -> str | None:
        """The built-in data set ``name`` stands for, or None if it names a file (or nothing)."""
        if isinstance(name, str) and name.startswith(SKLEARN_PREFIX):
            return name.removeprefix(SKLEARN_PREFIX)
        if name in SKLEARN_DATASETS and self._find_file(name) is None:
            return name
        return None

    def source(self, name: str) -> DatasetSource:
        """Where ``name`` comes from, for the MLflow dataset input (a name in the data folders, never
        the server's absolute path)."""
        from mcp_server.mlflow_integration import DatasetSource

        packaged = packaged_dataset(name)
        if packaged is not None:
            return DatasetSource(kind="url", location=packaged.source_url, attribution=packaged.attribution)
        builtin = self._builtin_name(name)
        if builtin is not None and builtin in SKLEARN_DATASETS:
            return DatasetSource(kind="code", location=f"sklearn.datasets.{SKLEARN_DATASETS[builtin][0]}")
        return DatasetSource(kind="local", location=name)

    def builtin_target(self, name: str) -> str | None:
        """The target column of a built-in data set (``target``); None for a file data set."""
        return TARGET_COLUMN if self._builtin_name(name) is not None else None

    def target_for(self, name: str, target: str | None) -> str:
        """The target column: as given, or 'target' for a built-in data set."""
        target = target or self.builtin_target(name)
        if target is None:
            raise InvalidRequestError(f"target is required for the data set {name!r}; name the column to predict")
        return target

    def training_data(self, name: str, target: str | None, features: list[str] | None = None,
                      drop: list[str] | None = None, *, keep: str | None = None,
                      stop: threading.Event | None = None) -> tuple[pd.DataFrame, pd.Series]:
        """(X, y) of a data set (blocking). ``keep``: a column X holds even if ``features``/``drop``
        leave it out (a split's group or time column: it decides folds, never a feature)."""
        frame = self.load(name, stop=stop)
        X, y = load_xy(frame, self.target_for(name, target), features, drop)
        if keep is not None and keep not in X.columns and keep in frame.columns:
            X = X.assign(**{keep: frame.loc[X.index, keep]})
        return X, y

    def _load_sklearn(self, name: str, builtin: str) -> pd.DataFrame:
        if builtin not in SKLEARN_DATASETS:
            raise NotFoundError(
                f"dataset {name!r} not found; built-in datasets: "
                + ", ".join(f"{SKLEARN_PREFIX}{n}" for n in SKLEARN_DATASETS)
            )
        import sklearn.datasets

        def read() -> pd.DataFrame:
            loader = getattr(sklearn.datasets, SKLEARN_DATASETS[builtin][0])
            frame = loader(as_frame=True).frame
            frame = frame.rename(columns={frame.columns[-1]: TARGET_COLUMN})
            self._check_rows(name, len(frame))
            return frame

        return self._cached((f"{SKLEARN_PREFIX}{builtin}", 0, 0), read)

    def _load_file(self, name: str, path: Path, stop: threading.Event | None) -> pd.DataFrame:
        stat = path.stat()
        limit = self._settings.max_data_bytes
        if stat.st_size > limit:
            raise ResourceLimitError(
                f"dataset {name!r} is {stat.st_size} bytes, above max_data_bytes={limit}"
            )
        return self._cached((str(path), stat.st_mtime_ns, stat.st_size), lambda: self._read(name, path, stop))

    def _read(self, name: str, path: Path, stop: threading.Event | None) -> pd.DataFrame:
        file_format = FILE_FORMATS[path.suffix.lower()]
        try:
            if file_format == "csv":
                with open(path, "rb") as handle:
                    frame = read_csv_bounded(handle, name=name, limits=self._csv_limits(), stop=stop)
            else:
                frame = self._read_parquet(name, path)
        except OSError as exc:
            raise ExecutionError(f"dataset {name!r} could not be read: {exc.strerror or exc}") from None
        if frame.shape[1] == 0:
            raise InvalidRequestError(f"dataset {name!r} has no columns")
        return frame

    def _read_parquet(self, name: str, path: Path) -> pd.DataFrame:
        """Rows and columns from the file's metadata (what pyarrow reads by), before any row is read."""
        import pandas as pd
        import pyarrow.parquet as pq

        try:
            metadata = pq.ParquetFile(path).metadata
            if metadata.num_columns > self._settings.max_data_columns:
                raise ResourceLimitError(f"dataset {name!r} has {metadata.num_columns} columns, above "
                                         f"max_data_columns={self._settings.max_data_columns}")
            self._check_rows(name, metadata.num_rows)
            frame = pd.read_parquet(path)
        except (ResourceLimitError, OSError):
            raise
        except Exception as exc:  # pyarrow raises its own ArrowInvalid & co for broken files
            raise InvalidRequestError(
                f"dataset {name!r} is not a readable parquet file: {type(exc).__name__}: {exc}"
            ) from None
        check_cells(frame, name=name, max_chars=self._settings.max_data_cell_chars)
        return frame

    def _check_rows(self, name: str, n_rows: int) -> None:
        limit = self._settings.max_data_rows
        if n_rows > limit:
            raise ResourceLimitError(f"dataset {name!r} has {n_rows} rows, above max_data_rows={limit}")

    def _cached(self, key: tuple[str, int, int], read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """A copy of the cached frame under ``key``, else of ``read()``'s, remembered within the
        cache's byte bound (a frame larger than the bound is not kept)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][0].copy()
        frame = read()
        size = int(frame.memory_usage(index=True, deep=True).sum())
        limit = self._settings.max_frame_cache_bytes
        with self._lock:
            if size <= limit and key not in self._cache:
                self._cache[key] = (frame, size)
                self._cached_bytes += size
                while self._cached_bytes > limit:
                    _, (_, dropped) = self._cache.popitem(last=False)
                    self._cached_bytes -= dropped
        return frame.copy()

    # --- description ---------------------------------------------------------------------
    def describe(
        self, name_or_df: str | pd.DataFrame, target: str | None = None, *, name: str | None = None,
        stop: threading.Event | None = None,
    ) -> DatasetDescription:
        """A compact summary of columns, the target (if given) and duplicates."""
        import pandas as pd

        if isinstance(name_or_df, pd.DataFrame):
            frame, label = name_or_df, name or "<dataframe>"
        else:
            frame, label = self.load(name_or_df, stop=stop), name or name_or_df
            if target is None:
                target = self.builtin_target(name_or_df)
        description = describe_frame(frame, name=label, target=target)
        packaged = packaged_dataset(label)
        if packaged is not None:
            description.description, description.attribution = packaged.description, packaged.attribution
        return description
