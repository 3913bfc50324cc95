"""No principal can starve the others (the real ``nba-mcp serve --transport http``, loopback only).

- A viewer token opening sessions in a loop is capped (429 naming max_sessions_per_principal) and a
  developer's ``initialize`` still answers at once.
- 60 unauthenticated connections that announce an 8 MB body and trickle it are refused with 401
  before their bodies are read: the server's RSS grows by far less than 50 MB together.
- An authenticated body that does not arrive in time gets 408.
- ``/health`` and ``/metrics`` refuse a foreign Host (DNS rebinding); a token sent as
  ``?access_token=`` never reaches the log.
Figures go to ``<pytest tmp>/reliability/fairness.json``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, isolated_settings, server_env, shared_template, stop_process, wait_http

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VIEWER, DEVELOPER = "viewer-token-0123456789abcdef", "developer-token-0123456789abcdef"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fair", "version": "1"}}}


def tokens_env() -> str:
    return json.dumps([
        {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "principal": "vera", "roles": ["viewer"]},
        {"sha256": hashlib.sha256(DEVELOPER.encode()).hexdigest(), "principal": "dev", "roles": ["developer"]},
    ])


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fair")
    home = root / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    port = free_port()
    env = server_env(home, NBA_MCP_HTTP_TOKENS=tokens_env(), NBA_MCP_MAX_SESSIONS_PER_PRINCIPAL="5",
                     NBA_MCP_MAX_SESSIONS="50", NBA_MCP_HTTP_BODY_TIMEOUT_SECONDS="2")
    log = root / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port",
                                 str(port)], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out)
    assert wait_http(f"http://127.0.0.1:{port}/health", 60), log.read_text()[-2000:]
    figures: dict = {}
    yield proc, port, log, figures
    stop_process(proc)
    outdir = tmp_path_factory.getbasetemp() / "reliability"
    outdir.mkdir(exist_ok=True)
    (outdir / "fairness.json").write_text(json.dumps(figures, indent=2))
    print(f"\nfairness.json: {json.dumps(figures)}")


def post(port: int, body: dict, token: str | None, *, path: str = "/mcp", host: str | None = None,
         timeout: float = 30) -> tuple[int, str, float]:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if host:
        headers["Host"] = host
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(2000).decode(errors="replace"), time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace"), time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_viewer_opening_sessions_in_a_loop_cannot_lock_out_a_developer(http_server):
    proc, port, _log, figures = http_server
    statuses = []
    started = time.perf_counter()
    for _ in range(200):
        status, text, _ = post(port, INIT, VIEWER)
        statuses.append(status)
    loop_seconds = time.perf_counter() - started
    assert statuses.count(200) == 5 and statuses.count(429) == 195, statuses
    _, refusal, _ = post(port, INIT, VIEWER)
    assert "at most 5 (settings.max_sessions_per_principal)" in refusal
    status, text, seconds = post(port, INIT, DEVELOPER)
    assert status == 200 and "serverInfo" in text, text
    figures["viewer_session_loop"] = {
        "attempts": 200, "opened": statuses.count(200), "refused_429": statuses.count(429),
        "loop_seconds": round(loop_seconds, 2), "developer_initialize_status": status,
        "developer_initialize_seconds": round(seconds, 3), "refusal": refusal[:120],
        "server_rss_mb_after": round(rss_mb(proc.pid), 1),
    }


def test_sixty_slow_unauthenticated_connections_cost_little(http_server):
    proc, port, _log, figures = http_server
    time.sleep(0.5)
    before = rss_mb(proc.pid)
    sockets, answers = [], []
    head = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: 8000000\r\n\r\n") % port
    for _ in range(60):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head + b"x" * 65536)  # a slow body: 64 KiB now, the rest never
        sockets.append(sock)
    time.sleep(1.0)
    peak = rss_mb(proc.pid)
    for sock in sockets:
        try:
            answers.append(sock.recv(200).split(b"\r\n", 1)[0].decode())
        except OSError as exc:
            answers.append(f"error {exc}")
        sock.close()
    grew = peak - before
    assert all(" 401 " in a for a in answers), answers[:3]
    assert grew < 50
    # An authenticated body that never arrives is cut off after http_body_timeout_seconds=2.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall((b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{") % (port, DEVELOPER.encode()))
        slow_answer = sock.recv(200).split(b"\r\n", 1)[0].decode()
        slow_seconds = time.perf_counter() - started
    assert " 408 " in slow_answer and slow_seconds < 5, slow_answer
    figures["slow_unauthenticated_connections"] = {
        "connections": 60, "declared_body_bytes": 8_000_000, "sent_bytes_each": 65536,
        "answers": sorted(set(answers)), "rss_before_mb": round(before, 1), "rss_with_60_open_mb": round(peak, 1),
        "rss_growth_mb": round(grew, 1), "authenticated_slow_body": slow_answer,
        "authenticated_slow_body_seconds": round(slow_seconds, 2),
    }


def test_health_and_metrics_refuse_a_foreign_host_and_query_tokens_are_not_logged(http_server):
    _proc, port, log, figures = http_server
    results = {}
    for path in ("/health", "/metrics"):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": "evil.example:80"})
        try:
            urllib.request.urlopen(request, timeout=10)
            results[path] = 200
        except urllib.error.HTTPError as exc:
            results[path] = exc.code
    assert results == {"/health": 421, "/metrics": 421}
    secret = "query-secret-token-should-not-be-logged"
    post(port, INIT, None, path=f"/mcp?access_token={secret}")
    time.sleep(0.3)
    assert secret not in log.read_text(errors="replace")
    figures["foreign_host"] = results
    figures["query_token_in_log"] = False
