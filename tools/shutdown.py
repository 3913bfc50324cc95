"""How ``nba-mcp serve`` stops: within the window MCP clients give, the runs ended first.

MCP clients (the SDKs, desktop apps) close the server's stdin, wait 2 s, then SIGTERM its process
group, then SIGKILL it 2 s later. Measured before this module: the stop began on EOF ("at most
8 s"), the SIGTERM 2 s later was taken as a second signal and exited at once — runs left RUNNING,
7 semaphores leaked, and the client's close took 3.4-4.0 s. So a stop has two steps:

1. **Urgent** (``URGENT_SECONDS`` from the first EOF or signal): refuse and cancel every job, kill
   the worker processes, give the jobs most of that time to end their own runs (KILLED, best score
   so far), then end KILLED whatever this process still has RUNNING.
2. **The rest**: the jobs' own cleanup (summaries, plots), buffered writes flushed, the trackers
   closed; bounded by ``shutdown_timeout_seconds`` after a signal, and by ``EOF_WINDOW_SECONDS``
   after stdin EOF (what is cut is a stopped search's summary and plot; its runs are ended).

A second signal during step 1 waits for it (never past its bound) and then exits; during step 2 it
exits at once: the runs are already ended. The exit releases the semaphores of the dead workers'
pools (multiprocessing finalizers), so no resource tracker finds leaked ones; ``os._exit`` follows,
so no thread blocked on stdin or on a fit can hold the process open.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

logger = logging.getLogger("nba_mcp")

URGENT_SECONDS = 1.5  # runs ended and workers stopped within this of the first EOF or signal
# After stdin EOF the client's SIGTERM comes 2 s later: the rest of the stop ends before it, so the
# client sees the server exit by itself (it then returns at once; otherwise it waits for the whole
# process group to go, 2 s more). A signal gives the rest shutdown_timeout_seconds.
# Measured: a stop ending at 1.93 s still lost the race once in 20 (the client's check of the exit
# lags the exit itself), so the rest ends by 1.6 s.
EOF_WINDOW_SECONDS = 1.6
EXIT_GRACE_SECONDS = 2.0  # past shutdown_timeout_seconds: the watchdog exits whatever is still running


class GracefulStop:
    """SIGTERM, SIGINT and stdin EOF end the server the same way, within stated bounds.

    The stop runs in its own thread: a signal handler runs in the main thread, which may hold
    locks the stop needs, and on EOF the main thread only waits for it.
    """

    def __init__(self, state, timeout: float) -> None:
        self.state = state
        self.timeout = timeout
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._urgent_done = threading.Event()
        self._window = timeout

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if not self._begin(f"{name} received", code=0):
            # A second signal: the runs first (bounded), then out.
            left = self._started_at + URGENT_SECONDS + 0.2 - time.monotonic()
            ended = self._urgent_done.wait(max(0.0, left))
            logger.warning("%s again: exiting now%s", name, "" if ended else " (the runs were not all ended in time)")
            _exit(128 + signum)

    def stop_and_exit(self, why: str, *, code: int, window: float | None = None) -> None:
        """Stop (or join a stop already under way) and exit; never returns. ``window``: the whole
        stop's bound (default: shutdown_timeout_seconds)."""
        self._begin(why, code=code, window=window)
        while True:  # the stop thread or the watchdog exits the process; signals still run here
            time.sleep(1.0)

    def _begin(self, why: str, *, code: int, window: float | None = None) -> bool:
        """Start the stop; False if one is already under way."""
        with self._lock:
            if self._started_at is not None:
                return False
            self._started_at = time.monotonic()
            self._window = self.timeout if window is None else min(self.timeout, window)
        watchdog = threading.Timer(self.timeout + EXIT_GRACE_SECONDS, _exit, args=(code,))
        watchdog.daemon = True
        watchdog.start()
        threading.Thread(target=self._stop, args=(why, code), name="graceful-stop", daemon=True).start()
        return True

    def _stop(self, why: str, code: int) -> None:
        started = self._started_at
        reason = f"the server stopped ({why})"
        logger.info("%s: ending runs and stopping workers (at most %.1f s), then the rest (at most %.1f s)",
                    why, URGENT_SECONDS, self._window)
        try:
            ended = self.state.end_work_now(started + URGENT_SECONDS, reason=reason)
            logger.info("runs ended and workers stopped in %.2f s (%d run(s) ended here)",
                        time.monotonic() - started, len(ended))
        except Exception:  # noqa: BLE001 - exit regardless
            logger.exception("error while ending the runs")
        finally:
            self._urgent_done.set()
        try:
            left = max(0.1, started + self._window - time.monotonic())
            ended = self.state.close(left, reason=reason, exiting=True)
            logger.info("stopped in %.2f s (%d more run(s) ended here)", time.monotonic() - started, len(ended))
        except Exception:  # noqa: BLE001 - exit regardless
            logger.exception("error while stopping")
        _exit(code)


def release_semaphores() -> None:
    """Run the multiprocessing finalizers that unlink the pools' named semaphores (``os._exit``
    skips them, and the resource tracker then reports them leaked and cleans up after us)."""
    if "multiprocessing.util" not in sys.modules:
        return
    try:
        from multiprocessing import util

        util._run_finalizers(0)  # noqa: SLF001 - priority >= 0: the semaphores' unlink, queues' close
    except Exception:  # noqa: BLE001, S110 - best effort on the way out
        pass


def _exit(code: int) -> None:
    import os

    release_semaphores()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass
    logging.shutdown()
    os._exit(code)
