"""The outermost ASGI layer of the HTTP transports: nobody gets memory or sessions before the token.

In order, for every HTTP request:
1. ``Host`` must be one of ours (421), on every path: ``/health`` and ``/metrics`` too, so a DNS
   rebinding page cannot read them.
2. OAuth discovery paths (``/.well-known/oauth-protected-resource``, ``…/oauth-authorization-server``,
   ``…/openid-configuration``, with any suffix) answer 404 at once, except the Protected Resource
   Metadata while an identity provider is configured (``settings.jwt``): it names that provider,
   which is where a client finds the authorization server's own metadata. This server issues no
   tokens, so a client without an identity provider to go to must not start an OAuth flow.
3. On the MCP paths the bearer token is checked from the headers (401) *before a byte of the body is
   read*: 60 unauthenticated connections used to cost 8.6 MB each. The 401 names the realm in
   ``WWW-Authenticate`` (``error="invalid_token"`` when a token was sent and is wrong, and
   ``resource_metadata="<url>"`` with an identity provider, as the MCP authorization spec asks) and
   its JSON body says how to send a token.
4. A session id must name an open session of the same principal (else 404, before the body): a
   made-up id used to skip the session cap and let 40 slow 8 MB bodies pin 420 MB.
   A request that would open a session (streamable HTTP POST without a session id, or an SSE
   stream) is refused (429, naming ``max_sessions_per_principal``) once its principal has that many
   open: one token opening sessions in a loop cannot lock the others out.
5. Admission per principal (429 naming the setting, with ``Retry-After``): requests being served
   at once (``max_requests_per_principal``; long-lived GET streams are bounded by the session cap
   instead) and request body bytes in flight (``max_body_bytes_per_principal``, reserved from the
   declared length before reading, counted as chunks arrive otherwise).
6. The body is read with a size bound (413, declared or streamed) and a time bound (408), then
   handed to the app.

Refusals made before the body was read close the connection, so a client cannot keep trickling it.
Refusals are logged once per principal and interval, then summarized with a count
(``settings.log_repeat_interval_seconds``).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcp_server import rbac
from mcp_server.log_bounds import RepeatedEvents
from tools.resource_server import PROTECTED_RESOURCE_METADATA_PATH, bearer_challenge, how_to_authenticate

logger = logging.getLogger(__name__)

MCP_PATHS = ("/mcp", "/sse", "/messages")
OAUTH_DISCOVERY_PATHS = (PROTECTED_RESOURCE_METADATA_PATH, "/.well-known/oauth-authorization-server",
                         "/.well-known/openid-configuration")
RETRY_AFTER_SECONDS = b"2"
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


class SummarizeDenials(logging.Filter):
    """Filter for the SDK's tool-failure log lines: a permission denial is written once per principal
    and interval, the rest counted into one summary line (the audit log keeps the same count)."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.denials = RepeatedEvents(interval, self._summary)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().lower()
        if "permission denied" not in text and "permission_denied" not in text:
            return True
        principal = rbac.current_principal()
        return self.denials.admit(principal.id if principal else None)

    def _summary(self, principal: Any, count: int, _details: dict[str, int], seconds: float) -> None:
        logging.getLogger(__name__).info("denied %d more tool calls of %s in %.0f s", count, principal, seconds)


class RequestGuard:
    def __init__(self, app: Any, *, verifier: Any, settings: Any, allowed_hosts: list[str],
                 max_body_bytes: int, session_manager: Any = None, resource_metadata_url: str | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.settings = settings
        self.allowed_hosts = set(allowed_hosts)
        self.max_body_bytes = max_body_bytes
        self.session_manager = session_manager
        # Set once an identity provider publishes Protected Resource Metadata: 401s point to it and
        # the discovery paths reach the app.
        self.resource_metadata_url = resource_metadata_url
        self.sse_streams: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self.refusals = RepeatedEvents(settings.log_repeat_interval_seconds, _log_refusal_summary)
        if session_manager is not None:
            _cap_sessions_per_principal(session_manager, settings.max_sessions_per_principal)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host not in self.allowed_hosts:
            return await _respond(send, 421, "misdirected_request", "Invalid Host header")
        path = scope.get("path", "")
        if path.startswith(OAUTH_DISCOVERY_PATHS) and not (
                self.resource_metadata_url is not None and path.startswith(PROTECTED_RESOURCE_METADATA_PATH)):
            return await _respond(send, 404, "not_found",
                                  "no OAuth metadata here: " + how_to_authenticate(self.resource_metadata_url))
        if not path.startswith(MCP_PATHS):
            return await self.app(scope, receive, send)
        principal, token_sent = await self._principal(headers)
        if principal is None:
            return await self._unauthorized(scope, send, token_sent)
        method = scope.get("method")
        cap = self.settings.max_sessions_per_principal
        if method == "GET" and path.startswith("/sse"):
            if self.sse_streams[principal] >= cap:
                return await self._too_many_sessions(send, principal, cap)
            self.sse_streams[principal] += 1
            try:
                return await self.app(scope, receive, send)
            finally:
                self.sse_streams[principal] -= 1
        if self.session_manager is not None and path.startswith("/mcp") and _stateful(headers):
            session_id = headers.get(b"mcp-session-id")
            if session_id is not None and not self.owns_session(principal, session_id.decode("latin-1")):
                # What the SDK answers for an unknown session, but before the body is read.
                return await _respond(send, 404, "session_not_found", "Session not found: initialize a new session")
            if session_id is None and method == "POST" and self.open_sessions(principal) >= cap:
                return await self._too_many_sessions(send, principal, cap)
        if method == "GET":
            return await self.app(scope, receive, send)  # a long-lived stream, one per session at most
        limit = self.settings.max_requests_per_principal
        if self.requests[principal] >= limit:
            return await self._too_many(send, principal, "max_requests_per_principal",
                                        f"at most {limit} requests of one principal are served at once")
        self.requests[principal] += 1
        try:
            if method in ("POST", "PUT", "PATCH"):
                return await self._with_bounded_body(principal, headers, scope, receive, send)
            return await self.app(scope, receive, send)
        finally:
            self.requests[principal] -= 1

    def open_sessions(self, principal: str) -> int:
        owners = getattr(self.session_manager, "_session_owners", {})
        return sum(1 for ctx in list(owners.values()) if _subject(ctx) == principal)

    def owns_session(self, principal: str, session_id: str) -> bool:
        owners = getattr(self.session_manager, "_session_owners", {})
        return session_id in owners and _subject(owners[session_id]) == principal

    async def _principal(self, headers: dict[bytes, bytes]) -> tuple[str | None, bool]:
        """(principal or None, whether a bearer token was sent at all)."""
        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, False
        access = await self.verifier.verify_token(token.strip())
        return (None if access is None else (access.subject or access.client_id)), True

    async def _unauthorized(self, scope, send, token_sent: bool) -> None:
        error, description, challenge = bearer_challenge(token_sent, self.resource_metadata_url)
        client = (scope.get("client") or ("?",))[0]
        if token_sent and self.refusals.admit(("bad token", client)):
            logger.info("refused a bearer token from %s (no configured token or valid JWT matches)", client)
        await _respond(send, 401, error, description, {b"www-authenticate": challenge})

    async def _too_many_sessions(self, send, principal: str, cap: int) -> None:
        await self._too_many(send, principal, "max_sessions_per_principal",
                             f"too many open sessions for this principal: at most {cap}",
                             "close one (DELETE) or wait for it to expire")

    async def _too_many(self, send, principal: str, setting: str, what: str, advice: str = "retry later") -> None:
        if self.refusals.admit(principal, setting):
            logger.warning("refused a request of %s: %s (%s)", principal, what, setting)
        await _respond(send, 429, "too_many_requests", f"{what} (settings.{setting}); {advice}",
                       {b"retry-after": RETRY_AFTER_SECONDS})

    async def _with_bounded_body(self, principal: str, headers, scope, receive, send) -> None:
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _respond(send, 413, "payload_too_large",
                                  f"request body larger than {self.max_body_bytes} bytes")
        budget = self.settings.max_body_bytes_per_principal
        reserved = int(declared) if declared.isdigit() else 0
        if self.body_bytes[principal] + reserved > budget:
            return await self._too_many(send, principal, "max_body_bytes_per_principal",
                                        f"at most {budget} bytes of request bodies of one principal in flight")
        self.body_bytes[principal] += reserved
        held = reserved
        try:
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
                            return await _respond(send, 413, "payload_too_large",
                                                  f"request body larger than {self.max_body_bytes} bytes")
                        if size > held:  # undeclared (chunked) or longer than declared
                            self.body_bytes[principal] += size - held
                            held = size
                            if self.body_bytes[principal] > budget:
                                return await self._too_many(
                                    send, principal, "max_body_bytes_per_principal",
                                    f"at most {budget} bytes of request bodies of one principal in flight")
                        chunks.append(chunk)
                        more = message.get("more_body", False)
            except TimeoutError:
                return await _respond(send, 408, "request_timeout", f"request body not received within {timeout:g} s "
                                                                    "(settings.http_body_timeout_seconds)")
            body = b"".join(chunks)
            chunks.clear()
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.body_bytes[principal] -= held
            if self.body_bytes[principal] <= 0:
                del self.body_bytes[principal]


def _stateful(headers: dict[bytes, bytes]) -> bool:
    """Whether the SDK routes this request to its session-keeping path (no protocol header, or one of
    the initialize-handshake versions); later protocol versions are stateless and ignore session ids."""
    version = headers.get(b"mcp-protocol-version")
    return version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS


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


def _log_refusal_summary(key: Any, count: int, details: dict[str, int], seconds: float) -> None:
    if isinstance(key, tuple):  # ("bad token", client address)
        logger.info("refused %d more bearer tokens from %s in %.0f s", count, key[1], seconds)
    else:
        logger.warning("refused %d more requests of %s in %.0f s: %s", count, key, seconds,
                       ", ".join(f"{setting} x{n}" for setting, n in sorted(details.items())))


async def _respond(send, status: int, error: str, text: str, extra: dict[bytes, bytes] | None = None) -> None:
    """A JSON refusal (``{"error": …, "error_description": …}``, as OAuth errors read) that closes the
    connection: the request's body, if any, is never read."""
    body = json.dumps({"error": error, "error_description": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *((extra or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
