"""Static bearer tokens that change without a restart.

The tokens come from ``settings.http_tokens_file`` when set (by default the config file that lists
them), else from ``settings.http_tokens``, plus one plaintext token from the environment
(``NBA_MCP_HTTP_TOKEN``). The file is re-read when it changes: at most every
``CHECK_INTERVAL_SECONDS`` a request looks at its modification time, size and inode (a stat, a few
microseconds), and ``reload_soon()`` (SIGHUP) forces a read on the next request. So a token
removed from the file, or past its ``expires``, is refused on its next request, within a second.

A file that cannot be read or does not validate on a reload keeps the last good list and logs an
error naming the problem: a half-written file must not lock everybody out, nor let anyone in.
Tokens are kept as SHA-256 digests, compared in constant time, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from mcp_server.error_handling import ConfigurationError
from mcp_server.identity_settings import TokenEntry
from mcp_server.settings import Settings

logger = logging.getLogger(__name__)

PLAINTEXT_TOKEN_PRINCIPAL = "http-token"
CHECK_INTERVAL_SECONDS = 0.5
_ENTRIES = TypeAdapter(list[TokenEntry])


@dataclass(frozen=True)
class StaticToken:
    digest: bytes
    principal: str
    roles: tuple[str, ...]
    expires: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


def _token(entry: TokenEntry) -> StaticToken:
    return StaticToken(bytes.fromhex(entry.sha256), entry.principal, tuple(entry.roles), entry.expires)


def read_token_file(path: Path) -> list[StaticToken]:
    """The ``[[http_tokens]]`` of a TOML file; ``ConfigurationError`` naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"http_tokens_file {str(path)!r} cannot be read: {exc}") from None
    try:
        entries = _ENTRIES.validate_python(data.get("http_tokens", []))
    except ValidationError as exc:
        problems = "; ".join(f"http_tokens[{'.'.join(map(str, e['loc']))}]: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"http_tokens_file {str(path)!r} is not valid: {problems}") from None
    return [_token(entry) for entry in entries]


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is edited or replaced (an atomic rename changes the inode)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class StaticTokens:
    """The configured static tokens; ``lookup(token)`` is the one question asked of them."""

    def __init__(self, settings: Settings, *, check_interval: float = CHECK_INTERVAL_SECONDS) -> None:
        self._path = settings.http_tokens_file
        self._check_interval = check_interval
        self._fixed: tuple[StaticToken, ...] = ()
        if settings.http_token is not None and settings.http_token.get_secret_value():
            digest = hashlib.sha256(settings.http_token.get_secret_value().encode()).digest()
            self._fixed = (StaticToken(digest, PLAINTEXT_TOKEN_PRINCIPAL, (settings.http_token_role,)),)
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._forced = False
        if self._path is None:
            self._listed = tuple(_token(entry) for entry in settings.http_tokens)
        else:  # at start a broken file is a configuration error, not a warning
            self._signature = _signature(self._path)
            self._listed = tuple(read_token_file(self._path))
            self._checked_at = time.monotonic()
            if settings.http_tokens and {t.digest for t in map(_token, settings.http_tokens)} - {
                    t.digest for t in self._listed}:
                logger.warning("http_tokens given outside http_tokens_file %s are ignored: the file is "
                               "the one source of static tokens", self._path)

    @property
    def configured(self) -> bool:
        """Whether static tokens are in use (a watched file counts even while it lists none)."""
        return bool(self._fixed or self._listed or self._path is not None)

    def describe(self) -> str:
        source = f"from {self._path}, re-read on change" if self._path is not None else "from the settings"
        return f"{len(self._fixed) + len(self._listed)} static tokens {source}"

    def reload_soon(self) -> None:
        """Re-read the file on the next request even if it looks unchanged (SIGHUP). Only a flag:
        safe from a signal handler."""
        self._forced = True

    def lookup(self, token: str) -> StaticToken | None:
        """The entry this token stands for, if it is configured and not expired."""
        self._refresh()
        digest = hashlib.sha256(token.encode()).digest()
        match: StaticToken | None = None
        # Compare against every entry (no early exit) so timing does not reveal which matched.
        for entry in (*self._fixed, *self._listed):
            if hmac.compare_digest(digest, entry.digest) and match is None:
                match = entry
        if match is not None and match.expired(datetime.now(timezone.utc)):
            logger.info("refused the expired token of %s (expired %s)", match.principal, match.expires.isoformat())
            return None
        return match

    def _refresh(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if not self._forced and now - self._checked_at < self._check_interval:
            return
        self._checked_at = now
        forced, self._forced = self._forced, False
        signature = _signature(self._path)
        if signature == self._signature and not forced:
            return
        self._signature = signature  # a broken version is reported once, not on every check
        try:
            listed = tuple(read_token_file(self._path))
        except ConfigurationError as exc:
            logger.error("%s; keeping the %d tokens read before", exc, len(self._listed))
            return
        before = {t.digest for t in self._listed}
        after = {t.digest for t in listed}
        self._listed = listed
        logger.info("re-read %s: %d tokens (%d added, %d removed)", self._path, len(listed),
                    len(after - before), len(before - after))
