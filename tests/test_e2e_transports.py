"""End to end: the real `nba-mcp serve` process over stdio, streamable HTTP (with tokens) and SSE."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.support import error_of, payload, free_port, isolated_settings, server_env, shared_template

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VIEWER_TOKEN = "viewer-token-0123456789"
DEVELOPER_TOKEN = "developer-token-9876543210"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e-home")
    isolated_settings(home, shared_template(tmp_path_factory))
    return home


class ServedProcess:
    def __init__(self, transport: str, data_home: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        tokens = [
            {"sha256": hashlib.sha256(VIEWER_TOKEN.encode()).hexdigest(), "principal": "vera", "roles": ["viewer"]}
        ]
        env = server_env(
            data_home,
            NBA_MCP_HTTP_TOKENS=json.dumps(tokens),
            NBA_MCP_HTTP_TOKEN=DEVELOPER_TOKEN,
            NBA_MCP_HTTP_TOKEN_ROLE="developer",
        )
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "serve", "--transport", transport, "--port", str(self.port)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while http_get_safe(self.base + "/health") != 200:
            assert self.proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def stop(self) -> bytes:
        self.proc.terminate()
        try:
            stdout, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, _ = self.proc.communicate()
        self.log.close()
        return stdout


def http_get_safe(url: str) -> int | None:
    try:
        return http_get(url)[0]
    except OSError:
        return None


@pytest.fixture(scope="module")
def http_server(data_home, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("logs") / "http.log"
    served = ServedProcess("http", data_home, log_path)
    yield served
    assert served.stop() == b"", "the HTTP server wrote to stdout"
    log = log_path.read_text()
    assert VIEWER_TOKEN not in log and DEVELOPER_TOKEN not in log, "a token reached the log"


def authed(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)


# --- stdio ----------------------------------------------------------------------------------------


async def test_stdio_lists_tools_fast_and_answers(data_home):
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tools.cli", "serve"], env=server_env(data_home), cwd=str(PROJECT_ROOT)
    )
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            timings.append(time.perf_counter() - start)
        assert {"server_health", "list_datasets", "get_job"} <= names
    async with Client(params) as client:
        health = payload(await client.call_tool("server_health", {}))
    assert health["status"] == "ok"
    # Target ≤1.5 s on a quiet machine; the bound here leaves room for a loaded CI box.
    assert statistics.median(timings) < 4.0, timings


# --- streamable HTTP with tokens --------------------------------------------------------------------


def test_http_requires_a_token_and_rejects_foreign_hosts(http_server):
    status, _ = http_get(http_server.base + "/mcp")
    assert status == 401
    status, _ = http_get(http_server.base + "/mcp", {"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = http_get(http_server.base + "/mcp", {"Authorization": f"Bearer {DEVELOPER_TOKEN}", "Host": "evil.example.com"})
    assert status == 421


def test_health_and_metrics_routes_are_open(http_server):
    status, body = http_get(http_server.base + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = http_get(http_server.base + "/metrics")
    assert status == 200 and b"nba_mcp_uptime_seconds" in body


async def test_http_viewer_is_denied_and_developer_succeeds(http_server):
    async with Client(streamable_http_client(http_server.base + "/mcp", http_client=authed(VIEWER_TOKEN))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        denied = await client.call_tool("cancel_job", {"job_id": "abc"})
        health = await client.call_tool("server_health", {})
    assert "cancel_job" not in names and "server_health" in names
    assert error_of(denied) == {"code": "permission_denied", "message": "permission denied"}
    assert payload(health)["status"] == "ok"

    async with Client(streamable_http_client(http_server.base + "/mcp", http_client=authed(DEVELOPER_TOKEN))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        missing = await client.call_tool("cancel_job", {"job_id": "abc"})
    assert "cancel_job" in names
    missing = error_of(missing)
    assert missing["code"] == "not_found" and missing["field"] == "job_id", missing
    assert missing["message"].startswith("job_id 'abc' does not name a known job; "), missing  # then the caller's jobs
    status, body = http_get(http_server.base + "/metrics")
    assert b'operation="tool.cancel_job"' in body


def test_example_http_client_runs_against_the_server(http_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_MCP_")}
    env.update({"NBA_MCP_HTTP_TOKEN": DEVELOPER_TOKEN, "NBA_MCP_URL": http_server.base + "/mcp"})
    completed = subprocess.run([sys.executable, str(PROJECT_ROOT / "examples" / "http_client.py")],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "progress: trial 8/8" in completed.stdout and "best roc_auc = " in completed.stdout


# --- SSE ------------------------------------------------------------------------------------------


async def test_sse_smoke(data_home, tmp_path):
    served = ServedProcess("sse", data_home, tmp_path / "sse.log")
    try:
        status, _ = http_get(served.base + "/sse")
        assert status == 401
        headers = {"Authorization": f"Bearer {DEVELOPER_TOKEN}"}
        async with Client(sse_client(served.base + "/sse", headers=headers)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            jobs = await client.call_tool("list_jobs", {})
        assert "server_health" in names and payload(jobs)["jobs"] == []
    finally:
        assert served.stop() == b""
