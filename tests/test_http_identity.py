"""Identity over HTTP, end to end: the real ``nba-mcp serve --transport http`` process with an
identity provider on loopback (real RSA and EC keys, its JWKS fetched over HTTP) and a static
token file beside it, both on at once.

- a JWT of the provider -> the principal of its configured claim, the roles its groups map to
  (seen in tools/list and in the audit log), through the SDK's MCP client;
- every bad token (expired, wrong audience, wrong issuer, unknown key, ``alg: none``, HS256 keyed
  with the public key) -> 401 with ``WWW-Authenticate`` naming the resource metadata;
- a key added to the JWKS (rotation) is picked up; the Protected Resource Metadata validates;
- a token removed from the token file is refused within a second, without a restart; SIGHUP makes
  the server re-read a file whose change a stat cannot see.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import ProtectedResourceMetadata

from tests.support import free_port, isolated_settings, server_env, shared_template
from tests.support.identity_provider import IdentityProvider
from tests.support.raw_http import HttpServedProcess

pytestmark = pytest.mark.anyio

STATIC_TOKEN = "static-token-of-sam-0123456789"
OTHER_STATIC_TOKEN = "static-token-of-tess-9876543210"
ROLE_MAP = {"ml-engineers": ["developer"], "nba-viewers": ["viewer"]}


def token_file_text(*entries: tuple[str, str, str]) -> str:
    return "".join(f'[[http_tokens]]\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
                   f'principal = "{principal}"\nroles = ["{role}"]\n\n' for token, principal, role in entries)


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def served(idp, tmp_path_factory):
    home = tmp_path_factory.mktemp("identity-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    tokens = home / "tokens.toml"
    tokens.write_text(token_file_text((STATIC_TOKEN, "sam", "analyst"), (OTHER_STATIC_TOKEN, "tess", "viewer")))
    port = free_port()
    jwt_settings = {
        "issuer": idp.issuer, "jwks_url": idp.jwks_url, "resource_url": f"http://127.0.0.1:{port}/mcp",
        "principal_claim": "preferred_username", "roles_claim": "realm_access.roles", "role_map": ROLE_MAP,
        "jwks_min_refresh_seconds": 0,  # rotation is picked up at once (the rate limit has its own test)
    }
    env = server_env(home, NBA_MCP_JWT=json.dumps(jwt_settings), NBA_MCP_HTTP_TOKENS_FILE=str(tokens))
    process = HttpServedProcess(env, home / "server.log", port=port)
    process.home, process.tokens, process.resource = home, tokens, jwt_settings["resource_url"]
    yield process
    process.stop()
    log = (home / "server.log").read_text()
    assert STATIC_TOKEN not in log and OTHER_STATIC_TOKEN not in log, "a token reached the log"
    assert "eyJ" not in log, "a JWT reached the log"  # every JWT starts with the base64 of '{"'



def post_initialize(url: str, token: str | None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    return httpx2.post(url, headers=headers, json=body, timeout=10)


def audit_entries(home, principal: str) -> list[dict]:
    lines = (home / "audit.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry.get("principal") == principal]


async def tool_names_and_health(url: str, token: str) -> tuple[set[str], dict]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with Client(streamable_http_client(url, http_client=http)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        health = await client.call_tool("server_health", {})
    return names, health


@pytest.mark.parametrize("kid, groups, principal, role, may_cancel", [
    ("rsa-1", ["ml-engineers", "offline_access"], "alice", "developer", True),
    ("ec-1", ["nba-viewers"], "victor", "viewer", False),
])
async def test_a_jwt_gives_the_principal_and_roles_of_its_claims(served, idp, kid, groups, principal, role, may_cancel):
    token = idp.token(idp.claims(served.resource, preferred_username=principal,
                                 realm_access={"roles": groups}), kid=kid)
    names, health = await tool_names_and_health(served.url, token)
    assert not health.is_error and "server_health" in names
    assert ("cancel_job" in names) is may_cancel  # execute is the developer's, not the viewer's
    decisions = audit_entries(served.home, principal)
    assert decisions and {tuple(entry["roles"]) for entry in decisions} == {(role,)}


async def test_static_tokens_work_beside_the_identity_provider(served):
    names, health = await tool_names_and_health(served.url, STATIC_TOKEN)
    assert not health.is_error and "tune_hyperparameters" in names and "register_model" not in names
    assert {tuple(entry["roles"]) for entry in audit_entries(served.home, "sam")} == {("analyst",)}


BAD_TOKENS = {
    "expired": lambda idp, aud: idp.token(idp.claims(aud, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
    "wrong audience": lambda idp, aud: idp.token(idp.claims("http://127.0.0.1:1/other-mcp")),
    "wrong issuer": lambda idp, aud: idp.token(idp.claims(aud, iss=idp.base + "/realms/other")),
    "unknown key": lambda idp, aud: _signed_with_unpublished_key(idp, aud),
    "alg none": lambda idp, aud: idp.unsigned(idp.claims(aud)),
    "HS256 keyed with the public key": lambda idp, aud: idp.hs256_with_public_key(idp.claims(aud)),
    "no exp": lambda idp, aud: idp.token(idp.claims(aud, exp=None)),
    "not a token": lambda idp, aud: "not-a-configured-token",
}


def _signed_with_unpublished_key(idp: IdentityProvider, audience: str) -> str:
    if "stranger" not in idp.keys:
        idp.add_key("stranger", rsa.generate_private_key(public_exponent=65537, key_size=2048), publish=False)
    return idp.token(idp.claims(audience), kid="stranger")


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_is_answered_401_with_the_resource_metadata(served, idp, case):
    response = post_initialize(served.url, BAD_TOKENS[case](idp, served.resource))
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    metadata = f"http://127.0.0.1:{served.port}/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert f'resource_metadata="{metadata}"' in challenge


async def test_no_token_is_answered_401_with_the_resource_metadata(served):
    response = post_initialize(served.url, None)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert "invalid_token" not in response.headers["www-authenticate"]


async def test_a_key_added_to_the_jwks_is_picked_up(served, idp):
    idp.add_key("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    token = idp.token(idp.claims(served.resource, preferred_username="rotated"), kid="rsa-2", algorithm="PS256")
    assert post_initialize(served.url, token).status_code == 200
    assert post_initialize(served.url, idp.token(idp.claims(served.resource))).status_code == 200  # old key too


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"])
async def test_the_protected_resource_metadata_names_the_identity_provider(served, idp, path):
    response = httpx2.get(f"http://127.0.0.1:{served.port}{path}", timeout=10)
    assert response.status_code == 200
    document = response.json()
    ProtectedResourceMetadata.model_validate(document)
    assert document["resource"] == served.resource
    assert document["authorization_servers"] == [idp.issuer]
    assert document["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
async def test_authorization_server_metadata_is_the_providers_not_ours(served, path):
    assert httpx2.get(f"http://127.0.0.1:{served.port}{path}", timeout=10).status_code == 404


async def test_a_token_removed_from_the_file_is_refused_within_a_second(served):
    assert post_initialize(served.url, OTHER_STATIC_TOKEN).status_code == 200
    served.tokens.write_text(token_file_text((STATIC_TOKEN, "sam", "analyst")))
    removed_at = time.monotonic()
    while post_initialize(served.url, OTHER_STATIC_TOKEN).status_code != 401:
        assert time.monotonic() - removed_at < 1.0, "the removed token was still accepted after 1 s"
        time.sleep(0.05)
    assert post_initialize(served.url, STATIC_TOKEN).status_code == 200  # the others stay


async def test_sighup_re_reads_a_change_a_stat_cannot_see(served):
    """Same size, same inode, same modification time: only SIGHUP tells the server to look."""
    served.tokens.write_text(token_file_text((STATIC_TOKEN, "sam", "analyst")))
    time.sleep(0.6)
    assert post_initialize(served.url, STATIC_TOKEN).status_code == 200  # the server has read this version
    before = os.stat(served.tokens)
    swapped = token_file_text((OTHER_STATIC_TOKEN, "sam", "analyst"))  # sam's token replaced by tess's
    assert len(swapped) == before.st_size
    with open(served.tokens, "r+") as handle:
        handle.write(swapped)
    os.utime(served.tokens, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(0.7)  # past the check interval: a stat alone sees nothing
    assert post_initialize(served.url, STATIC_TOKEN).status_code == 200
    os.kill(served.proc.pid, signal.SIGHUP)
    time.sleep(0.1)
    assert post_initialize(served.url, STATIC_TOKEN).status_code == 401
    assert post_initialize(served.url, OTHER_STATIC_TOKEN).status_code == 200
    assert served.proc.poll() is None
