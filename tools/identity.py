"""Who is calling: identity comes from the transport, never from tool arguments.

- Streamable HTTP / SSE: a bearer token is required (no token -> 401 from the SDK's auth
  middleware). ``SettingsTokenVerifier`` maps the token to a principal and its roles; tokens are
  configured as SHA-256 digests (``settings.http_tokens``) or as one plaintext token from the
  environment (``NBA_MCP_HTTP_TOKEN``), compared in constant time and never logged.
- stdio: the configured local principal (``settings.local_principal`` / ``local_role``).
- In-process (tests, embedding): a principal already set with ``rbac.acting_as`` is kept.

``IdentityMiddleware`` puts the resolved principal in the request context (``rbac.acting_as``) for
every request and hides from ``tools/list`` the tools that principal may not call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server import rbac
from mcp_server.settings import Settings

logger = logging.getLogger(__name__)

PLAINTEXT_TOKEN_PRINCIPAL = "http-token"


class SettingsTokenVerifier:
    """The SDK's ``TokenVerifier`` protocol over the tokens configured in ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self._entries: list[tuple[bytes, str, tuple[str, ...]]] = [
            (bytes.fromhex(entry.sha256), entry.principal, tuple(entry.roles))
            for entry in settings.http_tokens
        ]
        if settings.http_token is not None and settings.http_token.get_secret_value():
            digest = hashlib.sha256(settings.http_token.get_secret_value().encode()).digest()
            self._entries.append((digest, PLAINTEXT_TOKEN_PRINCIPAL, (settings.http_token_role,)))

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        match: tuple[bytes, str, tuple[str, ...]] | None = None
        # Compare against every entry (no early exit) so timing does not reveal which matched.
        for entry in self._entries:
            if hmac.compare_digest(digest, entry[0]) and match is None:
                match = entry
        if match is None:
            logger.debug("rejected a bearer token (no configured token matches)")  # the HTTP guard logs it, summarized
            return None
        _, principal, roles = match
        return AccessToken(
            token=f"sha256:{digest.hex()[:8]}",  # a fingerprint: the token itself is kept nowhere
            client_id=principal,
            subject=principal,
            scopes=list(roles),
            claims={"roles": list(roles)},
        )


def principal_from_token(token: AccessToken) -> rbac.Principal:
    roles = (token.claims or {}).get("roles") or token.scopes
    return rbac.Principal(id=token.subject or token.client_id, roles=tuple(roles))


def resolve_principal(settings: Settings) -> rbac.Principal:
    """The principal of the current request: bearer token, else in-process identity, else local."""
    token = get_access_token()
    if token is not None:
        return principal_from_token(token)
    existing = rbac.current_principal()
    if existing is not None:
        return existing
    return rbac.local_principal(settings)


class IdentityMiddleware:
    """Server middleware: binds the caller's principal and filters ``tools/list`` by permission."""

    def __init__(self, settings: Settings, tool_permissions: dict[str, rbac.Permission]) -> None:
        self._settings = settings
        self._tool_permissions = tool_permissions  # filled by build_server after registration

    def allowed(self, principal: rbac.Principal, tool_name: str) -> bool:
        permission = self._tool_permissions.get(tool_name)
        return permission is not None and rbac.authorize(principal, permission, rbac.current_role_table())

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        principal = resolve_principal(self._settings)
        with rbac.acting_as(principal):
            result = await call_next(ctx)
        if ctx.method == "tools/list":
            result = self._filter_tools(result, principal)
        return result

    def _filter_tools(self, result: HandlerResult, principal: rbac.Principal) -> HandlerResult:
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return {**result, "tools": [t for t in result["tools"] if self.allowed(principal, t["name"])]}
        tools = getattr(result, "tools", None)
        if tools is not None and hasattr(result, "model_copy"):
            return result.model_copy(update={"tools": [t for t in tools if self.allowed(principal, t.name)]})
        return result


def may_see_server_paths() -> bool:
    """Absolute paths of the server (store file, artifact folders) are shown to principals that may
    write; a viewer gets them with the folders hidden."""
    principal = rbac.current_principal()
    return principal is not None and rbac.authorize(principal, rbac.Permission.WRITE, rbac.current_role_table())


def shown_path(uri: str | None) -> str | None:
    """``uri`` as the caller may see it: whole for writers, else ``scheme:///…/<last part>``."""
    if uri is None or may_see_server_paths():
        return uri
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    if scheme not in ("", "file", "sqlite"):
        return uri  # a remote server's URL is no server path
    last = rest.rstrip("/").rsplit("/", 1)[-1]
    return f"{scheme}{sep}/…/{last}" if sep else f"…/{last}"
