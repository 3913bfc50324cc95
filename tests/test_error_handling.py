"""Error tree, handle_errors (sync/async, bare/with options), webhook notifier, retry with backoff."""

from __future__ import annotations

import http.server
import inspect
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mcp_server.error_handling import (
    ConfigurationError,
    ErrorNotifier,
    ErrorRecord,
    ErrorRecorder,
    ExecutionError,
    InvalidRequestError,
    MCPServerError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
    TrackingUnavailableError,
    backoff_delay,
    call_with_retry,
    configure_error_handling,
    error_id_of,
    error_notifier,
    error_recorder,
    handle_errors,
    new_error_id,
    reset_error_handling,
    retry,
)
from mcp_server.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_error_state() -> Iterator[None]:
    reset_error_handling()
    yield
    error_notifier.wait(5)
    reset_error_handling()


# --- the tree ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "builtin_base"),
    [
        (InvalidRequestError, ValueError),
        (NotFoundError, LookupError),
        (PermissionDeniedError, PermissionError),
        (ResourceLimitError, Exception),
        (ExecutionError, Exception),
        (TrackingUnavailableError, Exception),
        (ConfigurationError, Exception),
    ],
)
def test_every_error_is_an_mcp_server_error_and_its_builtin(error_class, builtin_base) -> None:
    assert issubclass(error_class, MCPServerError)
    assert issubclass(error_class, builtin_base)


def test_permission_denied_has_a_generic_default_message() -> None:
    assert str(PermissionDeniedError()) == "permission denied"


# --- recorder ----------------------------------------------------------------------------------


def test_new_error_id_is_twelve_hex_chars_and_unique() -> None:
    ids = {new_error_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


def test_recorder_keeps_a_bounded_ring_newest_first_but_counts_everything() -> None:
    recorder = ErrorRecorder(limit=3)
    for i in range(5):
        recorder.record(ValueError(f"bad {i}"), context="ctx")
    recorder.record(KeyError("k"))
    recent = recorder.recent()
    assert [r.message for r in recent] == ["'k'", "bad 4", "bad 3"]
    assert recorder.counts() == {"ValueError": 5, "KeyError": 1}
    assert recorder.recent(1)[0].error_type == "KeyError"
    assert recent[1].context == "ctx" and recent[1].timestamp.tzinfo is not None
    recorder.clear()
    assert recorder.recent() == [] and recorder.counts() == {}


def test_recorder_rejects_an_empty_ring() -> None:
    with pytest.raises(InvalidRequestError, match="limit must be at least 1, got 0"):
        ErrorRecorder(limit=0)


def test_configure_error_handling_applies_settings(tmp_path) -> None:
    settings = Settings(
        data_home=tmp_path, error_webhook_url="http://127.0.0.1:9/hook",
        error_webhook_timeout_seconds=0.5, recent_errors_limit=2,
    )
    configure_error_handling(settings)
    assert error_notifier.webhook_url == "http://127.0.0.1:9/hook"
    assert error_notifier.timeout_seconds == 0.5
    assert error_recorder.limit == 2


def test_configure_refuses_a_non_http_webhook() -> None:
    with pytest.raises(ConfigurationError, match="error_webhook_url must be an http"):
        ErrorNotifier(webhook_url="file:///etc/passwd")


# --- handle_errors -----------------------------------------------------------------------------


def _make_sync(decorator):
    @decorator
    def train(epochs: int, *, rate: float = 0.1) -> float:
        """Train."""
        if epochs < 0:
            raise ExecutionError(f"epochs must be >= 0, got {epochs}")
        return epochs * rate

    return train


def _make_async(decorator):
    @decorator
    async def train(epochs: int, *, rate: float = 0.1) -> float:
        """Train."""
        if epochs < 0:
            raise ExecutionError(f"epochs must be >= 0, got {epochs}")
        return epochs * rate

    return train


DECORATOR_FORMS = {
    "bare": handle_errors,
    "called": handle_errors(),
    "options": handle_errors(reraise=True, notify=True),
    "context": handle_errors("training"),
}


@pytest.mark.parametrize("form", DECORATOR_FORMS)
@pytest.mark.parametrize("make", [_make_sync, _make_async], ids=["sync", "async"])
def test_handle_errors_keeps_signature_and_async_ness(form, make) -> None:
    plain = make(lambda f: f)
    wrapped = make(DECORATOR_FORMS[form])
    assert inspect.signature(wrapped) == inspect.signature(plain)
    assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(plain)
    assert wrapped.__name__ == "train" and wrapped.__doc__ == "Train."


@pytest.mark.parametrize(
    ("form", "expected_context"),
    [("bare", "_make_sync.<locals>.train"), ("options", "_make_sync.<locals>.train"),
     ("context", "training")],
)
def test_sync_error_is_recorded_logged_with_its_id_and_reraised(form, expected_context, caplog):
    train = _make_sync(DECORATOR_FORMS[form])
    assert train(3, rate=2.0) == 6.0
    with caplog.at_level(logging.WARNING, logger="mcp_server.error_handling"):
        with pytest.raises(ExecutionError, match="epochs must be >= 0, got -1") as caught:
            train(-1)
    error_id = error_id_of(caught.value)
    [record] = error_recorder.recent()
    assert record.error_id == error_id
    assert (record.error_type, record.context) == ("ExecutionError", expected_context)
    assert error_recorder.counts() == {"ExecutionError": 1}
    assert any(error_id in message for message in caplog.messages)


@pytest.mark.anyio
async def test_async_error_is_recorded_and_reraised() -> None:
    train = _make_async(handle_errors(context="async-train"))
    assert await train(2) == pytest.approx(0.2)
    with pytest.raises(ExecutionError):
        await train(-5)
    assert error_recorder.recent()[0].context == "async-train"


@pytest.mark.anyio
@pytest.mark.parametrize("make", [_make_sync, _make_async], ids=["sync", "async"])
async def test_reraise_false_returns_none_and_still_records(make) -> None:
    train = make(handle_errors(reraise=False))
    result = train(-1)
    if inspect.isawaitable(result):
        result = await result
    assert result is None
    assert error_recorder.counts() == {"ExecutionError": 1}


def test_nested_handlers_record_an_error_once() -> None:
    @handle_errors(context="outer")
    def outer() -> None:
        inner()

    @handle_errors(context="inner")
    def inner() -> None:
        raise NotFoundError("dataset 'x' does not exist")

    with pytest.raises(NotFoundError):
        outer()
    assert [r.context for r in error_recorder.recent()] == ["inner"]


def test_cancellation_style_base_exceptions_pass_through_unrecorded() -> None:
    @handle_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert error_recorder.counts() == {}


def test_seed_snippet_runs_as_written() -> None:
    @handle_errors(reraise=True, notify=True)
    def train(): ...

    assert train() is None


# --- webhook against real local servers ----------------------------------------------------------


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def answering_webhook() -> Iterator[tuple[str, list[dict]]]:
    _Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Collector.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def hanging_webhook() -> Iterator[str]:
    """Accepts TCP connections (kernel backlog) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()


@pytest.fixture
def refusing_webhook() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there any more: connections are refused
    return f"http://127.0.0.1:{port}/hook"


def test_notify_posts_the_record_as_json_to_the_webhook(answering_webhook) -> None:
    url, received = answering_webhook
    error_notifier.configure(webhook_url=url, timeout_seconds=2.0)

    @handle_errors(notify=True, context="deploy")
    def deploy() -> None:
        raise ExecutionError("stage 'fit' failed")

    with pytest.raises(ExecutionError) as caught:
        deploy()
    assert error_notifier.wait(5)
    assert received == [
        {**ErrorRecord.model_validate(received[0]).model_dump(mode="json"),
         "error_id": error_id_of(caught.value), "error_type": "ExecutionError",
         "message": "stage 'fit' failed", "context": "deploy"}
    ]


@pytest.mark.parametrize("webhook", ["hanging_webhook", "refusing_webhook"])
def test_a_failing_webhook_is_harmless_to_the_caller(webhook, request) -> None:
    url = request.getfixturevalue(webhook)
    error_notifier.configure(webhook_url=url, timeout_seconds=0.3)

    @handle_errors(notify=True)
    def fails() -> None:
        raise ValueError("original")

    started = time.perf_counter()
    with pytest.raises(ValueError, match="original"):
        fails()
    assert time.perf_counter() - started < 0.25  # delivery runs off the caller's thread
    assert error_notifier.wait(5)  # and it ends, bounded by the timeout
    record = error_recorder.recent()[0]
    started = time.perf_counter()
    assert error_notifier.send(record) is False
    assert time.perf_counter() - started < 2.0


def test_a_notifier_that_raises_does_not_replace_the_callers_error(monkeypatch) -> None:
    def broken_notify(record):
        raise RuntimeError("notifier exploded")

    monkeypatch.setattr(error_notifier, "notify", broken_notify)

    @handle_errors(notify=True)
    def fails() -> None:
        raise InvalidRequestError("cv_folds must be between 2 and 20, got 1")

    with pytest.raises(InvalidRequestError, match="cv_folds"):
        fails()


# --- retry -------------------------------------------------------------------------------------


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then returns the call count."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, value: int = 0) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls + value


@pytest.mark.parametrize(
    ("failures", "error", "expected_calls", "outcome"),
    [
        (0, ConnectionError("down"), 1, "ok"),
        (2, ConnectionError("down"), 3, "ok"),
        (2, TrackingUnavailableError("store down"), 3, "ok"),
        (1, TimeoutError("slow"), 2, "ok"),
        (3, ConnectionError("down"), 3, ConnectionError),
        (5, ValueError("not transient"), 1, ValueError),
    ],
)
def test_retry_retries_only_transient_errors(failures, error, expected_calls, outcome) -> None:
    flaky, delays = Flaky(failures, error), []
    wrapped = retry(attempts=3, base_delay=0.1, max_delay=2.0, sleep=delays.append)(flaky)
    if outcome == "ok":
        assert wrapped() == expected_calls
    else:
        with pytest.raises(outcome):
            wrapped()
    assert flaky.calls == expected_calls
    assert len(delays) == (0 if outcome is ValueError else expected_calls - 1)


@pytest.mark.parametrize("retry_number", [1, 2, 3, 4, 5, 6, 7])
def test_backoff_is_exponential_capped_and_jittered(retry_number) -> None:
    cap = min(2.0, 0.1 * 2 ** (retry_number - 1))
    rng = random.Random(retry_number)
    draws = [backoff_delay(retry_number, base_delay=0.1, max_delay=2.0, rng=rng) for _ in range(50)]
    assert all(cap / 2 <= d <= cap for d in draws)
    assert len(set(draws)) == 50  # jitter: no two waits alike


def test_call_with_retry_passes_arguments_through() -> None:
    flaky, delays = Flaky(1, TrackingUnavailableError("down")), []
    assert call_with_retry(flaky, 10, attempts=2, sleep=delays.append) == 12
    assert len(delays) == 1


@pytest.mark.anyio
async def test_retry_async_stays_async_and_awaits_an_async_sleep() -> None:
    flaky, slept = Flaky(2, ConnectionError("down")), []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    @retry(attempts=4, base_delay=0.01, max_delay=0.05, sleep=record_sleep)
    async def fetch(value: int) -> int:
        return flaky(value)

    assert inspect.iscoroutinefunction(fetch)
    assert list(inspect.signature(fetch).parameters) == ["value"]
    assert await fetch(100) == 103
    assert len(slept) == 2


@pytest.mark.anyio
async def test_call_with_retry_on_an_async_function_returns_an_awaitable() -> None:
    flaky = Flaky(1, TimeoutError("slow"))

    async def fetch() -> int:
        return flaky()

    assert await call_with_retry(fetch, attempts=2, base_delay=0.0, max_delay=0.0) == 2


def test_retry_bare_keeps_the_signature() -> None:
    def read(run_id: str, *, timeout: float = 1.0) -> str:
        return run_id

    assert inspect.signature(retry(read)) == inspect.signature(read)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "attempts must be at least 1, got 0"),
        ({"base_delay": -1.0}, "base_delay must be >= 0, got -1.0"),
        ({"base_delay": 1.0, "max_delay": 0.5}, r"max_delay must be >= base_delay \(1.0\), got 0.5"),
    ],
)
def test_retry_rejects_bad_options(options, message) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        retry(**options)
