"""A probe for tests/test_threads.py: a fit that records the native thread pools it runs with.

Module level and light to import (worker processes and Dask workers unpickle it by reference);
it reports through a journal file because the fit may run in another process.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime, so the probe sees it
from sklearn.base import BaseEstimator, ClassifierMixin
from threadpoolctl import threadpool_info

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def record(journal: str) -> dict:
    """Append what this thread of this process sees: threads per pool kind, and the variables."""
    pools: dict[str, set[int]] = {}
    for pool in threadpool_info():
        pools.setdefault(pool["user_api"], set()).add(pool["num_threads"])
    entry = {
        "pid": os.getpid(), "thread": threading.current_thread().name,
        "pools": {api: sorted(counts) for api, counts in pools.items()},
        "env": {name: os.environ.get(name) for name in ENV_VARS},
    }
    with open(journal, "a") as out:  # one short line per write: appends from processes do not mix
        out.write(json.dumps(entry) + "\n")
    return entry


def read(journal: str) -> list[dict]:
    with open(journal) as lines:
        return [json.loads(line) for line in lines]


def probe_fit(journal: str, X, y) -> dict:
    """What the pipeline ships to its isolated worker: a module-level fit function."""
    return record(journal)


class PoolProbe(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; ``fit`` records the pools. ``depth`` only gives a search a space."""

    def __init__(self, journal: str = "", depth: int = 1) -> None:
        self.journal = journal
        self.depth = depth

    def fit(self, X, y):
        record(self.journal)
        values, counts = np.unique(np.asarray(y), return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)
