"""track_metric as context manager and decorator, exact counts under threads, percentiles, Prometheus."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_server import monitoring
from mcp_server.error_handling import InvalidRequestError
from mcp_server.monitoring import MetricsRegistry, metrics, prometheus_text, snapshot, track_metric


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> MetricsRegistry:
    return MetricsRegistry()


@pytest.fixture
def default_registry_reset() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def prometheus_samples(registry: MetricsRegistry) -> dict[tuple[str, str], float]:
    """(sample name, operation label) -> value, parsed by prometheus-client's own parser."""
    families = text_string_to_metric_families(registry.prometheus_text().decode())
    return {
        (sample.name, sample.labels.get("operation", "")): sample.value
        for family in families
        for sample in family.samples
        if "le" not in sample.labels
    }


def test_context_manager_counts_calls_and_errors_and_reraises(registry) -> None:
    with registry.track("fit"):
        pass
    with pytest.raises(ValueError, match="bad"):
        with registry.track("fit"):
            raise ValueError("bad")
    fit = registry.snapshot()["metrics"]["fit"]
    assert (fit["calls"], fit["errors"]) == (2, 1)
    assert 0 <= fit["p50_ms"] <= fit["max_ms"]


@pytest.mark.anyio
async def test_async_context_manager(registry) -> None:
    async with registry.track("fetch"):
        pass
    assert registry.snapshot()["metrics"]["fetch"]["calls"] == 1


def _sync_train(epochs: int, *, rate: float = 0.1) -> float:
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    return epochs * rate


async def _async_train(epochs: int, *, rate: float = 0.1) -> float:
    return _sync_train(epochs, rate=rate)


@pytest.mark.parametrize("func", [_sync_train, _async_train], ids=["sync", "async"])
def test_decorator_keeps_signature_and_async_ness(func, registry) -> None:
    wrapped = registry.track("train")(func)
    assert inspect.signature(wrapped) == inspect.signature(func)
    assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(func)
    assert wrapped.__name__ == func.__name__


@pytest.mark.anyio
@pytest.mark.parametrize("func", [_sync_train, _async_train], ids=["sync", "async"])
async def test_decorator_counts_calls_and_errors(func, registry) -> None:
    wrapped = track_metric("train", registry=registry)(func)
    for epochs in (1, 2, -1, 3, -2):
        try:
            result = wrapped(epochs)
            if inspect.isawaitable(result):
                await result
        except ValueError:
            pass
    train = registry.snapshot()["metrics"]["train"]
    assert (train["calls"], train["errors"]) == (5, 2)


@pytest.mark.parametrize("style", ["decorator", "context_manager"])
def test_counts_are_exact_under_eight_threads(style, registry) -> None:
    threads_count, calls_per_thread = 8, 1500
    start_together = threading.Barrier(threads_count)

    @registry.track("decorated")
    def work(i: int) -> None:
        if i % 10 == 0:
            raise RuntimeError("every tenth call fails")

    def run() -> None:
        start_together.wait()
        for i in range(calls_per_thread):
            try:
                if style == "decorator":
                    work(i)
                else:
                    with registry.track("decorated"):
                        work.__wrapped__(i)
            except RuntimeError:
                pass

    threads = [threading.Thread(target=run) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected_calls = threads_count * calls_per_thread
    expected_errors = threads_count * calls_per_thread // 10
    stats = registry.snapshot()["metrics"]["decorated"]
    assert (stats["calls"], stats["errors"]) == (expected_calls, expected_errors)
    samples = prometheus_samples(registry)
    assert samples[("nba_mcp_calls_total", "decorated")] == expected_calls
    assert samples[("nba_mcp_errors_total", "decorated")] == expected_errors
    assert samples[("nba_mcp_latency_seconds_count", "decorated")] == expected_calls


def test_percentiles_mean_and_max_from_known_latencies(registry) -> None:
    for ms in range(100, 0, -1):  # 100 ms .. 1 ms, out of order on purpose
        registry.observe("known", ms / 1000)
    assert registry.snapshot()["metrics"]["known"] == {
        "calls": 100, "errors": 0, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0,
        "mean_ms": 50.5, "max_ms": 100.0,
    }


def test_reservoir_is_bounded_but_counts_and_max_cover_every_call() -> None:
    registry = MetricsRegistry(reservoir_size=10)
    for ms in range(1, 101):  # the reservoir keeps 91..100 ms
        registry.observe("bounded", ms / 1000, error=ms <= 5)
    stats = registry.snapshot()["metrics"]["bounded"]
    assert (stats["calls"], stats["errors"], stats["max_ms"]) == (100, 5, 100.0)
    assert (stats["p50_ms"], stats["p99_ms"], stats["mean_ms"]) == (95.0, 100.0, 50.5)


def test_injected_clock_times_the_block() -> None:
    ticks = iter([10.0, 10.25])
    registry = MetricsRegistry(clock=lambda: next(ticks))
    with registry.track("timed"):
        pass
    assert registry.snapshot()["metrics"]["timed"]["max_ms"] == 250.0


def test_errors_series_is_exported_as_zero_before_any_error(registry) -> None:
    registry.observe("healthy", 0.01)
    assert prometheus_samples(registry)[("nba_mcp_errors_total", "healthy")] == 0


def test_reset_clears_the_dict_and_prometheus_views(registry) -> None:
    registry.observe("gone", 0.01)
    registry.reset()
    assert registry.snapshot()["metrics"] == {}
    assert not any(op == "gone" for _, op in prometheus_samples(registry))
    assert registry.snapshot()["uptime_seconds"] >= 0


def test_two_registries_do_not_collide(registry) -> None:
    other = MetricsRegistry()
    registry.observe("a", 0.01)
    other.observe("a", 0.01)
    other.observe("a", 0.01)
    assert prometheus_samples(registry)[("nba_mcp_calls_total", "a")] == 1
    assert prometheus_samples(other)[("nba_mcp_calls_total", "a")] == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MetricsRegistry(reservoir_size=0), "reservoir_size must be at least 1, got 0"),
        (lambda: track_metric(""), "metric name must be a non-empty string"),
    ],
)
def test_invalid_arguments_are_refused(build, message) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        build()


def test_seed_snippet_and_module_functions_use_the_default_registry(default_registry_reset) -> None:
    with track_metric("model_training"):
        ...
    assert snapshot()["metrics"]["model_training"]["calls"] == 1
    assert monitoring.metrics.snapshot()["metrics"] == snapshot()["metrics"]
    assert b'nba_mcp_calls_total{operation="model_training"} 1.0' in prometheus_text()
