"""A process's descendants, read from ``/proc`` (Linux): which workers and resource trackers a
server started, and whether they are still alive after it went away."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ")".
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every live descendant of ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = command_line(child)
                frontier.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def is_alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by its new parent) counts as dead."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_all_dead(pids, timeout: float) -> tuple[list[int], float]:
    """(pids still alive after ``timeout``, seconds until the last one died)."""
    started = time.monotonic()
    while True:
        alive = [p for p in pids if is_alive(p)]
        if not alive or time.monotonic() - started >= timeout:
            return alive, time.monotonic() - started
        time.sleep(0.05)


def is_worker(command: str) -> bool:
    return "loky" in command or "resource_tracker" in command or "multiprocessing" in command
