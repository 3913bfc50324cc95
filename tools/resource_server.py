"""This server as an OAuth 2.1 resource server: what it advertises and how it says "no".

- ``resource_server_auth``: the SDK's ``AuthSettings``. With an identity provider (``settings.jwt``)
  they name that provider and our resource URL, and the SDK serves the Protected Resource Metadata
  (RFC 9728) at ``/.well-known/oauth-protected-resource<resource path>``; ``register_root_metadata``
  serves the same document at the bare well-known path. Without one nothing is advertised: the
  operator issues static tokens, and no client should start an OAuth flow.
- ``bearer_challenge``: the ``WWW-Authenticate`` of a 401, with ``resource_metadata="<url>"`` when
  there is metadata to point to (the MCP authorization spec's discovery starts there).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.settings import AuthSettings

from mcp_server.settings import Settings

REALM = "nba-mcp"
PROTECTED_RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"
HOW_TO_AUTHENTICATE = ("send the header 'Authorization: Bearer <token>' with a token the server's operator "
                       "issued (static bearer tokens; this server runs no OAuth authorization server)")
HOW_TO_AUTHENTICATE_WITH_IDP = ("send the header 'Authorization: Bearer <token>' with an access token of the "
                                "authorization server named in resource_metadata, or a token the server's "
                                "operator issued")


def resource_server_auth(settings: Settings, host: str | None, port: int | None) -> AuthSettings:
    """The audience is checked by our own verifier (``validate_token_resource=False``: static tokens
    carry no resource indicator)."""
    if settings.jwt is not None:
        return AuthSettings(issuer_url=settings.jwt.issuer, resource_server_url=settings.jwt.resource_url,
                            validate_token_resource=False)
    base = f"http://{host or settings.http_host}:{port or settings.http_port}"
    return AuthSettings(issuer_url=base, resource_server_url=None)


def resource_metadata_url(settings: Settings) -> str | None:
    """Where the Protected Resource Metadata is (None without an identity provider)."""
    if settings.jwt is None:
        return None
    parts = urlsplit(settings.jwt.resource_url)
    path = "" if parts.path == "/" else parts.path  # as the SDK's build_resource_metadata_url, unnormalized
    return f"{parts.scheme}://{parts.netloc}{PROTECTED_RESOURCE_METADATA_PATH}{path}"


def register_root_metadata(server: Any, settings: Settings) -> None:
    """The same metadata at the bare well-known path when the resource URL has a path: RFC 9728
    clients ask at ``…/oauth-protected-resource/mcp``, clients of earlier MCP drafts at the root."""
    from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
    from mcp.shared.auth import ProtectedResourceMetadata

    if settings.jwt is None or urlsplit(settings.jwt.resource_url).path in ("", "/"):
        return  # nothing to publish, or the SDK's route is the bare path already
    # Strings, validated by the model itself: it keeps a path-less issuer without a trailing slash
    # (issuers are compared as exact strings).
    metadata = ProtectedResourceMetadata.model_validate(
        {"resource": settings.jwt.resource_url, "authorization_servers": [settings.jwt.issuer]})
    server.custom_route(PROTECTED_RESOURCE_METADATA_PATH, methods=["GET"])(ProtectedResourceMetadataHandler(metadata).handle)


def how_to_authenticate(resource_metadata: str | None) -> str:
    return HOW_TO_AUTHENTICATE if resource_metadata is None else HOW_TO_AUTHENTICATE_WITH_IDP


def bearer_challenge(token_sent: bool, resource_metadata: str | None) -> tuple[str, str, bytes]:
    """(error code, description, ``WWW-Authenticate`` value) of a 401."""
    challenge = f'Bearer realm="{REALM}"'
    if token_sent:
        description = ("the bearer token is not valid (unknown, expired, or no longer configured); "
                       + how_to_authenticate(resource_metadata))
        challenge += f', error="invalid_token", error_description="{quoted(description)}"'
    else:
        description = "a valid bearer token is required: " + how_to_authenticate(resource_metadata)
        challenge += f', error_description="{quoted(description)}"'
    if resource_metadata is not None:
        challenge += f', resource_metadata="{resource_metadata}"'
    return ("invalid_token" if token_sent else "unauthorized"), description, challenge.encode("latin-1")


def quoted(text: str) -> str:
    """``text`` as an RFC 9110 quoted-string body (no quotes or backslashes to escape)."""
    return text.replace("\\", "/").replace('"', "'")
