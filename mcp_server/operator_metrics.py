"""What an operator watches: jobs, trials, fits, tracking-store calls, leak-screen stops, promotions.

The one registry of these series (Prometheus names and conventions: base units, ``_seconds`` and
``_total`` suffixes). The domain records into it through the small functions below and never needs
an HTTP server; ``/metrics`` appends ``exposition()`` to the call metrics of ``mcp_server.monitoring``.

Label values come from small closed sets (job kinds, outcomes, estimator families, store operation
kinds): never run ids, job ids or principals, so the number of series stays bounded however long
the server runs. ``BoundedLabel`` is the backstop: past ``MAX_LABEL_VALUES`` distinct values of one
label, every new value is recorded as ``"other"``.

Series (docs/deployment.md, "Metrics", says what to alert on)::

    nba_mcp_jobs_queued{kind}                              gauge, read from the job managers at scrape time
    nba_mcp_jobs_running{kind}                             gauge, idem (a paused job still counts as running)
    nba_mcp_job_wait_seconds{kind,outcome}                 histogram: submitted -> started (or ended unstarted)
    nba_mcp_job_run_duration_seconds{kind,outcome}         histogram: started -> ended
    nba_mcp_trials_total{outcome}                          counter: complete / pruned / failed
    nba_mcp_fit_duration_seconds{family}                   histogram: a trial's CV fits, or a pipeline's fit
    nba_mcp_tracking_call_duration_seconds{operation}      histogram: one call to the MLflow store
    nba_mcp_tracking_call_failures_total{operation}        counter: calls the store did not answer
    nba_mcp_leak_screen_stops_total                        counter: jobs stopped by the leak screen
    nba_mcp_promotions_total{outcome}                      counter: champion decisions
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from mcp_server.error_handling import ConflictError, InvalidRequestError, NotFoundError

NAMESPACE = "nba_mcp"
OTHER = "other"
MAX_LABEL_VALUES = 50

JOB_OUTCOMES = ("completed", "failed", "cancelled", "timeout")
TRIAL_OUTCOMES = ("complete", "pruned", "failed")
# promoted: took the alias on merit; forced: by force=true; already_champion: it held the alias;
# kept: the holder stays (not better, or not beyond the noise); refused_flagged: flagged, never by
# itself; compared: promote=false, nothing moves.
PROMOTION_OUTCOMES = ("promoted", "forced", "already_champion", "kept", "refused_flagged", "compared")

# Seconds. A job waits from milliseconds (a free slot) to an hour (a full queue) and runs up to
# job_timeout_seconds (1 h by default); one fit of a trial takes ms (ridge) to minutes (big forests);
# one store call ~1 ms (sqlite read) to the tracking timeout (10 s by default).
JOB_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
JOB_RUN_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
FIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
STORE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Errors that are the store's answer (no such run, already exists, bad filter), not a failed call.
_ANSWERS = (NotFoundError, ConflictError, InvalidRequestError)


class BoundedLabel:
    """Label values from a known set, or the first ``limit`` distinct ones seen; the rest are "other"."""

    def __init__(self, known: tuple[str, ...] = (), *, closed: bool = False, limit: int = MAX_LABEL_VALUES) -> None:
        self.closed = closed  # closed: only ``known`` values pass
        self.limit = limit
        self._seen: set[str] = set(known)
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        text = str(value or OTHER)
        if text in self._seen:
            return text
        if self.closed:
            return OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(text)
        return text


class JobCounts(Protocol):
    def active_counts(self) -> Mapping[tuple[str, str], int]: ...  # (kind, "queued"|"running") -> n


class _JobGauges:
    """Queued and running jobs per kind, read from the live job managers when scraped (a gauge kept
    by increments could drift on a path that forgets one; the managers' own lists cannot)."""

    def __init__(self, kinds: BoundedLabel) -> None:
        self.managers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.kinds = kinds
        self._kinds_seen: set[str] = set()  # a kind once seen keeps reporting 0: its series never vanishes
        self._lock = threading.Lock()  # scrapes and ending jobs run in different threads

    def saw(self, kinds: Iterator[str] | list[str]) -> list[str]:
        with self._lock:
            self._kinds_seen.update(kinds)
            return sorted(self._kinds_seen)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals: dict[tuple[str, str], int] = {}
        for manager in list(self.managers):
            for (kind, state), n in manager.active_counts().items():
                key = (self.kinds(kind), state)
                totals[key] = totals.get(key, 0) + n
        kinds = self.saw([kind for kind, _ in totals])
        for state in ("queued", "running"):
            family = GaugeMetricFamily(f"{NAMESPACE}_jobs_{state}", f"Jobs {state} now, by kind", labels=["kind"])
            for kind in kinds:
                family.add_metric([kind], totals.get((kind, state), 0))
            yield family


REGISTRY = CollectorRegistry(auto_describe=True)
_job_kinds = BoundedLabel()
_job_gauges = _JobGauges(_job_kinds)
REGISTRY.register(_job_gauges)
_families = BoundedLabel()
_operations = BoundedLabel()

JOB_WAIT = Histogram("job_wait_seconds", "Seconds from a job's submission to its start (or to its end, "
                     "when it ended before starting), by kind and outcome", ["kind", "outcome"],
                     buckets=JOB_WAIT_BUCKETS, namespace=NAMESPACE, registry=REGISTRY)
JOB_RUN = Histogram("job_run_duration_seconds", "Seconds from a job's start to its end, by kind and outcome",
                    ["kind", "outcome"], buckets=JOB_RUN_BUCKETS, namespace=NAMESPACE, registry=REGISTRY)
TRIALS = Counter("trials", "Search trials recorded, by outcome (complete, pruned, failed)", ["outcome"],
                 namespace=NAMESPACE, registry=REGISTRY)
FIT_DURATION = Histogram("fit_duration_seconds", "Seconds of fitting and scoring: a trial's cross-validation "
                         "folds, or a pipeline's final fit, by estimator family", ["family"],
                         buckets=FIT_BUCKETS, namespace=NAMESPACE, registry=REGISTRY)
STORE_DURATION = Histogram("tracking_call_duration_seconds", "Seconds of one call to the MLflow tracking "
                           "store, by operation kind", ["operation"], buckets=STORE_BUCKETS,
                           namespace=NAMESPACE, registry=REGISTRY)
STORE_FAILURES = Counter("tracking_call_failures", "Calls to the MLflow tracking store that failed "
                         "(unreachable, timed out, unexpected error), by operation kind", ["operation"],
                         namespace=NAMESPACE, registry=REGISTRY)
LEAK_STOPS = Counter("leak_screen_stops", "Searches and pipelines stopped before training by the leak screen "
                     "(identifier, date or target-leak columns among the features)", namespace=NAMESPACE, registry=REGISTRY)
PROMOTIONS = Counter("promotions", "Champion decisions, by outcome", ["outcome"],
                     namespace=NAMESPACE, registry=REGISTRY)
for _outcome in TRIAL_OUTCOMES:  # every outcome is exported from the start: rate() and alerts see 0, not nothing
    TRIALS.labels(_outcome)
for _outcome in PROMOTION_OUTCOMES:
    PROMOTIONS.labels(_outcome)


# --- recording (called by the domain) ------------------------------------------------------------

def watch_jobs(manager: JobCounts) -> None:
    """Report ``manager``'s queued and running jobs in the gauges while it lives."""
    _job_gauges.managers.add(manager)


def job_ended(kind: str, outcome: str, *, created: float, started: float | None, finished: float) -> None:
    """One job ended (wall-clock times); ``outcome`` one of ``JOB_OUTCOMES``."""
    labels = (_job_kinds(kind), outcome if outcome in JOB_OUTCOMES else OTHER)
    _job_gauges.saw([labels[0]])
    JOB_WAIT.labels(*labels).observe(max(0.0, (started if started is not None else finished) - created))
    if started is not None:
        JOB_RUN.labels(*labels).observe(max(0.0, finished - started))


def trial_recorded(outcome: str, *, family: str, seconds: float) -> None:
    """One trial recorded by the search loop (in the server's process, wherever its folds ran)."""
    TRIALS.labels(outcome if outcome in TRIAL_OUTCOMES else OTHER).inc()
    FIT_DURATION.labels(_families(family)).observe(max(0.0, seconds))


def fit_observed(family: str, seconds: float) -> None:
    FIT_DURATION.labels(_families(family)).observe(max(0.0, seconds))


@contextmanager
def store_call(operation: str) -> Iterator[None]:
    """Time one tracking-store call; a call that raises anything but an answer counts as failed."""
    label = _operations(operation)
    STORE_FAILURES.labels(label)  # exported as 0 from the first call: an alert on its rate sees the series
    started = time.perf_counter()
    try:
        yield
    except _ANSWERS:
        raise
    except BaseException:
        STORE_FAILURES.labels(label).inc()
        raise
    finally:
        STORE_DURATION.labels(label).observe(time.perf_counter() - started)


def leak_screen_stopped() -> None:
    LEAK_STOPS.inc()


def promotion_decided(outcome: str) -> None:
    PROMOTIONS.labels(outcome if outcome in PROMOTION_OUTCOMES else OTHER).inc()


def exposition() -> bytes:
    """These series as Prometheus text."""
    return generate_latest(REGISTRY)
