"""The nba-mcp command: claude-config, refusing misconfiguration, the example HTTP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.cli import build_parser, claude_desktop_snippet

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NBA_MCP_")}
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=PROJECT_ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_claude_config_prints_absolute_paths(tmp_path):
    completed = run_cli("claude-config", env={"NBA_MCP_DATA_HOME": str(tmp_path)})
    entry = json.loads(completed.stdout)["mcpServers"]["nba-mcp"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).exists()
    assert entry["args"][-1] == "serve" and entry["env"]["NBA_MCP_DATA_HOME"] == str(tmp_path)


def test_claude_snippet_matches_the_printed_one():
    assert claude_desktop_snippet()["mcpServers"]["nba-mcp"]["args"][-1] == "serve"


def test_http_serve_without_a_token_refuses_to_start(tmp_path):
    completed = run_cli("serve", "--transport", "http", "--port", "0", env={"NBA_MCP_DATA_HOME": str(tmp_path)})
    assert completed.returncode == 2 and completed.stdout == ""
    assert "configuration error: the HTTP and SSE transports require a bearer token" in completed.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], ("stdio", None, None)),
        (["serve", "--transport", "sse", "--host", "127.0.0.1", "--port", "9000"], ("sse", "127.0.0.1", 9000)),
    ],
)
def test_serve_arguments(argv, expected):
    args = build_parser().parse_args(argv)
    assert (args.transport, args.host, args.port) == expected


def test_unknown_transport_is_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--transport", "websocket"])


@pytest.mark.slow
def test_servers_starting_together_on_a_fresh_store_migrate_it_once(tmp_path):
    """Several processes preparing one fresh sqlite store: the file lock makes exactly one migrate."""
    script = (
        "from mcp_server.settings import Settings; from mcp_server.mlflow_integration import ensure_sqlite_migrated; "
        f"print(ensure_sqlite_migrated(str(Settings(data_home={str(tmp_path)!r}).tracking_uri)))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("NBA_MCP_")}
    processes = [
        subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=base,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["False", "False", "True"]

    from mcp_server.mlflow_integration import is_migrated

    assert is_migrated(tmp_path / "mlflow.db")
