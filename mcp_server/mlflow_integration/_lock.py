"""Locks that hold across every process sharing a tracking store, keyed by a name (a model's).

Promotion is read holder → compare → move alias; MLflow has no compare-and-set on aliases, so two
promotions at once (two servers on one store, or two threads) both read the old champion and the
last write wins. Holding one of these locks around the three steps makes them one step. Which lock
depends on where the registry lives (the tracker's registry URI is its tracking URI):

- sqlite file → ``flock`` on ``<db>.locks/<hash of the name>.lock`` beside the database. Every
  process using the file can reach the folder, and the kernel releases the lock when its holder
  dies, so a crash never leaves it held.
- PostgreSQL / MySQL → a session advisory lock of the database itself (``pg_try_advisory_lock`` /
  ``GET_LOCK`` on a hash of the name), through SQLAlchemy on a connection of its own. Not a lock
  file: servers of a team sharing one database need not share a disk; the database releases the
  lock when the holder's connection ends (its process died).
- anything else (an ``mlflow server`` over http/https, …) → a mutex made of the registry itself:
  creating the registered model ``<name>.promotion-lock`` is atomic and fails while it exists;
  deleting it releases (the simplest atomic test-and-set the MLflow API offers; alias writes are
  blind). Nothing ends it when its holder dies, so a waiter that has seen the same holder for
  ``stale_seconds`` (on its own clock: client and server clocks may disagree) deletes it. The break
  runs under a second mutex named after the stale holder's token and re-checks the token, so two
  waiters never both break one stale lock, the second deleting the lock the first just took. This
  is correct as long as a live holder keeps the lock less than ``stale_seconds``: it makes a few
  store calls, each bounded by the tracking timeout, and ``stale_seconds`` is nine timeouts.

Threads of one tracker first queue on a process-local lock, so at most one of them waits on the
store's lock at a time. Every wait is bounded: past the deadline ``TrackingUnavailableError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import operator_metrics
from ..error_handling import NotFoundError, TrackingUnavailableError
from ._store import sqlite_path, store_errors

MUTEX_SUFFIX = ".promotion-lock"  # registered models named so are locks, not models
TOKEN_TAG = "nba_mcp.lock_token"


def wait_seconds(tracking_timeout: float) -> float:
    """How long a promotion waits for another one of the same model: a dozen store calls' time."""
    return 12 * tracking_timeout


def stale_seconds(tracking_timeout: float) -> float:
    """When a registry mutex seen with the same holder all along is taken for a dead holder's."""
    return 9 * tracking_timeout


class LocalLocks:
    """Process-local locks by name, for the threads of one tracker."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str, deadline: float, what: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise _gave_up(what, "another call of this process")
        try:
            yield
        finally:
            lock.release()


def _gave_up(what: str, holder: str) -> TrackingUnavailableError:
    return TrackingUnavailableError(f"{what} gave up waiting for {holder} to finish with the same model; try again")


def store_lock(tracking_uri: str, name: str, *, client: Any, deadline: float, stale: float,
               what: str) -> contextlib.AbstractContextManager[None]:
    """The lock named ``name`` of the store at ``tracking_uri`` (see the module docstring)."""
    path = sqlite_path(tracking_uri)
    if path is not None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]  # any name, any file system
        return _file_lock(path.with_name(path.name + ".locks") / f"{digest}.lock", deadline, what)
    dialect = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
    if dialect in {"postgresql", "mysql"}:
        return _advisory_lock(tracking_uri, dialect, name, deadline, what)
    return _registry_mutex(client, name + MUTEX_SUFFIX, deadline, stale, what)


def _poll(try_once: Callable[[], bool], deadline: float, what: str, holder: str) -> None:
    """Call ``try_once`` until it succeeds, backing off from 5 ms to 0.25 s, or time out."""
    pause = 0.005
    while not try_once():
        left = deadline - time.monotonic()
        if left <= 0:
            raise _gave_up(what, holder)
        time.sleep(min(left, pause * random.uniform(0.5, 1.5)))  # jitter: waiters do not poll in step
        pause = min(0.25, pause * 1.5)


# --- sqlite: a file lock beside the database -------------------------------------------------------
@contextlib.contextmanager
def _file_lock(path: Path, deadline: float, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        _poll(try_once, deadline, what, "another process")
        yield
    finally:
        os.close(fd)  # releases the flock


# --- PostgreSQL / MySQL: an advisory lock of the database ------------------------------------------
_engines: dict[str, Any] = {}
_engines_guard = threading.Lock()


def _engine(uri: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    with _engines_guard:
        if uri not in _engines:
            # NullPool: the connection closes on release, so a lock never outlives its holder in a pool.
            _engines[uri] = sqlalchemy.create_engine(uri, poolclass=NullPool)
        return _engines[uri]


@contextlib.contextmanager
def _advisory_lock(uri: str, dialect: str, name: str, deadline: float, what: str) -> Iterator[None]:
    import sqlalchemy

    digest = hashlib.sha256(f"nba-mcp lock {name}".encode()).digest()
    if dialect == "postgresql":
        key = {"key": int.from_bytes(digest[:8], "big", signed=True)}  # the bigint form of the lock
        take, give = "SELECT pg_try_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    else:
        key = {"key": f"nba-mcp-{digest.hex()[:48]}"}  # MySQL lock names: at most 64 characters
        take, give = "SELECT GET_LOCK(:key, 0)", "SELECT RELEASE_LOCK(:key)"
    with store_errors():
        connection = _engine(uri).connect()
    try:
        with store_errors():
            _poll(lambda: bool(connection.execute(sqlalchemy.text(take), key).scalar()), deadline, what,
                  "another process")
        yield
    finally:
        with contextlib.suppress(Exception):  # closing the connection releases it anyway
            connection.execute(sqlalchemy.text(give), key)
        connection.close()


# --- any other store (an mlflow server): a registered model as a mutex ----------------------------
# Each mutex call is a registry call of the store, timed like the others on /metrics.
@operator_metrics.store_call("registry")
def _lock_token(client: Any, name: str) -> str | None:
    """The token of the mutex ``name`` (None: free)."""
    try:
        with store_errors():
            return client.get_registered_model(name).tags.get(TOKEN_TAG, "")
    except NotFoundError:
        return None


@operator_metrics.store_call("registry")
def _create(client: Any, name: str, token: str) -> bool:
    """Create the mutex ``name`` holding ``token``; False when it exists (someone holds it)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, tags={TOKEN_TAG: token},
            description="A lock of nba-mcp while it promotes a model version; deleted when done.",
        )
        return True
    except MlflowException as exc:
        # RESOURCE_DOES_NOT_EXIST: the server found the name taken, then looked the holder up to
        # word its error after the holder had released it; taken a moment ago, so: try again.
        if getattr(exc, "error_code", "") in {"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}:
            return False
        with store_errors():
            raise


@operator_metrics.store_call("registry")
def _delete(client: Any, name: str) -> None:
    with contextlib.suppress(NotFoundError), store_errors():  # gone already: fine
        client.delete_registered_model(name)


@contextlib.contextmanager
def _registry_mutex(client: Any, name: str, deadline: float, stale: float, what: str) -> Iterator[None]:
    import uuid

    token = uuid.uuid4().hex
    first_seen: dict[str, float] = {}  # what this waiter saw held -> when it first saw it

    def held_too_long(key: str) -> bool:
        return time.monotonic() - first_seen.setdefault(key, time.monotonic()) >= stale

    def try_once() -> bool:
        if _create(client, name, token):
            return True
        holder = _lock_token(client, name)
        if holder and held_too_long(holder):  # "": a model of that name that is not a lock: never broken
            # Break it under a mutex named after the stale holder, re-checking that it is still
            # that holder's: two waiters never both break it (the second would delete a fresh lock).
            breaker = f"{name}.break-{holder[:16]}"
            if _create(client, breaker, token):
                try:
                    if _lock_token(client, name) == holder:
                        _delete(client, name)
                finally:
                    _delete(client, breaker)
            elif held_too_long(breaker):  # a waiter died while breaking it
                _delete(client, breaker)
        return False

    _poll(try_once, deadline, what, f"the holder of {name!r}")
    try:
        yield
    finally:
        if _lock_token(client, name) == token:  # never delete a lock that was broken and retaken
            _delete(client, name)
