"""Test support (not shipped): helpers for servers built by ``build_server`` (fast, isolated, real
tracking stores), loopback services, fake principals and pytest fixtures. Benchmarks import it too.

A fresh sqlite MLflow store costs ~2 s of migrations; tests migrate one template per session and
copy the file (about 1 MB) into each test's own data home instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_server.settings import Settings
from mcp_server.mlflow_integration import ensure_sqlite_migrated

from tests.support.data import (  # noqa: F401  (re-exported)
    HAVE_NBA_DATA,
    NBA_DATA,
    NBA_DATA_REASON,
    data_folder,
    needs_nba_data,
    synthetic_folder,
)


# --- loopback services -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float) -> bool:
    """Poll ``url`` until it answers 200 or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate ``proc``, and kill it if it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class MlflowServer:
    """A real `mlflow server` on a free loopback port: one worker, job execution off (7-10 s and
    ~0.5 GB instead of 15 processes and ~3 GB), artifacts proxied by the server (--serve-artifacts)
    into ``root/artifacts``. Backend: a sqlite file in ``root``, or ``backend_store_uri``
    (e.g. ``postgresql://…``)."""

    def __init__(self, root: Path, *, port: int | None = None, backend_store_uri: str | None = None) -> None:
        self.root = root
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'server.db'}"
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start_seconds = 0.0
        self._log = None

    def start(self, timeout: float = 90) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        self._log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not wait_http(self.uri + "/health", min(5.0, max(0.1, deadline - time.monotonic()))):
            if self.proc.poll() is not None or time.monotonic() >= deadline:  # exited early: fail now
                self.stop()
                raise RuntimeError(f"mlflow server did not start; see {self.root / 'server.log'}")
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def migrated_template(directory: Path) -> Path:
    """Create and migrate ``directory/mlflow.db`` once; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    ensure_sqlite_migrated(str(Settings(data_home=directory).tracking_uri))
    return directory / "mlflow.db"


def isolated_settings(data_home: Path, template_db: Path | None = None, **overrides: Any) -> Settings:
    """Settings whose store, artifacts and audit log live under ``data_home``."""
    data_home.mkdir(parents=True, exist_ok=True)
    if template_db is not None and not (data_home / "mlflow.db").exists():
        shutil.copyfile(template_db, data_home / "mlflow.db")
    overrides.setdefault("data_dirs", [data_folder()])
    return Settings(data_home=data_home, **overrides)


def server_env(data_home: Path, *, data_dirs: Sequence[Path] = (), **variables: str) -> dict[str, str]:
    """The environment of a server subprocess: this process's, without any NBA_MCP_* or MLFLOW_*
    setting leaking in, plus ``data_home``, ``data_dirs`` and the given NBA_MCP_* ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBA_MCP_", "MLFLOW_"))}
    env.update({"NBA_MCP_DATA_HOME": str(data_home), "PYTHONUNBUFFERED": "1"})
    if data_dirs:
        env["NBA_MCP_DATA_DIRS"] = json.dumps([str(d) for d in data_dirs])
    return {**env, **variables}


def data_folder_with_escapes(root: Path, players_csv: str) -> Path:
    """``root/data`` with ``players.csv`` and links leading out of it (``escape.csv`` to a real
    ``root/outside/secret.csv``, ``dangling.csv`` to nothing, ``linked`` to the outside folder)."""
    data, outside = root / "data", root / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "players.csv").write_text(players_csv)
    (outside / "secret.csv").write_text("password,target\nhunter2,1\nswordfish,0\n")
    (data / "escape.csv").symlink_to(outside / "secret.csv")
    (data / "dangling.csv").symlink_to(outside / "missing.csv")
    (data / "linked").symlink_to(outside, target_is_directory=True)
    return data


# --- pytest fixtures (import them into a test module: ``from tests.support import tool_server``) --

import pytest  # noqa: E402

from mcp_server import rbac  # noqa: E402

VIEWER = rbac.Principal("vera", {"viewer"})
ANALYST = rbac.Principal("ann", {"analyst"})
DEVELOPER = rbac.Principal("dev", {"developer"})
ADMIN = rbac.Principal("root", {"admin"})
NOBODY = rbac.Principal("nobody", {"no-such-role"})  # authenticated, but no role grants anything


def shared_template(tmp_path_factory) -> Path:
    """One migrated template per test session (under the session's base temp folder)."""
    # Migrates under the store's file lock the first time; later calls only check (milliseconds).
    return migrated_template(tmp_path_factory.getbasetemp() / "nba-mcp-template")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    return shared_template(tmp_path_factory)


@pytest.fixture(scope="module")
def tool_settings(tmp_path_factory, template_db):
    return isolated_settings(tmp_path_factory.mktemp("home"), template_db)


@pytest.fixture(scope="module")
def tool_server(tool_settings):
    from tools.server import build_server

    server = build_server(tool_settings)
    yield server
    server.state.close()


def payload(result) -> Any:
    """What a tool answered: the JSON of its one text block (a ``CallToolResult`` or a raw
    JSON-RPC ``result`` dict)."""
    if isinstance(result, dict):
        return json.loads(result["content"][0]["text"])
    return json.loads(result.content[0].text)


ERROR_KEYS = {"code", "message", "field", "did_you_mean", "fix", "error_id", "problems"}


def error_of(result) -> dict[str, Any]:
    """The ``error`` object of an error result (a ``CallToolResult`` or a raw JSON-RPC ``result``
    dict), checked against the shape every tool error has: one JSON text, ``isError`` true, a known
    code, a message, no other keys."""
    from tools.errors import ErrorCode

    is_error = result.get("isError") if isinstance(result, dict) else result.is_error
    assert is_error, result
    content = result["content"] if isinstance(result, dict) else [c.model_dump() for c in result.content]
    assert len(content) == 1 and content[0]["type"] == "text", content
    error = json.loads(content[0]["text"])["error"]
    assert error["code"] in set(ErrorCode) and isinstance(error["message"], str) and error["message"], error
    assert set(error) <= ERROR_KEYS, error
    return error


def error_text(result) -> str:
    """The message of an error result (see ``error_of``)."""
    return error_of(result)["message"]
