"""Calling stage functions: argument injection by name, retries, and reading what they return."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp_server.error_handling import InvalidRequestError
from mcp_server.training_pipeline._types import PipelineStage

MAX_SUMMARY_CHARS = 300
INPUT_EXAMPLE_ROWS = 5


class StageCancelled(Exception):
    """should_stop() turned true while a stage was waiting to retry."""


@dataclass(frozen=True)
class StageSpec:
    """A stage as declared with ``add_stage``."""

    stage: PipelineStage
    func: Callable[..., Any]
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise InvalidRequestError(f"stage {self.stage.value} function must be callable, got {self.func!r}")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 10:
            raise InvalidRequestError(f"retries must be between 0 and 10, got {self.retries!r}")
        if not 0 <= self.retry_delay <= 600:
            raise InvalidRequestError(f"retry_delay must be between 0 and 600 seconds, got {self.retry_delay!r}")
        if self.retry_backoff < 1:
            raise InvalidRequestError(f"retry_backoff must be at least 1, got {self.retry_backoff!r}")


def call_with_available(func: Callable[..., Any], available: Mapping[str, Any], stage: PipelineStage) -> Any:
    """Call ``func`` with the arguments it names (all of them if it takes ``**kwargs``)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: pass everything by keyword
        return func(**available)
    parameters = signature.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return func(**available)
    kwargs: dict[str, Any] = {}
    missing = []
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
                missing.append(p.name)
            continue
        if p.name in available:
            kwargs[p.name] = available[p.name]
        elif p.default is p.empty:
            missing.append(p.name)
    if missing:
        names = ", ".join(sorted(k for k in available if not k.startswith("_")))
        raise InvalidRequestError(
            f"stage {stage.value} function {getattr(func, '__name__', func)!r} needs "
            f"{', '.join(map(repr, missing))}, which no earlier stage provided; available: {names}"
        )
    return func(**kwargs)


def run_with_retries(
    spec: StageSpec,
    available: Mapping[str, Any],
    should_stop: Callable[[], bool] | None,
    on_attempt: Callable[[int], None],
) -> Any:
    """Run a stage, retrying on ``retry_on`` with exponential backoff; ``on_attempt(n)`` counts tries."""
    attempt = 0
    while True:
        attempt += 1
        on_attempt(attempt)
        try:
            return call_with_available(spec.func, available, spec.stage)
        except InvalidRequestError:
            raise  # a wiring mistake does not get better by retrying
        except spec.retry_on:
            if attempt > spec.retries:
                raise
        _sleep_unless_stopped(spec.retry_delay * spec.retry_backoff ** (attempt - 1), should_stop)


def _sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool] | None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if should_stop is not None and should_stop():
            raise StageCancelled()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 0.05))


# --- reading outputs -----------------------------------------------------------------------------
def numeric_metrics(output: Any, *, prefix: str = "") -> dict[str, float]:
    """The numbers in an evaluation result (nested dicts flattened with '.'); bools are not metrics."""
    if not isinstance(output, Mapping):
        return {}
    found: dict[str, float] = {}
    for key, value in output.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, Mapping):
            found.update(numeric_metrics(value, prefix=f"{name}."))
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if isinstance(value, (int, float)) or hasattr(value, "dtype"):  # numbers, numpy scalars
            if math.isfinite(number):
                found[name] = number
    return found


def find_model(output: Any) -> Any | None:
    """A fitted model in a training stage's output: the object itself or ``output["model"]``."""
    if hasattr(output, "predict") and hasattr(output, "fit"):
        return output
    if isinstance(output, Mapping):
        for key in ("model", "estimator", "pipeline"):
            candidate = output.get(key)
            if hasattr(candidate, "predict") and hasattr(candidate, "fit"):
                return candidate
    return None


def find_feature_frame(*outputs: Any) -> Any | None:
    """A few feature rows to serve as the logged model's input example, if a stage exposes them."""
    for output in outputs:
        frame = None
        if isinstance(output, Mapping):
            for key in ("X_test", "X_train", "X", "features"):
                if key in output and hasattr(output[key], "shape"):
                    frame = output[key]
                    break
        elif isinstance(output, (tuple, list)) and len(output) == 4 and hasattr(output[0], "shape"):
            frame = output[0]  # train_test_split order: X_train, X_test, y_train, y_test
        if frame is not None:
            return _nullable_example(frame[:INPUT_EXAMPLE_ROWS])
    return None


def _nullable_example(frame: Any) -> Any:
    """Integer columns as floats, so the inferred signature accepts missing values at serving time."""
    dtypes = getattr(frame, "dtypes", None)
    if dtypes is None or not hasattr(frame, "astype"):
        return frame
    import pandas as pd

    ints = [c for c, d in dtypes.items() if pd.api.types.is_integer_dtype(d)] if hasattr(dtypes, "items") else []
    return frame.astype({c: "float64" for c in ints}) if ints else frame


def summarize(output: Any) -> str | None:
    """A short human-readable description of a stage output."""
    if output is None:
        return None
    text = _describe(output)
    return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 1] + "…"


def _describe(value: Any, depth: int = 0) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (int, float)):
        return f"{type(value).__name__}{tuple(shape)}"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, Mapping):
        if depth >= 1:
            return f"dict({len(value)})"
        return "{" + ", ".join(f"{k}: {_describe(v, depth + 1)}" for k, v in list(value.items())[:12]) + "}"
    if isinstance(value, (list, tuple)):
        if depth >= 1:
            return f"{type(value).__name__}({len(value)})"
        return f"{type(value).__name__}[" + ", ".join(_describe(v, depth + 1) for v in value[:6]) + "]"
    if hasattr(value, "model_dump"):  # pydantic results: their scalar fields say what happened
        scalars = {k: v for k, v in vars(value).items() if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 60)}
        inner = ", ".join(f"{k}={_describe(v, depth + 1)}" for k, v in list(scalars.items())[:6])
        return f"{type(value).__name__}({inner})"
    return type(value).__name__
