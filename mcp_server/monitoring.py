"""Per-operation call counts, error counts and latency percentiles, as a dict and as Prometheus text.

``track_metric(name)`` works as a context manager (``with`` / ``async with``) and as a decorator on
sync and async functions (the wrapped signature and async-ness are kept)::

    with track_metric("model_training"):
        ...

    @track_metric("tune")
    async def tune(...): ...

Counts are exact under concurrency: every update happens under the registry's lock. Percentiles
come from a bounded reservoir of the most recent latencies per name (10 000 by default), so memory
stays flat however long the server runs; ``mean_ms`` and ``max_ms`` cover every call.
The Prometheus view is produced by prometheus-client from a ``CollectorRegistry`` owned by each
``MetricsRegistry`` (never the client's global default registry, so registries never collide). The
module-level ``prometheus_text()`` (what ``/metrics`` serves) adds the operator's series of
``mcp_server.operator_metrics``.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mcp_server.error_handling import InvalidRequestError

F = TypeVar("F", bound=Callable[..., Any])

# Seconds; spans a fast metadata call (ms) up to a long tuning job (30 min).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    math.inf,
)


class _Series:
    """What we keep per operation name."""

    __slots__ = ("calls", "errors", "latencies", "total_seconds", "max_seconds")

    def __init__(self, reservoir_size: int) -> None:
        self.calls = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=reservoir_size)
        self.total_seconds = 0.0
        self.max_seconds = 0.0


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile: always one of the observed values."""
    rank = max(math.ceil(percent / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class MetricsRegistry:
    """Thread-safe metrics for named operations, with its own Prometheus collector registry."""

    def __init__(
        self,
        *,
        reservoir_size: int = 10_000,
        namespace: str = "nba_mcp",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if reservoir_size < 1:
            raise InvalidRequestError(f"reservoir_size must be at least 1, got {reservoir_size}")
        self.reservoir_size = reservoir_size
        self.namespace = namespace
        self.clock = clock
        self._lock = threading.Lock()
        self._build()

    def _build(self) -> None:
        """Fresh state; prometheus-client counters cannot be reset, so the registry is rebuilt."""
        self._started = time.monotonic()
        self._series: dict[str, _Series] = {}
        self._prometheus = CollectorRegistry(auto_describe=True)
        labels = ["operation"]
        self._calls_counter = Counter(
            "calls", "Calls per operation", labels,
            namespace=self.namespace, registry=self._prometheus,
        )
        self._errors_counter = Counter(
            "errors", "Calls that raised, per operation", labels,
            namespace=self.namespace, registry=self._prometheus,
        )
        self._latency_histogram = Histogram(
            "latency_seconds", "Call latency per operation", labels, buckets=LATENCY_BUCKETS,
            namespace=self.namespace, registry=self._prometheus,
        )
        uptime = Gauge(
            "uptime_seconds", "Seconds since the metrics started (or were reset)",
            namespace=self.namespace, registry=self._prometheus,
        )
        uptime.set_function(self.uptime_seconds)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started

    def track(self, name: str) -> TrackedOperation:
        """A context manager / decorator that records calls, errors and latency under ``name``."""
        return TrackedOperation(self, name)

    def observe(self, name: str, seconds: float, *, error: bool = False) -> None:
        """Record one finished call (what ``track`` does on exit; public for adapters and tests)."""
        if not name:
            raise InvalidRequestError("metric name must be a non-empty string, got ''")
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series(self.reservoir_size)
                self._errors_counter.labels(name)  # export errors_total 0 before the first error
            series.calls += 1
            series.errors += int(error)
            series.latencies.append(seconds)
            series.total_seconds += seconds
            series.max_seconds = max(series.max_seconds, seconds)
            self._calls_counter.labels(name).inc()
            if error:
                self._errors_counter.labels(name).inc()
            self._latency_histogram.labels(name).observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """``{"uptime_seconds": float, "metrics": {name: {calls, errors, p50_ms, p95_ms, p99_ms,
        mean_ms, max_ms}}}``; percentiles over the reservoir, mean and max over every call."""
        with self._lock:
            copied = {
                name: (s.calls, s.errors, sorted(s.latencies), s.total_seconds, s.max_seconds)
                for name, s in self._series.items()
            }
        per_name = {}
        for name, (calls, errors, latencies, total, maximum) in sorted(copied.items()):
            per_name[name] = {
                "calls": calls,
                "errors": errors,
                "p50_ms": _ms(_percentile(latencies, 50)),
                "p95_ms": _ms(_percentile(latencies, 95)),
                "p99_ms": _ms(_percentile(latencies, 99)),
                "mean_ms": _ms(total / calls),
                "max_ms": _ms(maximum),
            }
        return {"uptime_seconds": round(self.uptime_seconds(), 3), "metrics": per_name}

    def prometheus_text(self) -> bytes:
        """The Prometheus text exposition of this registry (content type: text/plain; version=0.0.4)."""
        with self._lock:  # a scrape sees calls, errors and latency from the same instant
            return generate_latest(self._prometheus)

    def reset(self) -> None:
        with self._lock:
            self._build()


class TrackedOperation:
    """Times a block or every call of a function, and records it in a ``MetricsRegistry``.

    As a decorator it is safe under any concurrency (each call gets its own timer). As a context
    manager one instance times one block at a time per thread of use: create it where you use it
    (``with track_metric("x"):``), which is what the function form does anyway.
    """

    def __init__(self, registry: MetricsRegistry, name: str) -> None:
        if not name:
            raise InvalidRequestError("metric name must be a non-empty string, got ''")
        self.registry = registry
        self.name = name
        self._starts: list[float] = []  # a stack, so the same instance can be nested

    def __enter__(self) -> TrackedOperation:
        self._starts.append(self.registry.clock())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        elapsed = self.registry.clock() - self._starts.pop()
        self.registry.observe(self.name, elapsed, error=exc_type is not None)
        return False  # never swallow the exception

    async def __aenter__(self) -> TrackedOperation:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        return self.__exit__(exc_type, *rest)

    def __call__(self, func: F) -> F:
        registry, name = self.registry, self.name
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with TrackedOperation(registry, name):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with TrackedOperation(registry, name):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


metrics = MetricsRegistry()


def track_metric(name: str, *, registry: MetricsRegistry | None = None) -> TrackedOperation:
    """Track ``name`` in ``registry`` (default: the module's ``metrics``); see the module docstring."""
    return (registry or metrics).track(name)


def snapshot() -> dict[str, Any]:
    return metrics.snapshot()


def prometheus_text() -> bytes:
    """What ``/metrics`` serves: the call metrics above, then the operator's series (jobs, trials,
    fits, tracking store, leak screen, promotions: ``mcp_server.operator_metrics``)."""
    from mcp_server import operator_metrics

    return metrics.prometheus_text() + operator_metrics.exposition()
