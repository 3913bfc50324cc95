"""Blocking work in a worker thread that learns when its caller gives up.

``anyio.to_thread.run_sync`` keeps a thread working after the request that started it was
cancelled (the client sent ``notifications/cancelled``, or went away): reading a hostile data file
went on for minutes with nobody waiting. ``run_stoppable`` hands the work a ``threading.Event``
that is set the moment the caller stops waiting; the data catalog checks it between the blocks it
reads, so the thread ends within one block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def run_stoppable(work: Callable[[threading.Event], T]) -> T:
    """``work(stop)`` in a worker thread; ``stop`` is set once the caller no longer waits."""
    stop = threading.Event()
    try:
        # abandon_on_cancel: a cancelled caller returns at once; the thread sees ``stop`` and ends.
        return await anyio.to_thread.run_sync(work, stop, abandon_on_cancel=True)
    finally:
        stop.set()
