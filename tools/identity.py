"""Who is calling: identity comes from the transport, never from tool arguments.

- Streamable HTTP / SSE: a bearer token is required (no token -> 401 from ``tools.http_guard``).
  ``SettingsTokenVerifier`` maps it to a principal and its roles: first the static tokens
  (``tools.static_tokens``: SHA-256 digests in ``settings.http_tokens`` / ``http_tokens_file``, or
  one plaintext token from ``NBA_MCP_HTTP_TOKEN``; re-read on change, with expiry), then, when
  ``settings.jwt`` names an identity provider, its JWT access tokens (``tools.jwt_auth``).
  Tokens are never logged.
- stdio: the configured local principal (``settings.local_principal`` / ``local_role``).
- In-process (tests, embedding): a principal already set with ``rbac.acting_as`` is kept.

``IdentityMiddleware`` puts the resolved principal in the request context (``rbac.acting_as``) for
every request and hides from ``tools/list`` the tools that principal may not call.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server import rbac
from mcp_server.settings import Settings
from tools.static_tokens import StaticTokens

logger = logging.getLogger(__name__)


class SettingsTokenVerifier:
    """The SDK's ``TokenVerifier`` protocol over every token source ``Settings`` configures: static
    tokens first (a dictionary lookup), then the identity provider's JWTs (a signature check)."""

    def __init__(self, settings: Settings) -> None:
        self.static = StaticTokens(settings)
        self.jwt = None
        if settings.jwt:  # imported here: PyJWT and cryptography cost ~45 ms of every start without one
            from tools.jwt_auth import JwtVerifier

            self.jwt = JwtVerifier(settings.jwt, log_interval=settings.log_repeat_interval_seconds)

    @property
    def configured(self) -> bool:
        return self.static.configured or self.jwt is not None

    def describe(self) -> str:
        """What is accepted, for the start-up log (no secrets)."""
        parts = [self.static.describe()]
        if self.jwt is not None:
            parts.append(f"JWTs of {self.jwt.settings.issuer} for audience {self.jwt.settings.audience}")
        return "; ".join(parts)

    def reload_soon(self) -> None:
        """SIGHUP: re-read the token file and the JWKS on the next request."""
        self.static.reload_soon()
        if self.jwt is not None:
            self.jwt.keys.expire()

    async def verify_token(self, token: str) -> AccessToken | None:
        entry = self.static.lookup(token)
        if entry is not None:
            return AccessToken(
                token=f"sha256:{entry.digest.hex()[:8]}",  # a fingerprint: the token itself is kept nowhere
                client_id=entry.principal,
                subject=entry.principal,
                scopes=list(entry.roles),
                expires_at=int(entry.expires.timestamp()) if entry.expires else None,
                claims={"roles": list(entry.roles)},
            )
        if self.jwt is not None:
            return await self.jwt.verify_token(token)
        logger.debug("rejected a bearer token (no configured token matches)")  # the HTTP guard logs it, summarized
        return None


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
