"""A loopback identity provider for tests: real key pairs, a JWKS served over HTTP, signed tokens.

Nothing here is a mock of the verification: the server under test fetches the JWKS over HTTP
from this provider and checks signatures made with these private keys (``cryptography``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REALM_PATH = "/realms/team"  # Keycloak's shape: issuer https://host/realms/<realm>
JWKS_PATH = REALM_PATH + "/protocol/openid-connect/certs"


def _public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "use": "sig"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IdentityProvider:
    """Serves ``{issuer}/protocol/openid-connect/certs``; ``keys`` maps kid -> private key."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []  # the kids in the JWKS, in order
        self.jwks_requests = 0
        self.available = True
        self.add_key("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.add_key("ec-1", ec.generate_private_key(ec.SECP256R1()))
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != JWKS_PATH or not provider.available:
                    self.send_error(404 if provider.available else 503)
                    return
                provider.jwks_requests += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.base + REALM_PATH
        self.jwks_url = self.base + JWKS_PATH

    def add_key(self, kid: str, private_key: Any, *, publish: bool = True) -> None:
        self.keys[kid] = private_key
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public_jwk(self.keys[kid], kid) for kid in self.published]}

    def claims(self, audience: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "iat": now, "exp": now + 300, "sub": "f3c1-uuid",
                  "preferred_username": "alice", "realm_access": {"roles": ["ml-engineers", "offline_access"]}}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, claims: dict[str, Any], *, kid: str = "rsa-1", algorithm: str | None = None) -> str:
        key = self.keys[kid]
        algorithm = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})

    def hs256_with_public_key(self, claims: dict[str, Any], kid: str = "rsa-1") -> str:
        """The algorithm-confusion attack: HS256 keyed with the RSA public key's PEM (PyJWT refuses
        to make such a token, so it is assembled by hand)."""
        secret = self.keys[kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + _b64(
            json.dumps(claims).encode())
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def unsigned(self, claims: dict[str, Any], kid: str = "rsa-1") -> str:
        return jwt.encode(claims, None, algorithm="none", headers={"kid": kid})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
