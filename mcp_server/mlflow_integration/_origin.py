"""Who asked for a run and through what: the standard tags ``mlflow.user`` and ``mlflow.source.name``.

A caller that acts for someone else (the MCP server acting for its principal, inside a job thread)
opens ``recording_as(user=…, source=…)`` around the work; every run a tracker creates in that
context carries them. Without it, the user is the principal of the current call if the RBAC layer
set one, else the operating-system user, and the source is the library entry point that created
the run (``mcp_server.hyperparameter_tuning``, ``mcp_server.training_pipeline``, …).
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

USER_TAG = "mlflow.user"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
NOTE_TAG = "mlflow.note.content"
DEFAULT_SOURCE = "mcp_server"


@dataclass(frozen=True)
class RunOrigin:
    user: str | None = None
    source: str | None = None


_origin: contextvars.ContextVar[RunOrigin] = contextvars.ContextVar("nba_mcp_run_origin", default=RunOrigin())


@contextlib.contextmanager
def recording_as(*, user: str | None = None, source: str | None = None) -> Iterator[RunOrigin]:
    """Runs created inside this block name ``user`` and ``source`` (unset fields keep the outer value)."""
    outer = _origin.get()
    origin = RunOrigin(user=user or outer.user, source=source or outer.source)
    token = _origin.set(origin)
    try:
        yield origin
    finally:
        _origin.reset(token)


def current_origin() -> RunOrigin:
    return _origin.get()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (some containers)
        return "unknown"


def _principal_id() -> str | None:
    from mcp_server import rbac

    principal = rbac.current_principal()
    return principal.id if principal else None


def origin_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """``mlflow.user`` / ``mlflow.source.name`` / ``mlflow.source.type`` for a new run. The context
    wins over the caller's tags (a library default such as the entry point); the caller's tags
    win over the fallbacks."""
    origin = _origin.get()
    user = origin.user or tags.get(USER_TAG) or _principal_id() or _os_user()
    source = origin.source or tags.get(SOURCE_NAME_TAG) or DEFAULT_SOURCE
    return {USER_TAG: str(user), SOURCE_NAME_TAG: str(source), SOURCE_TYPE_TAG: "LOCAL"}
