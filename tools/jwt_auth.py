"""JWT access tokens from the team's identity provider (this server as an OAuth 2.1 resource server).

A token is accepted when its header names an accepted asymmetric algorithm and a key of the
provider's JWKS (``tools.jwks``), its signature verifies with that key, and its ``iss``, ``aud``,
``exp`` (and ``nbf`` / ``iat`` when present) hold within ``clock_skew_seconds``. The principal is
the claim ``principal_claim``; the roles are the values of ``roles_claim`` (a list, or a
space-separated string as OAuth scopes are) mapped through ``role_map``, plus ``default_roles``.

The verification is PyJWT's: the algorithm comes from our list, never from the token alone, and
the key is bound to it, so ``alg: none`` and an HS256 token "signed" with the public key fail.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from mcp_server.identity_settings import JwtSettings
from mcp_server.log_bounds import RepeatedEvents
from tools.jwks import JwksCache

logger = logging.getLogger(__name__)

MAX_PRINCIPAL_CHARS = 128
REQUIRED_CLAIMS = ["exp", "iss", "aud"]


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts: a static token never gets near the JWT parser."""
    return token.count(".") == 2 and len(token) <= 16_384


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """``claims`` followed along a dotted path (``realm_access.roles``); None when absent. A claim
    whose own name contains the dots (``https://example.com/roles``-style names) wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claim_values(value: Any) -> list[str]:
    """A roles claim as a list: a JSON list of strings, or a space-separated string (``scope``)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


class JwtVerifier:
    """The SDK's ``TokenVerifier`` protocol over one identity provider's JWTs."""

    def __init__(self, settings: JwtSettings, *, log_interval: float = 60.0) -> None:
        self.settings = settings
        self.keys = JwksCache(settings)
        # Why a token was refused is what an operator needs (a wrong `aud` is the usual setup
        # mistake), but a client retrying a bad token must not flood the log: once per reason and interval.
        self._refusals = RepeatedEvents(log_interval, _log_refusal_summary)

    def _refused(self, reason: str, message: str, *args: Any) -> None:
        if self._refusals.admit(reason):
            logger.info("refused a JWT: " + message, *args)

    def roles_of(self, claims: Mapping[str, Any]) -> list[str]:
        granted = dict.fromkeys(self.settings.default_roles)
        for value in claim_values(claim_at(claims, self.settings.roles_claim)):
            granted.update(dict.fromkeys(self.settings.role_map.get(value, ())))
        return list(granted)

    async def verify_token(self, token: str) -> AccessToken | None:
        if not looks_like_jwt(token):
            return None
        claims = await self._verified_claims(token)
        if claims is None:
            return None
        principal = claim_at(claims, self.settings.principal_claim)
        if not isinstance(principal, str) or not principal or len(principal) > MAX_PRINCIPAL_CHARS:
            self._refused("principal", "its %r claim names no principal", self.settings.principal_claim)
            return None
        roles = self.roles_of(claims)
        return AccessToken(
            token="jwt:" + hashlib.sha256(token.encode()).hexdigest()[:8],  # a fingerprint, never the token
            client_id=principal,
            subject=principal,
            scopes=roles,
            # The SDK's auth backend refuses a token past expires_at; ours allows the clock skew, so
            # both say the same thing about a token within it.
            expires_at=int(claims["exp"] + self.settings.clock_skew_seconds),
            resource=self.settings.resource_url,
            claims={"roles": roles, "iss": claims["iss"]},
        )

    async def _verified_claims(self, token: str) -> dict[str, Any] | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm = header.get("alg")
        if algorithm not in self.settings.algorithms:
            self._refused("algorithm", "signed with %r (accepted: %s)", algorithm, ", ".join(self.settings.algorithms))
            return None
        kid = header.get("kid")
        key = await self.keys.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            self._refused("key", "key id %r is not in the JWKS %s", kid, self.settings.jwks_url)
            return None
        try:
            return jwt.decode(
                token, key.for_algorithm(algorithm), algorithms=[algorithm],
                audience=self.settings.audience, issuer=self.settings.issuer,
                leeway=self.settings.clock_skew_seconds,
                options={"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except (jwt.PyJWTError, jwt.PyJWKError) as exc:
            self._refused(type(exc).__name__, "%s (key id %r)", exc, kid)
            return None


def _log_refusal_summary(reason: Any, count: int, _details: dict[str, int], seconds: float) -> None:
    logger.info("refused %d more JWTs (%s) in %.0f s", count, reason, seconds)
