"""DatasetCatalog: find, load and cache data sets (see the package docstring for the rules)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from mcp_server.datasets._describe import DatasetDescription, bounded_list, describe_frame, load_xy
from mcp_server.datasets._packaged import NBA_PREFIX, PACKAGED_DATASETS, packaged_dataset, read_packaged
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
CACHE_SIZE = 8


class DatasetInfo(BaseModel):
    name: str
    source: Literal["file", "packaged", "sklearn"]
    path: str | None = Field(default=None, description="Relative to its data folder")
    size_bytes: int | None = None
    format: Literal["csv", "parquet", "sklearn"]
    description: str | None = None


class DatasetCatalog:
    """Finds, loads (with a small (path, mtime) cache) and describes data sets."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._data_dirs = [Path(d).resolve() for d in settings.data_dirs]
        self._cache: OrderedDict[tuple[str, int, int], pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

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
    def load(self, name: str) -> pd.DataFrame:
        """A fresh copy of the data set (callers may mutate it)."""
        if isinstance(name, str) and name.startswith(NBA_PREFIX):
            return self._load_packaged(name)
        builtin = self._builtin_name(name)
        if builtin is not None:
            return self._load_sklearn(name, builtin)
        return self._load_file(name, self.resolve_path(name))

    def _load_packaged(self, name: str) -> pd.DataFrame:
        dataset = packaged_dataset(name)
        if dataset is None:
            raise NotFoundError(
                f"dataset {name!r} not found; packaged datasets: {', '.join(d.full_name for d in PACKAGED_DATASETS.values())}"
            )
        key = (dataset.full_name, 0, 0)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key].copy()
        frame = read_packaged(dataset)
        self._remember(key, frame)
        return frame.copy()

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
                      drop: list[str] | None = None, *, keep: str | None = None) -> tuple[pd.DataFrame, pd.Series]:
        """(X, y) of a data set (blocking). ``keep``: a column X holds even if ``features``/``drop``
        leave it out (a split's group or time column: it decides folds, never a feature)."""
        frame = self.load(name)
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
        key = (f"{SKLEARN_PREFIX}{builtin}", 0, 0)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key].copy()
        import sklearn.datasets

        loader = getattr(sklearn.datasets, SKLEARN_DATASETS[builtin][0])
        frame = loader(as_frame=True).frame
        frame = frame.rename(columns={frame.columns[-1]: TARGET_COLUMN})
        self._check_rows(name, len(frame))
        self._remember(key, frame)
        return frame.copy()

    def _load_file(self, name: str, path: Path) -> pd.DataFrame:
        stat = path.stat()
        limit = self._settings.max_data_bytes
        if stat.st_size > limit:
            raise ResourceLimitError(
                f"dataset {name!r} is {stat.st_size} bytes, above max_data_bytes={limit}"
            )
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key].copy()
        frame = self._read(name, path)
        self._remember(key, frame)
        return frame.copy()

    def _read(self, name: str, path: Path) -> pd.DataFrame:
        import pandas as pd

        max_rows = self._settings.max_data_rows
        file_format = FILE_FORMATS[path.suffix.lower()]
        self._check_columns(name, path, file_format)
        try:
            if file_format == "csv":
                # Read one row past the limit: enough to know it is exceeded, no more.
                frame = pd.read_csv(path, nrows=max_rows + 1)
            else:
                import pyarrow.parquet as pq

                self._check_rows(name, pq.ParquetFile(path).metadata.num_rows)
                frame = pd.read_parquet(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"dataset {name!r} is not a readable CSV file: {exc}") from None
        except OSError as exc:
            raise ExecutionError(f"dataset {name!r} could not be read: {exc.strerror or exc}") from None
        except ResourceLimitError:
            raise
        except Exception as exc:  # pyarrow raises its own ArrowInvalid & co for broken files
            raise InvalidRequestError(
                f"dataset {name!r} is not a readable {file_format} file: {type(exc).__name__}: {exc}"
            ) from None
        self._check_rows(name, len(frame), read_was_capped=file_format == "csv")
        if frame.shape[1] == 0:
            raise InvalidRequestError(f"dataset {name!r} has no columns")
        return frame

    def _check_columns(self, name: str, path: Path, file_format: str) -> None:
        """Refuse a file wider than max_data_columns from its header, before parsing any row: a
        1,000,000-column CSV of 12 MB took 288 s and 2.1 GB to describe."""
        limit = self._settings.max_data_columns
        if file_format == "csv":
            n_columns = _csv_header_width(path, max_bytes=self._settings.max_data_bytes)
        else:
            import pyarrow.parquet as pq

            try:
                n_columns = pq.ParquetFile(path).metadata.num_columns
            except Exception:  # noqa: BLE001 - a broken file is reported by the read that follows
                return
        if n_columns > limit:
            raise ResourceLimitError(
                f"dataset {name!r} has {n_columns} columns, above max_data_columns={limit} (counted from its header)"
            )

    def _check_rows(self, name: str, n_rows: int, *, read_was_capped: bool = False) -> None:
        limit = self._settings.max_data_rows
        if n_rows > limit:
            # A capped CSV read stops one row past the limit, so the true count is unknown.
            shown = f"more than {limit}" if read_was_capped else str(n_rows)
            raise ResourceLimitError(f"dataset {name!r} has {shown} rows, above max_data_rows={limit}")

    def _remember(self, key: tuple[str, int, int], frame: pd.DataFrame) -> None:
        with self._lock:
            self._cache[key] = frame
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    # --- description ---------------------------------------------------------------------
    def describe(
        self, name_or_df: str | pd.DataFrame, target: str | None = None, *, name: str | None = None
    ) -> DatasetDescription:
        """A compact summary of columns, the target (if given) and duplicates."""
        import pandas as pd

        if isinstance(name_or_df, pd.DataFrame):
            frame, label = name_or_df, name or "<dataframe>"
        else:
            frame, label = self.load(name_or_df), name or name_or_df
            if target is None:
                target = self.builtin_target(name_or_df)
        description = describe_frame(frame, name=label, target=target)
        packaged = packaged_dataset(label)
        if packaged is not None:
            description.description, description.attribution = packaged.description, packaged.attribution
        return description




def _csv_header_width(path: Path, *, max_bytes: int, chunk: int = 1 << 20) -> int:
    """Fields in a CSV file's first line, read in chunks up to its end (never the rows after it)."""
    import csv

    head = bytearray()
    with open(path, "rb") as handle:
        while len(head) < max_bytes:
            block = handle.read(chunk)
            if not block:
                break
            end = block.find(b"\n")
            if end >= 0:
                head += block[:end]
                break
            head += block
    line = head.decode("utf-8", errors="replace").rstrip("\r")
    if not line:
        return 0
    return len(next(csv.reader([line]), []))
