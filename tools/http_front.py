"""The HTTP front: uvicorn with bounded connections and timeouts, and the guarded app behind it.

What uvicorn 0.55 offers and what we add (its h11 protocol, subclassed; httptools is not used):

- keep-alive timeout: uvicorn's ``timeout_keep_alive`` (``settings.http_keep_alive_timeout_seconds``);
- header read timeout: none in uvicorn (its keep-alive timer starts only after a response). Every
  connection must deliver its request line and headers within ``http_header_timeout_seconds`` of
  connecting or of its first byte after a response, else it is closed (slowloris);
- body read timeout: ``tools.http_guard`` answers 408 on the MCP paths after
  ``http_body_timeout_seconds``; here a body still trickling a second later on any path (a body the
  app never read, after a 405) closes the connection;
- connection limit: uvicorn's ``limit_concurrency`` answers 503 only after the headers, with the
  descriptor already spent. Here at most ``http_max_connections`` connections stay open, and never
  more than RLIMIT_NOFILE minus ``http_fd_reserve`` (descriptors for the store, logs and worker
  pipes), and asyncio's accept burst is an eighth of that reserve. At the limit a new
  connection displaces the oldest one that carries no request in
  progress (waiting for its headers, or idle between requests): a flood of half-open connections
  cannot keep a developer's ``initialize`` or ``/health`` out. Only when every connection carries
  a request is the new one refused (503, closed);
- accept errors (EMFILE "Too many open files"): asyncio logs each with a traceback and retries a
  second later (130 MB of log in 45 s under a flood). Here the first is logged, the rest counted
  and summarized once per ``log_repeat_interval_seconds``, like every other repeated event.

Measured (``tests/test_reliability_front.py``): 1,100 half-open connections under a 1,024-descriptor
limit, a developer's ``initialize`` and ``/health`` answer well within 2 s (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mcp_server.log_bounds import RepeatedEvents

logger = logging.getLogger(__name__)

# Far above any valid call (the tools' schemas bound every field); refused before JSON parsing.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
# A body the guard has not answered 408 for by then is cut at the transport.
BODY_CUTOFF_GRACE_SECONDS = 1.0
_REFUSED_BODY = b'{"error": "too_many_connections", "error_description": "settings.http_max_connections reached"}'
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"retry-after: 2\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY))


# The kernel's queue of connections waiting to be accepted: long, so a flood does not make a
# client's SYN wait for a retransmission (1 s) while the server catches up.
LISTEN_BACKLOG = 2048


def accept_burst(settings: Any) -> int:
    """How many connections asyncio accepts in one go before any reaches ``connection_made`` (where
    the limit is applied). asyncio takes it from the ``backlog`` argument: an eighth of the reserve, so a
    burst never exhausts the descriptors (uvicorn's default, 2,048, did under a 1,024 limit); the
    kernel queue is lengthened again to ``LISTEN_BACKLOG`` once listening."""
    return max(16, min(LISTEN_BACKLOG, settings.http_fd_reserve // 8))


def lengthen_listen_queue(servers: list[asyncio.base_events.Server]) -> None:
    for server in servers:
        for transport_socket in server.sockets:
            listening = socket.socket(transport_socket.family, transport_socket.type,
                                      fileno=os.dup(transport_socket.fileno()))
            try:
                listening.listen(LISTEN_BACKLOG)  # the same socket: listen() again only resizes its queue
            finally:
                listening.close()


def connection_limit(settings: Any) -> int:
    """``http_max_connections``, held below the process's descriptor limit minus the reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.http_max_connections
    return max(8, min(settings.http_max_connections, soft - settings.http_fd_reserve))


@dataclass
class FrontLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    events: RepeatedEvents
    counts: dict[str, int] = field(default_factory=dict)

    def note(self, event: str, message: str, *args: Any) -> None:
        """Count ``event``; log it the first time per interval (the summary carries the rest)."""
        self.counts[event] = self.counts.get(event, 0) + 1
        if self.events.admit(event):
            logger.warning(message + " (further ones are counted and summarized)", *args)


def front_limits(settings: Any) -> FrontLimits:
    return FrontLimits(
        max_connections=connection_limit(settings),
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds + BODY_CUTOFF_GRACE_SECONDS,
        events=RepeatedEvents(settings.log_repeat_interval_seconds, _log_summary),
    )


def _log_summary(event: Any, count: int, _details: dict[str, int], seconds: float) -> None:
    logger.warning("HTTP front: %d more %s in %.0f s", count, str(event).replace("_", " "), seconds)


class FrontProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body cutoff and a displacing connection limit."""

    limits: ClassVar[FrontLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_kind: str | None = None
        self._idle_since = 0.0

    # --- connections ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections:
            victim = self._oldest_idle()
            if victim is None:
                self.limits.note("refused_connections", "refused a connection: %d open, each serving a request "
                                 "(settings.http_max_connections)", len(self.connections) - 1)
                transport.write(_REFUSED)
                transport.close()
                return
            self.limits.note("displaced_connections", "displaced an idle connection: %d connections open "
                             "(limit %d: settings.http_max_connections, or the descriptor limit minus "
                             "http_fd_reserve)", len(self.connections) - 1, self.limits.max_connections)
            victim._close_now()
        self._arm(self.limits.header_timeout, "header_timeouts")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _carries_no_request(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _oldest_idle(self) -> FrontProtocol | None:
        idle = [c for c in self.connections
                if c is not self and isinstance(c, FrontProtocol) and c._carries_no_request()
                and not c.transport.is_closing()]
        return min(idle, key=lambda c: c._idle_since, default=None)

    def _close_now(self) -> None:
        self._disarm()
        self.transport.abort()
        # asyncio closes the socket one loop iteration later; under a flood that lag (a whole accept
        # burst of displaced connections) exhausted the descriptors. abort() has already taken the
        # socket out of the selector, and the transport's own close later is a no-op.
        sock = getattr(self.transport, "_sock", None)
        if sock is not None:
            sock.close()

    # --- deadlines ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # a request line and headers are on their way
            if self._deadline_kind != "header_timeouts":
                self._arm(self.limits.header_timeout, "header_timeouts")
        elif state is h11.SEND_BODY:
            if self._deadline_kind != "body_timeouts":
                self._arm(self.limits.body_timeout, "body_timeouts")
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()
        if self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # now idle: uvicorn's keep-alive timer takes over

    def _arm(self, seconds: float, kind: str) -> None:
        self._disarm()
        self._deadline_kind = kind
        self._deadline = self.loop.call_later(seconds, self._expired, kind)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_kind = None

    def _expired(self, kind: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        what = "headers" if kind == "header_timeouts" else "body"
        self.limits.note(kind, "closed a connection whose request %s did not arrive in time", what)
        self._close_now()


def front_protocol(limits: FrontLimits) -> type[FrontProtocol]:
    """A protocol class bound to ``limits`` (uvicorn instantiates the class it is given)."""
    return type("BoundFrontProtocol", (FrontProtocol,), {"limits": limits})


def install_accept_error_log(loop: asyncio.AbstractEventLoop, limits: FrontLimits) -> None:
    """asyncio reports a failed ``accept()`` through the loop's exception handler, with a traceback,
    every time: count them instead, and log the first per interval."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            limits.note("accept_errors", "accepting a connection failed: %s (asyncio retries in 1 s)",
                        context.get("exception"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def http_app(server: Any, settings: Any, *, transport: str, host: str, port: int) -> Any:
    """The app for the HTTP transports: Host checks on every path, the token before the body,
    admission per principal, bounded and timed request bodies (``tools.http_guard``)."""
    from tools.http_guard import RequestGuard
    from tools.resource_server import resource_metadata_url
    from tools.server import http_transport_security

    security = http_transport_security(settings, host, port)
    session_manager = None
    if transport == "sse":
        app = server.sse_app(transport_security=security, host=host)
    else:
        app = server.streamable_http_app(
            transport_security=security, host=host, max_request_body_size=MAX_REQUEST_BYTES,
            session_idle_timeout=settings.session_idle_timeout_seconds, max_sessions=settings.max_sessions,
            stateless_http=settings.http_stateless,
        )
        if not settings.http_stateless:  # stateless: no sessions to own or bound
            session_manager = getattr(server._lowlevel_server, "_session_manager", None)  # noqa: SLF001
    # The verifier build_server gave the SDK: one token file watcher, one JWKS cache.
    return RequestGuard(app, verifier=server.token_verifier, settings=settings,
                        allowed_hosts=security.allowed_hosts, max_body_bytes=MAX_REQUEST_BYTES,
                        session_manager=session_manager, resource_metadata_url=resource_metadata_url(settings))


def reload_tokens_on_sighup(verifier: Any) -> None:
    """``kill -HUP <pid>``: the token file and the JWKS are re-read on the next request (the handler
    only sets a flag: reading files or logging inside a signal handler could deadlock on a lock the
    interrupted code holds)."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _signum, _frame: verifier.reload_soon())


def serve_http(server: Any, settings: Any, *, transport: str, host: str, port: int, server_class: type) -> None:
    """Serve ``server`` over HTTP until it stops; ``server_class`` is the uvicorn ``Server`` to run."""
    import anyio
    import uvicorn

    from tools.http_guard import RedactTokens, SummarizeDenials

    app = http_app(server, settings, transport=transport, host=host, port=port)
    reload_tokens_on_sighup(server.token_verifier)
    logger.info("accepting %s", server.token_verifier.describe())
    limits = front_limits(settings)
    # log_config=None: uvicorn's loggers propagate to our handlers (its default access log would
    # write to stdout).
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    # The SDK logs every failed tool call; a principal retrying a denied one must not flood the log.
    logging.getLogger("mcp.server.mcpserver.server").addFilter(
        SummarizeDenials(settings.log_repeat_interval_seconds))
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on",
                            http=front_protocol(limits),
                            timeout_keep_alive=settings.http_keep_alive_timeout_seconds,
                            backlog=accept_burst(settings),
                            timeout_graceful_shutdown=2)

    class FrontServer(server_class):  # type: ignore[misc, valid-type]
        async def startup(self, sockets=None) -> None:
            install_accept_error_log(asyncio.get_running_loop(), limits)
            await super().startup(sockets)
            lengthen_listen_queue(getattr(self, "servers", []))

    logger.info("serving %s on http://%s:%d (at most %d connections)", transport, host, port, limits.max_connections)
    anyio.run(FrontServer(config).serve)
