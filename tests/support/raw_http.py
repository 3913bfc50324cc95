"""``nba-mcp serve --transport http`` spoken to with raw JSON-RPC POSTs in a chosen protocol version:
the handshake era (``initialize``, a session id, answers as SSE events) or the stateless one
(2026-07-28: ``server/discover``, the version in every request's ``_meta`` and headers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2

from tests.support import free_port, stop_process, wait_http
from tests.support.data import PROJECT_ROOT
from tests.support.stdio import CLIENT_INFO, MODERN_PROTOCOL_VERSIONS, envelope


class HttpServedProcess:
    """The server process on a free loopback port; ``env`` carries its tokens."""

    def __init__(self, env: dict[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()  # known before start when the env names the server's own URL
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port", str(self.port)],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        if not wait_http(f"http://127.0.0.1:{self.port}/health", 90):
            self.stop()
            raise RuntimeError(f"the HTTP server did not start; see {log_path}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class RawHttpSession:
    """One client of the server in one protocol version; ``opened`` is the initialize / discover result."""

    def __init__(self, url: str, token: str, protocol_version: str) -> None:
        self.url = url
        self.version = protocol_version
        self.modern = protocol_version in MODERN_PROTOCOL_VERSIONS
        self.http = httpx2.Client(timeout=60, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"})
        self.session_id: str | None = None
        self._id = 0
        if self.modern:
            self.opened = self.request("server/discover", {})["result"]
        else:
            self.opened = self.request("initialize", {"protocolVersion": protocol_version, "capabilities": {},
                                                      "clientInfo": CLIENT_INFO})["result"]
            self.version = self.opened["protocolVersion"]  # what the server chose is what we speak
            assert self.notify("notifications/initialized") == 202

    def _headers(self, method: str, params: dict[str, Any]) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.modern or self.session_id:  # the handshake era sends the version after initialize
            headers["MCP-Protocol-Version"] = self.version
        if self.modern:  # the stateless era routes on headers that repeat the body
            headers["Mcp-Method"] = method
            if method == "tools/call":
                headers["Mcp-Name"] = params["name"]
        return headers

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC answer (``result`` or ``error``) to one request."""
        self._id += 1
        if self.modern:
            params = {**params, "_meta": envelope(self.version)}
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        response = self.http.post(self.url, json=body, headers=self._headers(method, params))
        self.session_id = response.headers.get("mcp-session-id") or self.session_id
        for message in _messages(response.text):
            if message.get("id") == self._id:
                return message
        raise AssertionError(f"no answer to {method}: HTTP {response.status_code} {response.text[:300]}")

    def notify(self, method: str) -> int:
        response = self.http.post(self.url, json={"jsonrpc": "2.0", "method": method},
                                  headers=self._headers(method, {}))
        return response.status_code

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The raw ``tools/call`` result (``isError``, ``content``)."""
        answer = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in answer, answer
        return answer["result"]

    def close(self) -> None:
        if self.session_id:  # end the session as a client does (the server bounds open sessions)
            self.http.delete(self.url, headers={"Mcp-Session-Id": self.session_id, "MCP-Protocol-Version": self.version})
        self.http.close()


def _messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response body: plain JSON, or an SSE stream of ``data:`` lines."""
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
