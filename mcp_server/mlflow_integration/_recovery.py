"""Crash recovery: every run records the process that opened it, so a restarted server can end
the runs its dead predecessor left RUNNING (MLflow has no heartbeat and never does this itself)."""

from __future__ import annotations

import os
import socket

OWNER_TAG = "nba_mcp.owner"  # host:pid of the process that opened the run
TERMINATION_REASON_TAG = "nba_mcp.termination_reason"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owned_by_dead_process(owner_tag: str) -> str | None:
    """The pid in ``owner_tag`` if it names a process of this host that no longer exists."""
    host, _, pid = owner_tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
        return None  # other hosts' processes cannot be seen: leave their runs alone
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
