"""Settings of who may call the HTTP server: static bearer tokens and an identity provider's JWTs.

``TokenEntry`` is one static token (its SHA-256, its principal and roles, an optional expiry);
``JwtSettings`` describes an OAuth 2.1 authorization server whose access tokens (JWTs signed with
a key from its JWKS) this server accepts, and how their claims become a principal and roles.
Both are validated here, at start: a setting that could only fail on a request fails now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# Asymmetric algorithms only: the server holds public keys, so nobody who can read its config can
# mint a token. HS* would make the key a shared secret (and a public key used as an HMAC secret is
# the classic algorithm-confusion attack); "none" is no signature at all.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _http_url(value: str) -> str:
    """An absolute https URL (http only on loopback, for tests and a local identity provider)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"must use https (http only on localhost / 127.0.0.1 / ::1), got {value!r}")
    if parts.fragment:
        raise ValueError(f"must not carry a #fragment, got {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
ClaimPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class TokenEntry(BaseModel):
    """An HTTP bearer token, stored as its SHA-256 hex digest, and who it stands for."""

    model_config = ConfigDict(extra="forbid")  # a misspelt `expires` must not silently mean "never"

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(min_length=1)
    expires: datetime | None = Field(
        default=None, description="Refused from this instant on (TOML: expires = 2027-01-01T00:00:00Z)"
    )

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"expires must name its time zone (e.g. {value.isoformat()}Z), got {value.isoformat()}")
        return value


class JwtSettings(BaseModel):
    """An identity provider whose JWT access tokens are accepted (``[jwt]`` in the config file,
    ``NBA_MCP_JWT__<FIELD>`` in the environment)."""

    model_config = ConfigDict(extra="forbid")

    issuer: HttpUrl = Field(description="The tokens' `iss`, exactly as the identity provider writes it")
    jwks_url: HttpUrl = Field(description="Where the provider publishes its signing keys (JWKS)")
    resource_url: HttpUrl = Field(
        description="This server's MCP URL as clients reach it (e.g. https://mcp.example.com/mcp): published "
        "as `resource` in the Protected Resource Metadata"
    )
    audience: str | None = Field(
        default=None, min_length=1,
        description="The `aud` tokens must carry; default: resource_url (RFC 8707). A client id for "
        "providers that cannot put a URL in `aud` (Dex)",
    )
    algorithms: list[str] = Field(default=["RS256", "PS256", "ES256", "EdDSA"], min_length=1)
    clock_skew_seconds: float = Field(default=60.0, ge=0, le=600, description="Leeway for exp / nbf / iat")
    principal_claim: ClaimPath = Field(
        default="sub", description="The claim naming the principal: sub, preferred_username, email, …"
    )
    roles_claim: ClaimPath = Field(
        default="groups", description="The claim holding groups / roles / scopes: a list or a space-separated "
        "string, a dotted path for nested claims (realm_access.roles)",
    )
    role_map: dict[str, list[str]] = Field(
        default_factory=dict, description="A value of roles_claim -> this server's roles; other values grant nothing"
    )
    default_roles: list[str] = Field(default_factory=list, description="Roles every valid token gets")
    jwks_max_age_seconds: float = Field(default=3600.0, ge=10, le=86_400, description="Keys are re-fetched after this")
    jwks_min_refresh_seconds: float = Field(
        default=30.0, ge=0, le=3600,
        description="An unknown key id re-fetches the JWKS at most once per this interval (a flood of "
        "made-up key ids cannot hammer the provider)",
    )
    jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    jwks_attempts: int = Field(default=2, ge=1, le=5, description="Tries per JWKS fetch (a short pause between)")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"algorithms {refused} are refused: only asymmetric signatures are accepted "
                f"({', '.join(ASYMMETRIC_ALGORITHMS)}); HS* would make the verification key a shared secret "
                "and 'none' is no signature"
            )
        return list(dict.fromkeys(value))

    @field_validator("role_map")
    @classmethod
    def _roles_listed(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = sorted(name for name, roles in value.items() if not roles or not all(roles))
        if empty:
            raise ValueError(f"role_map entries {empty} must list at least one non-empty role name")
        return value

    @model_validator(mode="after")
    def _default_audience(self) -> JwtSettings:
        if self.audience is None:
            self.audience = self.resource_url
        return self

    @property
    def granted_roles(self) -> set[str]:
        """Every role a token can get (for the check that they exist in the role table)."""
        return set(self.default_roles).union(*self.role_map.values())
