"""``nba-mcp serve`` over stdio spoken to with raw JSON-RPC lines: the test owns the process (to kill
it, signal it or send malformed bytes), which the SDK's client hides."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tests.support.data import PROJECT_ROOT

CLIENT_INFO = {"name": "raw-test-client", "version": "1"}


def envelope(protocol_version: str) -> dict[str, Any]:
    """The ``_meta`` every request of the stateless protocol (2026-07-28) carries."""
    return {PROTOCOL_VERSION_META_KEY: protocol_version, CLIENT_CAPABILITIES_META_KEY: {},
            CLIENT_INFO_META_KEY: CLIENT_INFO}


class RawStdioServer:
    """``nba-mcp serve`` over stdio, spoken to with raw JSON-RPC lines (so the test owns the pid)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, wrapper: tuple[str, ...] = (),
                 protocol_version: str = "2025-06-18") -> None:
        """``wrapper``: a command the server runs under (e.g. ``unshare --pid …``). A handshake-era
        ``protocol_version`` is negotiated with ``initialize`` (its result: ``self.initialized``); a
        stateless one (2026-07-28) rides in every request's ``_meta``, after ``server/discover``."""
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop() / kill()
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "tools.cli", "serve"], cwd=PROJECT_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0
        self.meta = envelope(protocol_version) if protocol_version in MODERN_PROTOCOL_VERSIONS else None
        if self.meta is None:
            self.initialized = self.request("initialize", {"protocolVersion": protocol_version, "capabilities": {},
                                                           "clientInfo": CLIENT_INFO}, timeout=120)
            self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        else:
            self.initialized = self.request("server/discover", {}, timeout=120)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict, timeout: float = 90) -> dict:
        self._next_id += 1
        if self.meta is not None:
            params = {**params, "_meta": self.meta}
        line = json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        message = self.exchange(line.encode(), self._next_id, timeout)
        assert "error" not in message, message
        return message["result"]

    def exchange(self, line: bytes, request_id: int | None, timeout: float = 90) -> dict:
        """Write one raw line; return the answer to ``request_id`` (None: the first message back)."""
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._lines.get(timeout=max(0.1, deadline - time.monotonic())))
            if request_id is None or message.get("id") == request_id:
                return message

    def call_tool(self, name: str, arguments: dict, timeout: float = 90) -> dict:
        """The raw ``tools/call`` result (``isError``, ``content``)."""
        return self.request("tools/call", {"name": name, "arguments": arguments}, timeout)

    def call_json(self, name: str, arguments: dict, timeout: float = 90) -> Any:
        """What the tool answered, parsed; a tool error raises."""
        result = self.call_tool(name, arguments, timeout)
        if result.get("isError"):
            raise RuntimeError(f"{name} failed: {result['content'][0]['text']}")
        return json.loads(result["content"][0]["text"])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)  # reaped, as the MCP client that spawned it would
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the client went away: the server ends its jobs and exits
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
