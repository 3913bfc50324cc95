"""The server's state: settings, the job manager and lazily built domain services.

One ``AppState`` per server process, created by ``build_server`` (not in the lifespan: stdio and
SSE enter the lifespan once per connection, and jobs must outlive the connection that started
them). Domain services import heavy libraries (mlflow, pandas, scikit-learn), so they are built on
first use, never at import time: a freshly spawned server answers ``tools/list`` fast.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from mcp_server.jobs import JobManager
from mcp_server.settings import Settings

if TYPE_CHECKING:
    from mcp_server import rbac


class AppState:
    def __init__(self, settings: Settings, *, jobs: JobManager | None = None) -> None:
        self.settings = settings
        self.jobs = jobs or JobManager(
            max_concurrent=settings.max_concurrent_jobs,
            job_timeout=settings.job_timeout_seconds,
            max_queued=settings.max_queued_jobs,
            max_per_owner=settings.max_jobs_per_principal,
            stop_grace=settings.job_stop_grace_seconds,
        )
        self.started_at = time.time()
        self.tool_permissions: dict[str, rbac.Permission] = {}
        self._lock = threading.Lock()
        self._trackers: dict[str, Any] = {}
        self._services: dict[str, Any] = {}

    @property
    def uptime_seconds(self) -> float:
        return time.time() - self.started_at

    def tracker(self, experiment_name: str | None = None):
        """The MLflow tracker bound to ``experiment_name`` (default: settings.experiment_name)."""
        name = experiment_name or self.settings.experiment_name
        with self._lock:
            tracker = self._trackers.get(name)
        if tracker is None:
            from mcp_server.mlflow_integration import get_mlflow_tracker

            tracker = get_mlflow_tracker(name, settings=self.settings)
            with self._lock:
                tracker = self._trackers.setdefault(name, tracker)
        return tracker

    def service(self, key: str, factory):
        """A lazily built, process-wide domain object (catalog, validator...)."""
        with self._lock:
            if key not in self._services:
                self._services[key] = factory()
            return self._services[key]

    def close(self) -> None:
        self.jobs.shutdown(cancel=True, timeout=10)
        with self._lock:
            trackers = list(self._trackers.values())
        for tracker in trackers:
            tracker.close()
