"""CSV files read within limits that the parser itself enforces.

Round 2 counted columns from the first physical line; pandas parses otherwise (blank leading lines
are skipped, a quoted cell may hold a newline, ``\\r`` alone ends a line, a first data row wider
than the header becomes an index), so a 4 MB file of ``a,b`` and two rows of 1,000,000 fields took
372 s and 4.7 GB to describe. Here every limit is enforced by the same engine and options that
build the frame (``CSV_OPTIONS``):

* bytes, time and the caller's stop: the parser reads through ``_BoundedStream``, which refuses a
  byte past ``max_bytes``, a read past the deadline, and a read after ``stop`` is set (the client
  gave up): the tokenizer asks for 256 KiB at a time, so work stops within one block;
* columns: first a read of the first record (the header) with ``header=None``, whose ``usecols``
  callable refuses the column past ``max_columns`` before any column is converted; then a read of
  two records with the header's width as ``names``, where the tokenizer refuses a first data row
  wider than the header. So the real read (``header=0``, ``index_col=False``) never meets a first
  data row wider than the header (pandas' implicit index), and its tokenizer refuses every later
  row wider than the header, naming its line;
* rows: the real read stops one row past ``max_rows``;
* cells: no parsed cell or column name longer than ``max_cell_chars`` (a 10 MB cell would travel in
  every description and error that quotes values).

The parser's working memory is about 9 bytes per field of a record it holds (a file of 100 MB of
commas on one line: 0.86 GB before the row is refused), so ``max_bytes`` bounds it too.
"""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from mcp_server.error_handling import ExecutionError, InvalidRequestError, ResourceLimitError

if TYPE_CHECKING:
    import pandas as pd

# One set of options for every read (the column probe and the frame): the tokenizer treats blank
# lines, quotes, \r, \r\n and a UTF-8 byte-order mark the same way in both. index_col=False: a
# first data row wider than the header is never taken as an index.
CSV_OPTIONS = {"engine": "c", "index_col": False, "encoding": "utf-8", "skip_blank_lines": True,
               "on_bad_lines": "error"}
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass(frozen=True)
class CsvLimits:
    max_bytes: int
    max_rows: int
    max_columns: int
    max_cell_chars: int
    max_seconds: float


class ParseStopped(ExecutionError):
    """The caller gave up (its ``stop`` event was set): nobody is waiting for the frame."""


class _TooWide(Exception):
    pass


class _BoundedStream(io.RawIOBase):
    """What the parser reads: at most ``max_bytes``, before ``deadline``, until ``stop`` is set."""

    def __init__(self, raw: BinaryIO, *, name: str, limits: CsvLimits, stop: threading.Event | None) -> None:
        super().__init__()
        self._raw, self._name, self._limits, self._stop = raw, name, limits, stop
        self._deadline = time.monotonic() + limits.max_seconds
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def rewind(self) -> None:
        self._raw.seek(0)
        self.bytes_read = 0

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._stop is not None and self._stop.is_set():
            raise ParseStopped(f"reading dataset {self._name!r} stopped: the caller gave up")
        if time.monotonic() > self._deadline:
            raise ResourceLimitError(
                f"dataset {self._name!r} took longer than max_data_parse_seconds={self._limits.max_seconds:g} to parse")
        count = self._raw.readinto(buffer)
        self.bytes_read += count or 0
        if self.bytes_read > self._limits.max_bytes:
            raise ResourceLimitError(
                f"dataset {self._name!r} is more than max_data_bytes={self._limits.max_bytes} bytes")
        return count


class _ColumnBudget:
    """``usecols`` for the probe: pandas asks it about each column (by position, as the probe has
    no header; sometimes twice, sometimes with None) before converting that column, so the column
    past the limit is refused before any work on it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, set()

    def __call__(self, name: object) -> bool:
        if name is not None:
            self.seen.add(name)
            if len(self.seen) > self.limit:
                raise _TooWide
        return True


def read_csv_bounded(raw: BinaryIO, *, name: str, limits: CsvLimits,
                     stop: threading.Event | None = None) -> pd.DataFrame:
    """The frame of the CSV file ``raw`` (binary, seekable), or a refusal that names the limit."""
    import pandas as pd

    stream = _BoundedStream(raw, name=name, limits=limits, stop=stop)
    try:
        width = _header_width(stream, name=name, limits=limits)
        stream.rewind()
        frame = pd.read_csv(stream, **CSV_OPTIONS, nrows=limits.max_rows + 1)
    except pd.errors.EmptyDataError:
        raise InvalidRequestError(f"dataset {name!r} is not a readable CSV file: it is empty (no header line)") from None
    except pd.errors.ParserError as exc:
        raise _parser_refusal(name, exc) from None
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"dataset {name!r} is not a readable CSV file: not UTF-8 text ({exc})") from None
    if frame.shape[1] != width:  # the file changed between the two reads
        raise InvalidRequestError(f"dataset {name!r} changed while it was read; try again")
    if len(frame) > limits.max_rows:
        raise ResourceLimitError(f"dataset {name!r} has more than {limits.max_rows} rows, "
                                 f"above max_data_rows={limits.max_rows}")
    check_cells(frame, name=name, max_chars=limits.max_cell_chars)
    return frame


def _header_width(stream: _BoundedStream, *, name: str, limits: CsvLimits) -> int:
    """Columns of the header as the parser sees it, refused past ``max_columns`` before any is
    built; then the first data row, refused by the tokenizer if it is wider than the header."""
    import pandas as pd

    try:
        head = pd.read_csv(stream, **CSV_OPTIONS, header=None, nrows=1, usecols=_ColumnBudget(limits.max_columns),
                           dtype=object)
    except _TooWide:
        raise ResourceLimitError(
            f"dataset {name!r} has more than {limits.max_columns} columns in its header, "
            f"above max_data_columns={limits.max_columns} (counted by the parser)") from None
    width = head.shape[1]
    # usecols switches the tokenizer's field-count check off, names switch it on: this read fails
    # at the first data row if it is wider than the header (the real read would take it as an index).
    stream.rewind()
    pd.read_csv(stream, **CSV_OPTIONS, header=None, nrows=2, names=range(width), dtype=object)
    return width


def _parser_refusal(name: str, exc: Exception) -> InvalidRequestError:
    text = str(exc)
    ragged = _RAGGED.search(text)
    if ragged:
        expected, line, saw = ragged.groups()
        return InvalidRequestError(
            f"dataset {name!r} has a ragged row: line {line} has {saw} fields where the header has {expected}; "
            "every row must have at most as many fields as the header")
    return InvalidRequestError(f"dataset {name!r} is not a readable CSV file: {text.strip()}")


def check_cells(frame: pd.DataFrame, *, name: str, max_chars: int) -> None:
    """Refuse a column name or a text cell longer than ``max_chars``, naming the column."""
    import pandas as pd

    for column in frame.columns:
        if len(str(column)) > max_chars:
            raise ResourceLimitError(f"dataset {name!r} has a column name of {len(str(column))} characters, "
                                     f"above max_data_cell_chars={max_chars}")
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
            continue
        try:
            longest = series.str.len().max()
        except AttributeError:  # no text in the column (booleans, say): nothing long
            continue
        if pd.notna(longest) and longest > max_chars:
            raise ResourceLimitError(f"dataset {name!r} has a cell of {int(longest)} characters in column "
                                     f"{str(column)[:100]!r}, above max_data_cell_chars={max_chars}")
