"""Every protocol version the server accepts, spoken raw: open (``initialize`` or ``server/discover``),
``tools/list``, a call and a failed call, over streamable HTTP and over stdio.

The SDK (mcp 2.3) accepts the four handshake versions through ``initialize`` and 2026-07-28 through
the stateless per-request envelope; an unknown version is answered with the newest handshake version
(``initialize``) or refused with the supported list (the envelope).
"""

from __future__ import annotations

import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS

from tests.support import error_of, isolated_settings, payload, server_env, shared_template
from tests.support.raw_http import HttpServedProcess, RawHttpSession
from tests.support.stdio import RawStdioServer

# The versions clients were seen to use (issue 32): each must stay accepted.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
TOKEN = "protocol-matrix-token-0123456789"
SOME_TOOLS = {"list_datasets", "tune_hyperparameters", "get_job", "cancel_job", "server_health"}


def test_the_sdk_accepts_every_version_clients_use():
    assert set(PROTOCOL_VERSIONS) == set(HANDSHAKE_PROTOCOL_VERSIONS) | set(MODERN_PROTOCOL_VERSIONS)


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("protocol-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    return home


@pytest.fixture(scope="module")
def http_server(data_home, tmp_path_factory):
    env = server_env(data_home, NBA_MCP_HTTP_TOKEN=TOKEN, NBA_MCP_HTTP_TOKEN_ROLE="developer")
    served = HttpServedProcess(env, tmp_path_factory.mktemp("logs") / "http.log")
    yield served
    served.stop()


def check_session(version: str, opened: dict, list_tools, call_tool) -> None:
    """What every version must give: the server named, its tools, a result and an error, as JSON."""
    if version in MODERN_PROTOCOL_VERSIONS:
        assert version in opened["supportedVersions"], opened
    else:
        assert opened["protocolVersion"] == version and opened["serverInfo"]["name"] == "nba-mcp", opened
    assert "tools" in opened["capabilities"]
    tools = list_tools()
    assert SOME_TOOLS <= {tool["name"] for tool in tools}
    assert all(tool["inputSchema"]["type"] == "object" for tool in tools)
    jobs = call_tool("list_jobs", {})  # a call that needs no MLflow import: the matrix stays fast
    assert not jobs.get("isError") and payload(jobs)["jobs"] == []
    missing = error_of(call_tool("get_job", {"job_id": "0123456789ab"}))
    assert {k: missing[k] for k in ("code", "field")} == {"code": "not_found", "field": "job_id"}, missing
    assert missing["message"].startswith("job_id '0123456789ab' does not name a known job; you have no jobs"), missing


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
def test_http_speaks_every_version(http_server, version):
    client = RawHttpSession(http_server.url, TOKEN, version)
    try:
        check_session(version, client.opened,
                      lambda: client.request("tools/list", {})["result"]["tools"], client.call_tool)
    finally:
        client.close()


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
def test_stdio_speaks_every_version(data_home, tmp_path, version):
    server = RawStdioServer(server_env(data_home), tmp_path / "stdio.log", protocol_version=version)
    try:
        check_session(version, server.initialized, lambda: server.request("tools/list", {})["tools"], server.call_tool)
    finally:
        server.stop()
    assert server.proc.returncode == 0


def test_an_unknown_version_is_answered_with_one_the_server_speaks(http_server):
    offered = RawHttpSession(http_server.url, TOKEN, "2099-01-01")  # initialize: a counter-offer
    try:
        assert offered.opened["protocolVersion"] == LATEST_HANDSHAKE_VERSION
    finally:
        offered.close()
    stateless = RawHttpSession(http_server.url, TOKEN, MODERN_PROTOCOL_VERSIONS[-1])
    try:
        stateless.version = "2099-01-01"  # the envelope: refused, with the versions it accepts
        answer = stateless.request("tools/list", {})
    finally:
        stateless.close()
    assert answer["error"]["data"] == {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": "2099-01-01"}
