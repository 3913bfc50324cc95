"""Tabular data sets by name: files in the configured folders plus a few scikit-learn built-ins.

Packaged (shipped in the wheel, with their attribution): ``nba:raptor``, FiveThirtyEight's RAPTOR
player ratings 2014-2022 (CC BY 4.0; see ``packaged/NOTICE.md``).

Names: a file stem (``nba_logreg``), a file name (``nba_logreg.csv``) or a path relative to one of
``settings.data_dirs`` (``sub/file.parquet``); built-ins as ``sklearn:iris`` or plainly ``iris``
when no file has that name. The first folder in ``data_dirs`` that has the name wins.

Safety: a name that resolves outside every data folder (``..``, absolute paths, symlinks pointing
out) is refused with the same message whether or not the target exists. ``max_data_bytes`` is
checked on the file size before reading; columns, rows, cell size, bytes and parse time are
enforced by the parser that loads the frame (``_csv.read_csv_bounded``: one set of options, a
bounded stream, ragged rows refused naming the line). Loaded frames are cached within
``max_frame_cache_bytes``.

CSV parsing keeps pandas' defaults on purpose (but ``index_col=False``: a first data row wider
than the header is refused, never turned into an index). For the NBA files this means: in
``all_seasons.csv`` the draft columns stay strings because of ``"Undrafted"`` (so the
drafted/undrafted target can still be derived, and the model one-hot encodes them) and the
literal ``None`` in ``college`` becomes NaN (it means "no college"; pandas >= 2 does that by
default). The 5 whitespace-only ``college`` cells stay as they are; data validation reports them.
"""

from mcp_server.datasets._catalog import (
    FILE_FORMATS,
    SKLEARN_DATASETS,
    SKLEARN_PREFIX,
    TARGET_COLUMN,
    DatasetCatalog,
    DatasetInfo,
)
from mcp_server.datasets._packaged import NBA_PREFIX, PACKAGED_DATASETS, PackagedDataset, packaged_dataset
from mcp_server.datasets._describe import (
    ColumnSummary,
    DatasetDescription,
    TargetSummary,
    date_columns,
    describe_frame,
    job_features,
    load_xy,
)

__all__ = [
    "FILE_FORMATS",
    "SKLEARN_DATASETS",
    "SKLEARN_PREFIX",
    "NBA_PREFIX",
    "PACKAGED_DATASETS",
    "PackagedDataset",
    "packaged_dataset",
    "TARGET_COLUMN",
    "ColumnSummary",
    "DatasetCatalog",
    "DatasetDescription",
    "DatasetInfo",
    "TargetSummary",
    "date_columns",
    "describe_frame",
    "job_features",
    "load_xy",
]
