"""The outermost ASGI layer of the HTTP transports: nobody gets memory or sessions before the token.

In order, for every HTTP request:
1. ``Host`` must be one of ours (421), on every path: ``/health`` and ``/metrics`` too, so a DNS
   rebinding page cannot read them.
2. On the MCP paths the bearer token is checked from the headers (401) *before a byte of the body is
   read*: 60 unauthenticated connections used to cost 8.6 MB each.
3. The body is read with a size bound (413, declared or streamed) and a time bound (408), then
   handed to the app.
4. A request that would open a session (streamable HTTP POST without a session id, or an SSE
   stream) is refused (429, naming ``max_sessions_per_principal``) once its principal has that many
   open: one token opening sessions in a loop cannot lock the others out.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import anyio

logger = logging.getLogger(__name__)

MCP_PATHS = ("/mcp", "/sse", "/messages")
_TOKEN_IN_QUERY = re.compile(r"((?:access_token|token|api_key)=)[^&\s\"]+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Access-log filter: a token sent in the query string (``?access_token=``) is never written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


class RequestGuard:
    def __init__(self, app: Any, *, verifier: Any, settings: Any, allowed_hosts: list[str],
                 max_body_bytes: int, session_manager: Any = None) -> None:
        self.app = app
        self.verifier = verifier
        self.settings = settings
        self.allowed_hosts = set(allowed_hosts)
        self.max_body_bytes = max_body_bytes
        self.session_manager = session_manager
        self.sse_streams: Counter[str] = Counter()
        if session_manager is not None:
            _cap_sessions_per_principal(session_manager, settings.max_sessions_per_principal)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host not in self.allowed_hosts:
            return await _respond(send, 421, "Invalid Host header")
        path = scope.get("path", "")
        if not path.startswith(MCP_PATHS):
            return await self.app(scope, receive, send)
        principal = await self._principal(headers)
        if principal is None:
            return await _respond(send, 401, "a valid bearer token is required", {b"www-authenticate": b"Bearer"})
        cap = self.settings.max_sessions_per_principal
        if scope.get("method") == "GET" and path.startswith("/sse"):
            if self.sse_streams[principal] >= cap:
                return await _too_many(send, principal, cap)
            self.sse_streams[principal] += 1
            try:
                return await self.app(scope, receive, send)
            finally:
                self.sse_streams[principal] -= 1
        if (scope.get("method") == "POST" and path.startswith("/mcp") and b"mcp-session-id" not in headers
                and self.session_manager is not None and self.open_sessions(principal) >= cap):
            return await _too_many(send, principal, cap)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            return await self._with_bounded_body(headers, scope, receive, send)
        return await self.app(scope, receive, send)

    def open_sessions(self, principal: str) -> int:
        owners = getattr(self.session_manager, "_session_owners", {})
        return sum(1 for ctx in list(owners.values()) if _subject(ctx) == principal)

    async def _principal(self, headers: dict[bytes, bytes]) -> str | None:
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        access = await self.verifier.verify_token(token.strip())
        return None if access is None else (access.subject or access.client_id)

    async def _with_bounded_body(self, headers, scope, receive, send) -> None:
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _respond(send, 413, f"request body larger than {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        timeout = self.settings.http_body_timeout_seconds
        try:
            with anyio.fail_after(timeout):
                more = True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        return await _respond(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            return await _respond(send, 408, f"request body not received within {timeout:g} s "
                                             "(settings.http_body_timeout_seconds)")
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _cap_sessions_per_principal(manager: Any, cap: int) -> None:
    """Backstop inside the SDK's admission (under its lock): no principal gets more than ``cap``."""
    admit = getattr(manager, "_admit_session", None)
    if admit is None:
        return

    def admit_capped(requestor):
        subject = _subject(requestor)
        if subject is not None:
            owned = sum(1 for ctx in manager._session_owners.values() if _subject(ctx) == subject)
            if owned >= cap:
                return None
        return admit(requestor)

    manager._admit_session = admit_capped


def _subject(ctx: Any) -> str | None:
    """The principal of the SDK's session owner record (a TypedDict: client_id, issuer, subject)."""
    if isinstance(ctx, dict):
        return ctx.get("subject") or ctx.get("client_id")
    return getattr(ctx, "subject", None) or getattr(ctx, "client_id", None)


async def _too_many(send, principal: str, cap: int) -> None:
    logger.warning("refused a session for %s: %d open (max_sessions_per_principal)", principal, cap)
    await _respond(send, 429, f"too many open sessions for this principal: at most {cap} "
                              "(settings.max_sessions_per_principal); close one (DELETE) or wait for it to expire",
                   {b"retry-after": b"5"})


async def _respond(send, status: int, text: str, extra: dict[bytes, bytes] | None = None) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *((extra or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
