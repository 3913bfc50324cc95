"""Crash recovery: every run records the process instance that opened it, so a restarted server can
end the runs its dead predecessor left RUNNING (MLflow has no heartbeat and never does this itself).

The owner tag is ``host:pid:instance``; ``instance`` is a random id drawn once per process. A pid
alone cannot tell a dead server from a live one: a server running as PID 1 (a container, a new PID
namespace) is restarted as PID 1 again, and the old ``host:1`` looks alive forever. So a server holds
a *lease*: an exclusively ``flock``-ed file ``<lease dir>/<instance>.lease`` that the kernel releases
the moment the process dies, whatever its pid, namespace or hostname (a restarted container with
the same data volume sees the same lease folder). A run whose instance has a lease file in that
folder is dead exactly when the file can be locked. Runs without a lease (library scripts, tags
written before leases) fall back to host + pid.
"""

from __future__ import annotations

import fcntl
import os
import socket
import uuid
from pathlib import Path

OWNER_TAG = "nba_mcp.owner"  # host:pid:instance of the process that opened the run
TERMINATION_REASON_TAG = "nba_mcp.termination_reason"
LEASE_SUFFIX = ".lease"

INSTANCE_ID = uuid.uuid4().hex[:16]
_lease: tuple[Path, int] | None = None  # (file, fd) held for the life of the process


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{INSTANCE_ID}"


def parse_owner(owner_tag: str) -> tuple[str, str, str | None]:
    """``(host, pid, instance or None)`` of an owner tag (old tags are ``host:pid``)."""
    parts = owner_tag.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and not parts[2].isdigit():
        return parts[0], parts[1], parts[2]
    host, _, pid = owner_tag.rpartition(":")
    return host, pid, None


def hold_lease(directory: Path) -> Path:
    """Take this process's lease in ``directory`` (idempotent); it is released only by our death."""
    global _lease
    if _lease is not None:
        return _lease[0]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{INSTANCE_ID}{LEASE_SUFFIX}"
    # Locked under a temporary name, then renamed: no other server ever sees it unlocked.
    staging = directory / f".{INSTANCE_ID}.staging"
    fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, owner().encode())
    os.replace(staging, path)
    _lease = (path, fd)
    return path


def lease_dead(directory: Path, instance: str) -> bool | None:
    """True: the instance's lease file exists and nobody holds it. None: no lease file to judge by."""
    if instance == INSTANCE_ID:
        return False
    path = directory / f"{instance}{LEASE_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # held: the owner lives
    finally:
        os.close(fd)
    return True


def remove_dead_leases(directory: Path) -> int:
    """Delete the lease files nobody holds (their runs are reaped first); returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for path in directory.glob(f"*{LEASE_SUFFIX}"):
        if lease_dead(directory, path.name.removesuffix(LEASE_SUFFIX)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def owned_by_dead_process(owner_tag: str, lease_dir: Path | None = None) -> str | None:
    """A description of the dead owner if ``owner_tag`` names a process that no longer exists."""
    host, pid, instance = parse_owner(owner_tag)
    if instance is not None and lease_dir is not None:
        dead = lease_dead(lease_dir, instance)
        if dead is not None:
            return f"{pid} (instance {instance}, lease released)" if dead else None
    if instance == INSTANCE_ID:
        return None  # ours
    if host != socket.gethostname() or not pid.isdigit():
        return None  # other hosts' processes cannot be seen: leave their runs alone
    if int(pid) == os.getpid():
        # Our own pid but another instance: a previous server that ran with the same pid (PID 1).
        return pid if instance is not None else None
    return None if _alive(int(pid)) else pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True

