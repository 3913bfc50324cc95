"""Retry with exponential backoff and jitter, for transient failures such as the tracking store."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp_server.error_handling._exceptions import InvalidRequestError, TrackingUnavailableError

logger = logging.getLogger("mcp_server.error_handling")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (
    TrackingUnavailableError,
    ConnectionError,
    TimeoutError,
)

Sleep = Callable[[float], Any]  # time.sleep, asyncio.sleep, or a recorder in tests


def backoff_delay(
    retry_number: int, *, base_delay: float, max_delay: float, rng: random.Random | None = None
) -> float:
    """Delay before retry ``retry_number`` (1-based): capped exponential with "equal jitter".

    The cap doubles each retry (``base_delay * 2**(n-1)``, at most ``max_delay``); the delay is
    drawn uniformly from the upper half of the cap, so clients that failed together spread out
    while each one still backs off at least half the exponential schedule.
    """
    cap = min(max_delay, base_delay * 2 ** (retry_number - 1))
    draw = (rng or random).random()
    return cap / 2 + draw * cap / 2


def retry(
    func: F | None = None,
    /,
    *,
    attempts: int = 3,
    base_delay: float = 0.1,
    max_delay: float = 2.0,
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
) -> Any:
    """Retry the wrapped function (sync or async) on ``retry_on`` errors, up to ``attempts`` calls.

    Other exceptions propagate at once; after the last attempt the last error propagates
    unchanged. ``sleep`` defaults to ``time.sleep`` (sync) or ``asyncio.sleep`` (async); an
    injected ``sleep`` may return an awaitable, which async wrappers await.
    Usable bare (``@retry``) or with options (``@retry(attempts=5)``).
    """
    _validate(attempts=attempts, base_delay=base_delay, max_delay=max_delay)

    def decorate(fn: F) -> F:
        def delay_for(retry_number: int) -> float:
            return backoff_delay(retry_number, base_delay=base_delay, max_delay=max_delay, rng=rng)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                for attempt in range(1, attempts + 1):
                    try:
                        return await fn(*args, **kwargs)
                    except retry_on as exc:
                        if attempt == attempts:
                            raise
                        delay = delay_for(attempt)
                        _log_retry(fn, attempt, attempts, delay, exc)
                        pause = (sleep or asyncio.sleep)(delay)
                        if inspect.isawaitable(pause):
                            await pause
                raise AssertionError("unreachable: the loop returns or raises")

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except retry_on as exc:
                    if attempt == attempts:
                        raise
                    delay = delay_for(attempt)
                    _log_retry(fn, attempt, attempts, delay, exc)
                    (sleep or time.sleep)(delay)
            raise AssertionError("unreachable: the loop returns or raises")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def call_with_retry(
    fn: Callable[..., Any],
    /,
    *args: Any,
    attempts: int = 3,
    base_delay: float = 0.1,
    max_delay: float = 2.0,
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, **kwargs)`` with retries; for an async ``fn`` this returns the awaitable.

    The retry options are keyword names reserved by this function; pass them to ``retry``
    through a wrapper if ``fn`` itself takes arguments with those names.
    """
    wrapped = retry(
        fn, attempts=attempts, base_delay=base_delay, max_delay=max_delay,
        retry_on=retry_on, sleep=sleep, rng=rng,
    )
    return wrapped(*args, **kwargs)


def _validate(*, attempts: int, base_delay: float, max_delay: float) -> None:
    if attempts < 1:
        raise InvalidRequestError(f"attempts must be at least 1, got {attempts}")
    if base_delay < 0:
        raise InvalidRequestError(f"base_delay must be >= 0, got {base_delay}")
    if max_delay < base_delay:
        raise InvalidRequestError(
            f"max_delay must be >= base_delay ({base_delay}), got {max_delay}"
        )


def _log_retry(
    fn: Callable[..., Any] | Awaitable[Any], attempt: int, attempts: int, delay: float,
    exc: BaseException,
) -> None:
    logger.warning(
        "%s failed (attempt %d of %d: %s: %s); retrying in %.3f s",
        getattr(fn, "__qualname__", repr(fn)), attempt, attempts, type(exc).__name__, exc, delay,
    )
