"""The identity provider's signing keys (a JWKS), fetched over HTTP and cached.

Keys are fetched on first use and again after ``jwks_max_age_seconds``. A token naming a key id
the cache does not hold triggers a re-fetch (the provider rotated its keys). Every fetch after the
first is at most once per ``jwks_min_refresh_seconds``: tokens with made-up key ids cannot make the
server hammer the provider. Concurrent requests share one fetch. A fetch tries ``jwks_attempts`` times; when all
fail, the keys fetched before stay in use (a provider restart must not refuse every token).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field

import anyio
import jwt

from mcp_server.identity_settings import JwtSettings

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024  # a real key set is a few kilobytes
RETRY_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class SigningKey:
    kid: str | None
    jwk: dict
    # Parsing a JWK into a key object is most of a verification's cost: once per algorithm.
    _bound: dict[str, jwt.PyJWK] = field(default_factory=dict, compare=False, repr=False)

    def for_algorithm(self, algorithm: str) -> jwt.PyJWK:
        """This key bound to ``algorithm``: PyJWT then verifies with exactly that algorithm. A JWK
        naming its own ``alg`` serves only that one; one without (an RSA key for RS256 and PS256)
        serves any algorithm of its key type. Raises ``jwt.PyJWKError`` when they do not fit."""
        named = self.jwk.get("alg")
        if named is not None and named != algorithm:
            raise jwt.PyJWKError(f"the key {self.kid!r} is for {named}, the token says {algorithm}")
        if algorithm not in self._bound:
            self._bound[algorithm] = jwt.PyJWK(self.jwk, algorithm=algorithm)
        return self._bound[algorithm]


def parse_jwks(document: bytes) -> list[SigningKey]:
    """The signature keys of a JWKS document; keys this server cannot use are skipped, not fatal."""
    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")
    keys = []
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue  # encryption keys and shared secrets are never signature keys here
        try:
            jwt.PyJWK(entry)  # refuses key types and curves PyJWT cannot verify with
            keys.append(SigningKey(entry.get("kid"), entry))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            logger.debug("skipped a JWKS key (kid %r): %s", entry.get("kid"), exc)
    return keys


class JwksCache:
    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        self._keys: list[SigningKey] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = anyio.Lock()

    def expire(self) -> None:
        """Fetch again on the next token (SIGHUP)."""
        self._fetched_at = None
        self._tried_at = None

    async def key_for(self, kid: str | None) -> SigningKey | None:
        """The key a token's header names (by ``kid``; without one, the only key there is)."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at > self._settings.jwks_max_age_seconds:
            await self._refresh()
        key = self._find(kid)
        if key is None:
            await self._refresh()  # a rotation: the provider may have published it since
            key = self._find(kid)
        return key

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((key for key in self._keys if key.kid == kid), None)

    async def _refresh(self) -> None:
        """Fetch the JWKS unless one was tried within ``jwks_min_refresh_seconds`` (the first fetch,
        and the first after ``expire()``, always go). The same bound holds while the provider is
        down: requests then use the keys they have instead of each waiting for a fetch to time out."""
        tried_at = self._tried_at
        async with self._lock:
            if self._tried_at != tried_at:
                return  # another request fetched while this one waited
            if tried_at is not None and time.monotonic() - tried_at < self._settings.jwks_min_refresh_seconds:
                return
            self._tried_at = time.monotonic()
            keys = await self._fetch()
            if keys is not None:
                self._keys, self._fetched_at = keys, time.monotonic()

    async def _fetch(self) -> list[SigningKey] | None:
        url, attempts = self._settings.jwks_url, self._settings.jwks_attempts
        for attempt in range(1, attempts + 1):
            try:
                document = await anyio.to_thread.run_sync(self._download)
                keys = parse_jwks(document)
                logger.info("fetched %d signing keys from %s (key ids: %s)", len(keys), url,
                            ", ".join(str(k.kid) for k in keys))
                return keys
            except (OSError, ValueError) as exc:  # URLError, timeouts and bad JSON alike
                logger.warning("fetching the JWKS %s failed (attempt %d of %d): %s", url, attempt, attempts, exc)
                if attempt < attempts:
                    await anyio.sleep(RETRY_PAUSE_SECONDS * attempt)
        logger.error("no JWKS from %s; keeping the %d keys fetched before", url, len(self._keys))
        return None

    def _download(self) -> bytes:
        request = urllib.request.Request(self._settings.jwks_url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self._settings.jwks_timeout_seconds) as response:  # noqa: S310 (http(s) only: validated)
            document = response.read(MAX_JWKS_BYTES + 1)
        if len(document) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        return document
