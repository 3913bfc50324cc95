"""``handle_errors``: record, log with an error id, notify, then re-raise or return None."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from mcp_server.error_handling._exceptions import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from mcp_server.error_handling._recording import (
    _ERROR_ID_ATTRIBUTE,
    error_id_of,
    error_notifier,
    error_recorder,
)

logger = logging.getLogger("mcp_server.error_handling")

P = ParamSpec("P")
R = TypeVar("R")

# Errors the caller can fix are expected traffic: a warning, no traceback.
_CALLER_ERRORS = (InvalidRequestError, NotFoundError, PermissionDeniedError)


def _record_and_log(exc: Exception, context: str, *, notify: bool) -> None:
    if error_id_of(exc) is not None:
        return  # an inner handle_errors already recorded it; nesting must not double count
    record = error_recorder.record(exc, context)
    try:
        setattr(exc, _ERROR_ID_ATTRIBUTE, record.error_id)
    except AttributeError:  # exceptions with __slots__: the record and the log still carry the id
        pass
    if isinstance(exc, _CALLER_ERRORS):
        logger.warning("[%s] %s in %s: %s", record.error_id, record.error_type, context, exc)
    else:
        logger.error(
            "[%s] %s in %s: %s", record.error_id, record.error_type, context, exc, exc_info=exc
        )
    if notify:
        try:
            error_notifier.notify(record)
        except Exception:  # noqa: BLE001 - a broken notifier must not replace the caller's error
            logger.exception("[%s] error notifier failed", record.error_id)


def handle_errors(
    target: Callable[P, R] | str | None = None,
    /,
    *,
    context: str | None = None,
    notify: bool = False,
    reraise: bool = True,
) -> Any:
    """Record, log (with an error id) and optionally notify errors raised by the wrapped function.

    Usable bare (``@handle_errors``), with options (``@handle_errors(notify=True)``) or with the
    context as the first argument (``@handle_errors("train")``). The context defaults to the
    function's qualified name. With ``reraise=False`` the wrapper returns None after an error.
    Only ``Exception`` is handled: cancellation and KeyboardInterrupt pass through untouched.
    """
    if isinstance(target, str):
        context = target
    elif target is not None:
        return _wrap(target, context=context, notify=notify, reraise=reraise)

    def decorate(func: Callable[P, R]) -> Callable[P, R | None]:
        return _wrap(func, context=context, notify=notify, reraise=reraise)

    return decorate


def _wrap(func: Callable[P, Any], *, context: str | None, notify: bool, reraise: bool) -> Any:
    label = context or getattr(func, "__qualname__", repr(func))
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                _record_and_log(exc, label, notify=notify)
                if reraise:
                    raise
                return None

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            _record_and_log(exc, label, notify=notify)
            if reraise:
                raise
            return None

    return wrapper
