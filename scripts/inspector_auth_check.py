"""Does a generic client understand our bearer-token auth? Checked with the MCP Inspector CLI.

    python scripts/inspector_auth_check.py                  # npx -y @modelcontextprotocol/inspector@2.12.0
    INSPECTOR=/path/to/node_modules/.bin/mcp-inspector python scripts/inspector_auth_check.py

Spawns ``nba-mcp serve --transport http`` with one token in a temporary data folder and runs the
Inspector CLI's ``tools/list`` four ways:

1. no token, ``--stored-auth-only`` (how scripts and CI run it): fails with our message, "a valid
   bearer token is required: send the header 'Authorization: Bearer <token>' …";
2. a wrong token: fails with ``invalid_token`` and the same advice;
3. the right token (``--header "Authorization: Bearer …"``): lists our tools;
4. no token and no flag: recorded, not asserted. The 2.12 CLI starts an interactive OAuth flow on any
   401 from an HTTP server, whatever the server says, and without a terminal it stops with
   "Interactive OAuth requires a TTY": a client-side choice the answer cannot change.

Exit 0 when every assertion holds, 1 otherwise; when ``node`` is not installed it prints SKIP and
exits 0 (CI machines without node skip it). Not part of the pytest suite: it downloads the Inspector
on first use. The same answers are checked with plain HTTP in ``tests/test_reliability_front.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector@2.12.0"
TOKEN = "inspector-check-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inspector_command() -> list[str] | None:
    named = os.environ.get("INSPECTOR")
    if named:
        return [named]
    if shutil.which("node") is None or shutil.which("npx") is None:
        return None
    return ["npx", "-y", INSPECTOR_PACKAGE]


def wait_health(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.3)
    return False


def run_inspector(command: list[str], url: str, *extra: str, catalog: Path) -> str:
    env = {**os.environ, "MCP_CATALOG_PATH": str(catalog)}
    done = subprocess.run([*command, "--cli", url, "--method", "tools/list", *extra], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    return done.stdout + done.stderr


def main() -> int:
    command = inspector_command()
    if command is None:
        print("SKIP: node/npx not found (set INSPECTOR to an mcp-inspector binary to run this check)")
        return 0
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with tempfile.TemporaryDirectory(prefix="nba-mcp-inspector-") as folder:
        home = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NBA_MCP_", "MLFLOW_"))}
        env.update({"NBA_MCP_DATA_HOME": str(home / "home"), "NBA_MCP_HTTP_TOKEN": TOKEN,
                    "PYTHONPATH": str(ROOT)})
        with open(home / "server.log", "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http",
                                       "--port", str(port)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log)
        try:
            if not wait_health(f"http://127.0.0.1:{port}/health", 90):
                print((home / "server.log").read_text()[-2000:])
                return 1
            catalog = home / "catalog.json"
            answers = {
                "no_token_stored_auth_only": run_inspector(command, url, "--stored-auth-only", catalog=catalog),
                "wrong_token": run_inspector(command, url, "--stored-auth-only", "--header",
                                             "Authorization: Bearer wrong-token", catalog=catalog),
                "right_token": run_inspector(command, url, "--header", f"Authorization: Bearer {TOKEN}",
                                             catalog=catalog),
                "no_token_interactive": run_inspector(command, url, catalog=catalog),
            }
        finally:
            server.terminate()
            server.wait(30)
    checks = {
        "no_token_stored_auth_only": "a valid bearer token is required" in answers["no_token_stored_auth_only"]
        and "Authorization: Bearer <token>" in answers["no_token_stored_auth_only"],
        "wrong_token": "invalid_token" in answers["wrong_token"] and "wrong-token" not in answers["wrong_token"],
        "right_token": '"describe_dataset"' in answers["right_token"],
    }
    print(json.dumps({"inspector": " ".join(command), "checks": checks,
                      "answers": {k: v.strip()[:400] for k, v in answers.items()}}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
