"""JWT verification in process, against the loopback identity provider (real keys, JWKS over HTTP):
claims to principal and roles, the JWKS cache's rate limit and outage behaviour, and the settings
that are refused at start."""

from __future__ import annotations

import anyio
import jwt
import pytest
from pydantic import ValidationError

from mcp_server.identity_settings import JwtSettings
from mcp_server.settings import Settings
from tests.support.identity_provider import IdentityProvider
from tools.jwt_auth import JwtVerifier, claim_at, claim_values

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:8765/mcp"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


def verifier(idp: IdentityProvider, **overrides) -> JwtVerifier:
    values = {"issuer": idp.issuer, "jwks_url": idp.jwks_url, "resource_url": RESOURCE, **overrides}
    return JwtVerifier(JwtSettings(**values))


@pytest.mark.parametrize("roles_claim, claims, expected", [
    ("realm_access.roles", {"realm_access": {"roles": ["ml-engineers", "other"]}}, ["developer"]),  # Keycloak
    ("groups", {"groups": ["nba-viewers", "ml-engineers"]}, ["viewer", "developer"]),  # Dex, Okta
    ("scope", {"scope": "openid nba.read"}, ["viewer"]),  # OAuth scopes: one space-separated string
    ("https://example.com/roles", {"https://example.com/roles": ["nba-viewers"]}, ["viewer"]),  # Auth0-style name
    ("groups", {"groups": ["unmapped"]}, []),
    ("groups", {}, []),
])
async def test_roles_come_from_the_configured_claim_through_the_map(idp, roles_claim, claims, expected):
    check = verifier(idp, roles_claim=roles_claim,
                     role_map={"ml-engineers": ["developer"], "nba-viewers": ["viewer"], "nba.read": ["viewer"]})
    token = await check.verify_token(idp.token(idp.claims(RESOURCE, **{"realm_access": None, **claims})))
    assert token is not None and token.scopes == expected and token.claims["roles"] == expected


async def test_default_roles_are_added_and_the_principal_claim_is_configurable(idp):
    check = verifier(idp, principal_claim="email", default_roles=["viewer"], roles_claim="realm_access.roles",
                     role_map={"ml-engineers": ["analyst"]})
    token = await check.verify_token(idp.token(idp.claims(RESOURCE, email="alice@example.com")))
    assert token.subject == "alice@example.com" and token.scopes == ["viewer", "analyst"]
    assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is None  # no email claim: no principal
    assert token.expires_at is not None and token.token.startswith("jwt:") and "." not in token.token


async def test_an_audience_other_than_the_resource_url_can_be_required(idp):
    check = verifier(idp, audience="nba-mcp")  # Dex puts the client id in aud
    assert await check.verify_token(idp.token(idp.claims("nba-mcp"))) is not None
    assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is None


async def test_a_token_within_the_clock_skew_is_accepted(idp):
    import time

    claims = idp.claims(RESOURCE, exp=int(time.time()) - 5)
    assert await verifier(idp, clock_skew_seconds=30).verify_token(idp.token(claims)) is not None
    assert await verifier(idp, clock_skew_seconds=0).verify_token(idp.token(claims)) is None


async def test_made_up_key_ids_do_not_hammer_the_provider(idp):
    check = verifier(idp, jwks_min_refresh_seconds=30)
    before = idp.jwks_requests
    assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is not None
    for n in range(20):  # signed by a real key, but naming key ids the provider never published
        made_up = jwt.encode(idp.claims(RESOURCE), idp.keys["rsa-1"], algorithm="RS256", headers={"kid": f"made-up-{n}"})
        assert await check.verify_token(made_up) is None
    assert idp.jwks_requests - before == 1


async def test_concurrent_first_tokens_share_one_fetch(idp):
    check = verifier(idp)
    before = idp.jwks_requests
    results = []

    async def verify() -> None:
        results.append(await check.verify_token(idp.token(idp.claims(RESOURCE))))

    async with anyio.create_task_group() as tasks:
        for _ in range(8):
            tasks.start_soon(verify)
    assert all(results) and len(results) == 8 and idp.jwks_requests - before == 1


async def test_keys_fetched_before_stay_in_use_while_the_provider_is_down(idp, caplog):
    check = verifier(idp, jwks_attempts=2)
    assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is not None
    idp.available = False
    try:
        check.keys.expire()  # what SIGHUP does: fetch again on the next token
        with caplog.at_level("WARNING", logger="tools.jwks"):
            assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is not None
    finally:
        idp.available = True
    failures = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(failures) == 2 and any("keeping the 2 keys" in r.getMessage() for r in caplog.records)


async def test_a_provider_down_from_the_start_is_not_asked_on_every_request(idp, caplog):
    check = verifier(idp, jwks_attempts=2, jwks_min_refresh_seconds=30)
    idp.available = False
    try:
        with caplog.at_level("WARNING", logger="tools.jwks"):
            for _ in range(5):
                assert await check.verify_token(idp.token(idp.claims(RESOURCE))) is None
    finally:
        idp.available = True
    assert len([r for r in caplog.records if "attempt" in r.getMessage()]) == 2  # one fetch of 2 attempts


def test_claim_paths_and_values():
    claims = {"realm_access": {"roles": ["a"]}, "a.b": 1, "scope": "x  y"}
    assert claim_at(claims, "realm_access.roles") == ["a"] and claim_at(claims, "a.b") == 1
    assert claim_at(claims, "realm_access.missing") is None and claim_at(claims, "scope.x") is None
    assert claim_values("x  y") == ["x", "y"] and claim_values(["a", 3]) == ["a"] and claim_values(7) == []


BASE = {"issuer": "https://idp.example.com/realms/team", "jwks_url": "https://idp.example.com/realms/team/certs",
        "resource_url": "https://mcp.example.com/mcp"}


@pytest.mark.parametrize("override, message", [
    ({"algorithms": ["HS256"]}, "only asymmetric"),
    ({"algorithms": ["RS256", "none"]}, "only asymmetric"),
    ({"issuer": "http://idp.example.com/realms/team"}, "must use https"),
    ({"jwks_url": "ftp://idp.example.com/keys"}, "absolute http"),
    ({"role_map": {"group": []}}, "at least one"),
    ({"roles_claim": "realm_access..roles"}, "pattern"),
    ({"clock_skew_seconds": 3600}, "less than or equal"),
    ({"audiences": ["x"]}, "Extra inputs"),
])
def test_unsafe_or_wrong_settings_are_refused_at_start(override, message):
    with pytest.raises(ValidationError, match=message):
        JwtSettings(**{**BASE, **override})


def test_the_identity_provider_is_configured_from_the_environment(monkeypatch):
    monkeypatch.setenv("NBA_MCP_JWT__ISSUER", BASE["issuer"])
    monkeypatch.setenv("NBA_MCP_JWT__JWKS_URL", BASE["jwks_url"])
    monkeypatch.setenv("NBA_MCP_JWT__RESOURCE_URL", BASE["resource_url"])
    monkeypatch.setenv("NBA_MCP_JWT__ROLE_MAP", '{"ml-engineers": ["developer"]}')
    settings = Settings().jwt
    assert settings.audience == BASE["resource_url"] and settings.role_map == {"ml-engineers": ["developer"]}
    assert settings.algorithms == ["RS256", "PS256", "ES256", "EdDSA"]


def test_a_mapped_role_the_role_table_lacks_is_reported_at_start(tmp_path, caplog):
    from mcp_server import rbac

    settings = Settings(data_home=tmp_path, jwt={**BASE, "role_map": {"ml": ["developer", "superuser"]}})
    try:
        with caplog.at_level("WARNING", logger="mcp_server.rbac"):
            rbac.configure_rbac(settings)
    finally:
        rbac.reset_rbac()
    warned = [r.getMessage() for r in caplog.records]
    assert any("'superuser'" in m for m in warned) and not any("'developer'" in m for m in warned)
