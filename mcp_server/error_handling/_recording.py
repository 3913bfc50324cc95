"""Recording and notifying errors: ids, the bounded ring of recent errors, the webhook notifier."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
import urllib.request
import uuid
from collections import Counter, deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from mcp_server.error_handling._exceptions import ConfigurationError, InvalidRequestError

if TYPE_CHECKING:
    from mcp_server.settings import Settings

logger = logging.getLogger("mcp_server.error_handling")

# --- recording ---------------------------------------------------------------------------------

_MAX_MESSAGE_CHARS = 500  # keeps the ring (and webhook payloads) small however large the message
_ERROR_ID_ATTRIBUTE = "_nba_mcp_error_id"


def new_error_id() -> str:
    """A short random id (12 hex chars) that ties a log line, a record and a client message together."""
    return uuid.uuid4().hex[:12]


def error_id_of(exc: BaseException) -> str | None:
    """The id under which ``handle_errors`` recorded this exception, if it did."""
    return getattr(exc, _ERROR_ID_ATTRIBUTE, None)


class ErrorRecord(BaseModel):
    """One recorded error: what, where and when, without the traceback (that goes to the log)."""

    model_config = ConfigDict(frozen=True)

    error_id: str
    error_type: str
    message: str
    context: str | None = None
    timestamp: datetime


class ErrorRecorder:
    """Counts errors per type and keeps a bounded ring of the most recent ones; thread-safe."""

    def __init__(self, limit: int = 100) -> None:
        if limit < 1:
            raise InvalidRequestError(f"limit must be at least 1, got {limit}")
        self._lock = threading.Lock()
        self._recent: deque[ErrorRecord] = deque(maxlen=limit)
        self._counts: Counter[str] = Counter()

    @property
    def limit(self) -> int:
        return self._recent.maxlen or 0

    def set_limit(self, limit: int) -> None:
        """Resize the ring in place (keeping the newest records), so importers' references stay valid."""
        if limit < 1:
            raise InvalidRequestError(f"recent_errors_limit must be at least 1, got {limit}")
        with self._lock:
            self._recent = deque(self._recent, maxlen=limit)

    def record(self, exc: BaseException, context: str | None = None) -> ErrorRecord:
        record = ErrorRecord(
            error_id=new_error_id(),
            error_type=type(exc).__name__,
            message=str(exc)[:_MAX_MESSAGE_CHARS],
            context=context,
            timestamp=datetime.now(timezone.utc),
        )
        with self._lock:
            self._recent.append(record)
            self._counts[record.error_type] += 1
        return record

    def recent(self, n: int = 20) -> list[ErrorRecord]:
        """The ``n`` most recent records, newest first."""
        with self._lock:
            newest_first = list(reversed(self._recent))
        return newest_first[: max(n, 0)]

    def counts(self) -> dict[str, int]:
        """Errors per exception type name since start (or the last ``clear``), beyond the ring's size."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()
            self._counts.clear()


# --- notifying ---------------------------------------------------------------------------------


class ErrorNotifier:
    """Logs notified errors and, if a webhook is configured, POSTs them as JSON off the caller's thread.

    A notifier must never break the code that failed: every webhook problem (refused, hanging,
    non-2xx) is logged and swallowed, each request has a timeout, and at most
    ``max_pending`` deliveries run at once (an error storm drops notifications, not threads).
    """

    def __init__(
        self, *, webhook_url: str | None = None, timeout_seconds: float = 2.0, max_pending: int = 8
    ) -> None:
        self._lock = threading.Lock()
        self._pending: set[threading.Thread] = set()
        self.max_pending = max_pending
        self.configure(webhook_url=webhook_url, timeout_seconds=timeout_seconds)

    def configure(self, *, webhook_url: str | None, timeout_seconds: float) -> None:
        # urllib also opens file:// and ftp:// URLs; a webhook is only ever http(s).
        if webhook_url and urllib.parse.urlsplit(webhook_url).scheme not in ("http", "https"):
            raise ConfigurationError(
                f"error_webhook_url must be an http:// or https:// URL, got {webhook_url!r}"
            )
        if timeout_seconds <= 0:
            raise ConfigurationError(
                f"error_webhook_timeout_seconds must be positive, got {timeout_seconds}"
            )
        self.webhook_url = webhook_url or None
        self.timeout_seconds = timeout_seconds

    def notify(self, record: ErrorRecord) -> threading.Thread | None:
        """Log the record and start its webhook delivery; returns the delivery thread, if any."""
        logger.error(
            "error notification %s: %s in %s: %s",
            record.error_id, record.error_type, record.context, record.message,
        )
        if self.webhook_url is None:
            return None
        with self._lock:
            if len(self._pending) >= self.max_pending:
                logger.warning("error webhook busy; notification %s dropped", record.error_id)
                return None
            thread = threading.Thread(
                target=self._deliver, args=(record,), name=f"error-webhook-{record.error_id}",
                daemon=True,  # a hanging webhook must not keep the process alive at exit
            )
            self._pending.add(thread)
        thread.start()
        return thread

    def send(self, record: ErrorRecord) -> bool:
        """POST the record synchronously; True on a 2xx answer, False (logged) on any failure."""
        if self.webhook_url is None:
            return False
        body = json.dumps(record.model_dump(mode="json")).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "nba-mcp-error-notifier"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= response.status < 300
        except Exception as exc:  # noqa: BLE001 - whatever the webhook does, the caller must not see it
            logger.warning("error webhook failed for %s: %s", record.error_id, exc)
            return False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for in-flight deliveries (tests, shutdown); True if none is left running."""
        with self._lock:
            pending = list(self._pending)
        for thread in pending:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in pending)

    def _deliver(self, record: ErrorRecord) -> None:
        try:
            self.send(record)
        finally:
            with self._lock:
                self._pending.discard(threading.current_thread())


error_recorder = ErrorRecorder()
error_notifier = ErrorNotifier()


def configure_error_handling(settings: Settings) -> None:
    """Apply the webhook URL and timeout and the ring size from settings to the module defaults."""
    error_notifier.configure(
        webhook_url=settings.error_webhook_url,
        timeout_seconds=settings.error_webhook_timeout_seconds,
    )
    error_recorder.set_limit(settings.recent_errors_limit)


def reset_error_handling() -> None:
    """Back to the import-time defaults: no webhook, empty ring of 100 (for tests)."""
    error_notifier.configure(webhook_url=None, timeout_seconds=2.0)
    error_recorder.set_limit(100)
    error_recorder.clear()


