"""Logs that cannot fill a disk: files rotated by size, and repeated events summarized with a count.

``RotatingAppender`` appends whole lines to a file and rotates it by size (``path`` -> ``path.1`` ->
… -> ``path.<backups>``, the oldest dropped). Several server processes may share one file (a team's
servers on one data folder): appends and rotation happen under an advisory ``flock`` on a sidecar
lock file, so a line is never split and a file never rotated twice.

``RepeatedEvents`` lets the first occurrence of an event per key (a principal, a client address)
through in each interval and counts the rest; when the interval ends, one summary per key with the
count is written. Measured before it existed: 213 denied calls a second from one connection wrote
~380 bytes each (~7 GB a day); now that principal costs two lines a minute.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

# Keys tracked at once; beyond it, new keys share one bucket (an attacker rotating client addresses
# must not grow this table without bound).
MAX_KEYS = 10_000
OVERFLOW_KEY = "(other)"


class RotatingAppender:
    """Appends whole lines to ``path``, rotating it once it would grow past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()

    def append(self, text: str) -> None:
        """Raises ``OSError`` (a full disk, a read-only folder): the caller decides what that means."""
        data = text.encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._rotate_if_full(len(data))
                    # One write in append mode: whole lines even with other processes.
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        os.write(fd, data)
                    finally:
                        os.close(fd)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _rotate_if_full(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    details: Counter[str] = field(default_factory=Counter)


Summary = Callable[[Hashable, int, dict[str, int], float], None]


class RepeatedEvents:
    """First occurrence per key and interval goes through (``admit`` -> True); the rest are counted
    and reported once per key when the interval ends: ``summarize(key, count, details, seconds)``.

    Summaries are written by a daemon thread (started on the first suppressed event), so a burst
    that stops is still reported; ``flush()`` writes what is pending at once (tests, shutdown).
    """

    def __init__(self, interval: float, summarize: Summary, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.summarize = summarize
        self.clock = clock
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def admit(self, key: Hashable, detail: str = "") -> bool:
        now = self.clock()
        due: list[tuple[Hashable, _Window]] = []
        with self._lock:
            if key not in self._windows and len(self._windows) >= MAX_KEYS:
                key = OVERFLOW_KEY
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.interval:
                if window.suppressed:
                    due.append((key, window))
                window = None
            if window is None:
                self._windows[key] = _Window(started=now)
                admitted = True
            else:
                window.suppressed += 1
                window.details[detail] += 1
                admitted = False
                self._start_flusher()
        self._report(due, now)
        return admitted

    def flush(self) -> None:
        """Report every pending count now and start fresh windows."""
        now = self.clock()
        with self._lock:
            due = [(k, w) for k, w in self._windows.items() if w.suppressed]
            self._windows.clear()
        self._report(due, now)

    def _expire(self) -> None:
        now = self.clock()
        with self._lock:
            expired = [k for k, w in self._windows.items() if now - w.started >= self.interval]
            due = [(k, self._windows.pop(k)) for k in expired]
        self._report([(k, w) for k, w in due if w.suppressed], now)

    def _report(self, due: list[tuple[Hashable, _Window]], now: float) -> None:
        for key, window in due:
            self.summarize(key, window.suppressed, dict(window.details), now - window.started)

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return

        def run() -> None:
            while True:
                time.sleep(min(self.interval, 5.0) / 2)
                self._expire()
                with self._lock:
                    if not self._windows:
                        self._flusher = None
                        return

        self._flusher = threading.Thread(target=run, name="repeated-events", daemon=True)
        self._flusher.start()
