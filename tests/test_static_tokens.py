"""Static tokens from a file that changes while the server runs: re-read within a second, expiry,
a broken file keeps the last good list (and says so), SIGHUP's forced read, the config file as
the token file."""

from __future__ import annotations

import hashlib
import time

import pytest
from pydantic import ValidationError

from mcp_server.error_handling import ConfigurationError
from mcp_server.identity_settings import TokenEntry
from mcp_server.settings import Settings
from tools.identity import SettingsTokenVerifier
from tools.static_tokens import StaticTokens

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


def entry(token: str, principal: str, role: str = "analyst", expires: str | None = None) -> str:
    line = f'[[http_tokens]]\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n' \
           f'principal = "{principal}"\nroles = ["{role}"]\n'
    return line + (f"expires = {expires}\n" if expires else "") + "\n"


def principal_of(tokens: StaticTokens, token: str) -> str | None:
    found = tokens.lookup(token)
    return None if found is None else found.principal


def refused_within(tokens: StaticTokens, token: str, seconds: float) -> float:
    started = time.monotonic()
    while tokens.lookup(token) is not None:
        assert time.monotonic() - started < seconds, f"{token!r} still accepted after {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_removed_token_is_refused_within_a_second(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(entry("tok-a", "alice") + entry("tok-b", "bob"))
    tokens = StaticTokens(Settings(http_tokens_file=path))
    assert principal_of(tokens, "tok-a") == "alice" and principal_of(tokens, "tok-b") == "bob"
    path.write_text(entry("tok-b", "bob"))
    assert refused_within(tokens, "tok-a", 1.0) <= 1.0
    assert principal_of(tokens, "tok-b") == "bob"


async def test_an_expired_entry_is_refused_and_a_future_one_accepted(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(entry("old", "olga", expires="2020-01-01T00:00:00Z")
                    + entry("new", "nina", expires="2999-01-01T00:00:00+02:00"))
    verifier = SettingsTokenVerifier(Settings(http_tokens_file=path))
    assert await verifier.verify_token("old") is None
    access = await verifier.verify_token("new")
    assert access.subject == "nina" and access.expires_at is not None and access.scopes == ["analyst"]


def test_an_entry_expiring_while_the_server_runs_is_refused_from_then_on(tmp_path):
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    tokens = StaticTokens(Settings(http_tokens=[TokenEntry(sha256=hashlib.sha256(b"t").hexdigest(),
                                                           principal="p", roles=["viewer"], expires=soon)]))
    assert principal_of(tokens, "t") == "p"
    assert refused_within(tokens, "t", 2.0) > 0.0


@pytest.mark.parametrize("broken", [
    "[[http_tokens]\nsha256 = ",  # half-written TOML
    entry("tok-c", "carol").replace('sha256 = "', 'sha256 = "zz'),  # a digest that is not one
    entry("tok-c", "carol", expires="2027-01-01T00:00:00"),  # no time zone
    entry("tok-c", "carol").replace("roles", "role"),  # a misspelt key
    None,  # the file deleted
])
def test_a_broken_file_keeps_the_last_good_list_and_logs_an_error(tmp_path, caplog, broken):
    path = tmp_path / "tokens.toml"
    path.write_text(entry("tok-a", "alice"))
    tokens = StaticTokens(Settings(http_tokens_file=path), check_interval=0.0)
    with caplog.at_level("ERROR", logger="tools.static_tokens"):
        if broken is None:
            path.unlink()
        else:
            path.write_text(broken)
        assert principal_of(tokens, "tok-a") == "alice"
        assert principal_of(tokens, "tok-c") is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "keeping the 1 tokens" in errors[0] and str(path) in errors[0]
    assert principal_of(tokens, "tok-a") == "alice" and len(caplog.records) == 1  # reported once, not per request
    path.write_text(entry("tok-c", "carol"))  # fixed: read again
    assert principal_of(tokens, "tok-c") == "carol" and principal_of(tokens, "tok-a") is None


def test_a_broken_file_at_start_is_a_configuration_error(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text('[[http_tokens]]\nsha256 = "abc"\nprincipal = "x"\nroles = ["viewer"]\n')
    with pytest.raises(ConfigurationError, match=r"http_tokens\[0.sha256\]"):
        StaticTokens(Settings(http_tokens_file=path))


def test_reload_soon_reads_a_change_the_stat_cannot_see(tmp_path):
    import os

    path = tmp_path / "tokens.toml"
    path.write_text(entry("tok-a", "alice"))
    tokens = StaticTokens(Settings(http_tokens_file=path), check_interval=0.0)
    before = os.stat(path)
    with open(path, "r+") as handle:
        handle.write(entry("tok-b", "alice"))  # same length, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert principal_of(tokens, "tok-a") == "alice"
    tokens.reload_soon()
    assert principal_of(tokens, "tok-a") is None and principal_of(tokens, "tok-b") == "alice"


def test_the_config_file_that_lists_tokens_is_the_token_file(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("max_trials = 7\n" + entry("tok-a", "alice") + entry("tok-b", "bob"))
    monkeypatch.setenv("NBA_MCP_CONFIG", str(config))
    settings = Settings()
    assert settings.http_tokens_file == config.resolve() and len(settings.http_tokens) == 2
    tokens = StaticTokens(settings)
    config.write_text("max_trials = 7\n" + entry("tok-b", "bob"))
    refused_within(tokens, "tok-a", 1.0)
    assert principal_of(tokens, "tok-b") == "bob"


def test_the_plaintext_token_from_the_environment_stays(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text("")
    tokens = StaticTokens(Settings(http_tokens_file=path, http_token="plain", http_token_role="viewer"))
    found = tokens.lookup("plain")
    assert found is not None and found.roles == ("viewer",) and tokens.configured


def test_an_expiry_without_a_time_zone_is_refused():
    with pytest.raises(ValidationError, match="time zone"):
        TokenEntry(sha256="a" * 64, principal="p", roles=["viewer"], expires="2027-01-01T00:00:00")


def test_the_token_file_is_the_one_source_of_static_tokens(tmp_path, caplog):
    path = tmp_path / "tokens.toml"
    path.write_text(entry("tok-a", "alice"))
    elsewhere = TokenEntry(sha256=hashlib.sha256(b"tok-x").hexdigest(), principal="xavier", roles=["admin"])
    with caplog.at_level("WARNING", logger="tools.static_tokens"):
        tokens = StaticTokens(Settings(http_tokens=[elsewhere], http_tokens_file=path))
    assert principal_of(tokens, "tok-x") is None and principal_of(tokens, "tok-a") == "alice"
    assert any("ignored" in r.getMessage() for r in caplog.records)


def test_a_missing_token_file_at_start_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read"):
        StaticTokens(Settings(http_tokens_file=tmp_path / "absent.toml"))
