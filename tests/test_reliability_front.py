"""The HTTP front (round 3): admission per principal, a hardened listener, logs that cannot fill a disk,
and 401s a generic client can read. The real ``nba-mcp serve --transport http``, loopback only.

- 40 slow 8 MB bodies from one token (with a made-up session id, with none, chunked) add < 100 MB.
- A principal's concurrent requests are capped (429 naming the setting, Retry-After); another
  principal is served meanwhile.
- 1,100 half-open connections under a 1,024-descriptor limit: a developer's ``initialize`` and
  ``/health`` answer in < 2 s; the half-open ones are closed after the header timeout; the log stays
  small.
- Repeated denials of one principal: two audit lines, not one per denial; the server log stays flat.
- Without a token: 401 naming the realm with a JSON body saying how to send a token; a wrong token:
  ``error="invalid_token"``; the OAuth discovery paths answer 404 at once.
Figures go to ``<pytest tmp>/reliability/front.json``.
"""

from __future__ import annotations

import hashlib
import json
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, isolated_settings, server_env, shared_template, stop_process, wait_http

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VIEWER, DEVELOPER = "viewer-token-front-0123456789", "developer-token-front-0123456789"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "front", "version": "1"}}}
FIGURES: dict = {}


def tokens_env() -> str:
    return json.dumps([
        {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "principal": "vera", "roles": ["viewer"]},
        {"sha256": hashlib.sha256(DEVELOPER.encode()).hexdigest(), "principal": "dev", "roles": ["developer"]},
    ])


def spawn(root: Path, tmp_path_factory, *, nofile: int | None = None, **variables: str):
    home = root / "home"
    isolated_settings(home, shared_template(tmp_path_factory))
    port = free_port()
    env = server_env(home, NBA_MCP_HTTP_TOKENS=tokens_env(), **variables)
    log = root / "server.log"

    def limit_descriptors() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port",
                                 str(port)], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, preexec_fn=limit_descriptors)
    assert wait_http(f"http://127.0.0.1:{port}/health", 60), log.read_text()[-2000:]
    return proc, port, log, home


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    proc, port, log, home = spawn(root, tmp_path_factory, NBA_MCP_MAX_REQUESTS_PER_PRINCIPAL="6",
                                  NBA_MCP_LOG_REPEAT_INTERVAL_SECONDS="3600",
                                  NBA_MCP_LOG_FILE=str(root / "logs" / "server.log"),
                                  NBA_MCP_LOG_MAX_BYTES="10000", NBA_MCP_LOG_BACKUPS="2")
    yield proc, port, log, home
    stop_process(proc)


@pytest.fixture(scope="module", autouse=True)
def figures_file(tmp_path_factory):
    yield
    outdir = tmp_path_factory.getbasetemp() / "reliability"
    outdir.mkdir(exist_ok=True)
    (outdir / "front.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"\nfront.json: {json.dumps(FIGURES)}")


def request(port: int, path: str, *, method: str = "GET", body: dict | None = None, token: str | None = None,
            headers: dict | None = None, timeout: float = 30) -> tuple[int, Any, str, float]:
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=sent, method=method)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return (response.status, response.headers, response.read(4000).decode(errors="replace"),
                    time.perf_counter() - started)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read(4000).decode(errors="replace"), time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def status_of(sock: socket.socket) -> str:
    try:
        line = sock.recv(200).split(b"\r\n", 1)[0].decode()
        return line.split(" ")[1] if line else "closed"
    except OSError as exc:
        return type(exc).__name__


# --- admission per principal -----------------------------------------------------------------------------


def slow_bodies(port: int, token: str, extra_headers: bytes, *, chunked: bool, sockets: int = 40,
                rounds: int = 8, pid: int) -> tuple[list[str], float]:
    """``sockets`` connections each announce (or stream) an 8 MB body and send it 1 MB per round,
    slowly; returns each connection's answer and the peak RSS seen while they send."""
    length = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: 8000000\r\n"
    head = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n%s%s\r\n"
            % (port, token.encode(), length, extra_headers))
    chunk = b"x" * (1 << 20)
    if chunked:
        chunk = b"100000\r\n" + chunk + b"\r\n"
    conns = []
    for _ in range(sockets):
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.sendall(head)
        conns.append(sock)
    peak = 0.0
    alive = set(range(sockets))
    for _ in range(rounds):
        for index in sorted(alive):
            try:
                conns[index].sendall(chunk)
            except OSError:  # the server answered and closed: this body is refused
                alive.discard(index)
        peak = max(peak, rss_mb(pid))
        time.sleep(0.2)
    answers = [status_of(sock) for sock in conns]
    for sock in conns:
        sock.close()
    return answers, peak


def test_forty_slow_8mb_bodies_from_one_token_add_less_than_100_mb(front):
    proc, port, _log, _home = front
    time.sleep(0.5)
    before = rss_mb(proc.pid)
    made_up, peak_made_up = slow_bodies(port, VIEWER, b"mcp-session-id: 0123456789abcdef0123456789abcdef\r\n",
                                        chunked=False, pid=proc.pid)
    declared, peak_declared = slow_bodies(port, VIEWER, b"", chunked=False, pid=proc.pid)
    streamed, peak_streamed = slow_bodies(port, VIEWER, b"", chunked=True, pid=proc.pid)
    time.sleep(0.5)
    after = rss_mb(proc.pid)
    # A made-up session id is refused before the body (it used to skip the session cap).
    assert set(made_up) == {"404"}, made_up
    # Bodies beyond max_body_bytes_per_principal (16 MiB) are refused with 429 as they arrive.
    assert declared.count("429") >= 38 and set(declared) <= {"429", "408", "400", "closed", "ConnectionResetError"}
    assert streamed.count("429") >= 36, streamed
    growth = max(peak_made_up, peak_declared, peak_streamed) - before
    assert growth < 100, (before, peak_made_up, peak_declared, peak_streamed)
    status, _h, text, seconds = request(port, "/mcp", method="POST", body=INIT, token=DEVELOPER)
    assert status == 200 and "serverInfo" in text
    FIGURES["slow_8mb_bodies_one_token"] = {
        "connections_per_probe": 40, "rss_before_mb": round(before, 1),
        "peak_rss_mb": {"made_up_session_id": round(peak_made_up, 1), "declared_length": round(peak_declared, 1),
                        "chunked": round(peak_streamed, 1)},
        "rss_after_mb": round(after, 1), "max_growth_mb": round(growth, 1),
        "answers": {"made_up_session_id": sorted(set(made_up)),
                    "declared_length": {s: declared.count(s) for s in set(declared)},
                    "chunked": {s: streamed.count(s) for s in set(streamed)}},
        "developer_initialize_seconds_after": round(seconds, 3),
    }


def test_a_principals_concurrent_requests_are_capped_and_another_is_served(front):
    _proc, port, _log, _home = front
    # Six viewer bodies held open (max_requests_per_principal=6); the seventh is refused at once.
    head = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{" % (port, VIEWER.encode()))
    held = []
    for _ in range(6):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head)
        held.append(sock)
    time.sleep(0.3)
    status, headers, text, seconds = request(port, "/mcp", method="POST", body=INIT, token=VIEWER)
    dev_status, _h, dev_text, dev_seconds = request(port, "/mcp", method="POST", body=INIT, token=DEVELOPER)
    for sock in held:
        sock.close()
    assert status == 429 and headers.get("Retry-After") == "2", (status, text)
    assert "settings.max_requests_per_principal" in json.loads(text)["error_description"]
    assert dev_status == 200 and "serverInfo" in dev_text
    FIGURES["requests_per_principal"] = {"cap": 6, "seventh_status": status, "refusal": json.loads(text),
                                         "refusal_seconds": round(seconds, 3),
                                         "other_principal_initialize_seconds": round(dev_seconds, 3)}


# --- discoverable auth --------------------------------------------------------------------------------------


def test_a_client_without_a_token_is_told_how_to_send_one_and_not_sent_to_oauth(front):
    _proc, port, _log, _home = front
    status, headers, text, _ = request(port, "/mcp", method="POST", body=INIT)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="nba-mcp"') and "error=" not in challenge, challenge
    body = json.loads(text)
    assert "a valid bearer token is required" in body["error_description"]
    assert "Authorization: Bearer <token>" in body["error_description"]

    status, headers, text, _ = request(port, "/mcp", method="POST", body=INIT, token="not-a-configured-token")
    assert status == 401 and json.loads(text)["error"] == "invalid_token"
    assert 'realm="nba-mcp", error="invalid_token", error_description="' in headers["WWW-Authenticate"]
    assert "not-a-configured-token" not in text + headers["WWW-Authenticate"]

    discovery = {}
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                 "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        status, _h, text, seconds = request(port, path)
        discovery[path] = (status, round(seconds * 1000, 1))
        assert status == 404 and seconds < 0.5, (path, status, seconds)
        assert "static bearer tokens" in json.loads(text)["error_description"]
    FIGURES["discoverable_auth"] = {"no_token_challenge": challenge, "discovery_status_ms": discovery}


# --- logs ---------------------------------------------------------------------------------------------------


def test_repeated_denials_of_one_principal_write_one_audit_line_not_one_each(front):
    _proc, port, log, home = front
    status, headers, _text, _ = request(port, "/mcp", method="POST", body=INIT, token=VIEWER)
    assert status == 200, status
    session = {"mcp-session-id": headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    request(port, "/mcp", method="POST", body={"jsonrpc": "2.0", "method": "notifications/initialized"},
            token=VIEWER, headers=session)
    audit = home / "audit.jsonl"
    audit_before = audit.stat().st_size if audit.exists() else 0
    log_before = log.stat().st_size
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "cancel_job", "arguments": {"job_id": "0123456789abcdef0123456789abcdef"}}}
    calls = 200
    started = time.perf_counter()
    for _ in range(calls):
        status, _h, text, _ = request(port, "/mcp", method="POST", body=call, token=VIEWER, headers=session)
        assert status == 200 and "permission denied" in text, text[:300]
    seconds = time.perf_counter() - started
    time.sleep(0.3)
    audit_lines = audit.read_bytes()[audit_before:].decode().splitlines()
    denied = [json.loads(line) for line in audit_lines if '"vera"' in line]
    assert len(denied) == 1 and denied[0]["allowed"] is False, audit_lines[:5]
    log_growth = log.stat().st_size - log_before
    assert log_growth / calls < 120, log_growth  # the access log line, nothing per denial besides
    # The log file (settings.log_file) rotated at 10 kB, two backups kept.
    rotated = sorted(p.name for p in (log.parent / "logs").iterdir())
    assert rotated == ["server.log", "server.log.1", "server.log.2"], rotated
    assert all(p.stat().st_size <= 10_000 for p in (log.parent / "logs").iterdir())
    FIGURES["repeated_denials"] = {"calls": calls, "calls_per_second": round(calls / seconds, 1),
                                   "audit_lines_written": len(denied), "server_log_bytes_per_call":
                                   round(log_growth / calls, 1)}


# --- connection flood -----------------------------------------------------------------------------------------


def test_1100_half_open_connections_leave_initialize_and_health_answering(tmp_path_factory):
    root = tmp_path_factory.mktemp("flood")
    proc, port, log, _home = spawn(root, tmp_path_factory, nofile=1024, NBA_MCP_HTTP_HEADER_TIMEOUT_SECONDS="5")
    try:
        idle_fds = open_descriptors(proc.pid)
        half = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: appl" % port
        flood: list[socket.socket] = []
        started = time.perf_counter()
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(half)
            flood.append(sock)
        flood_seconds = time.perf_counter() - started
        time.sleep(0.3)
        held_fds = open_descriptors(proc.pid)
        status, _h, text, init_seconds = request(port, "/mcp", method="POST", body=INIT, token=DEVELOPER, timeout=10)
        health_status, _h, _t, health_seconds = request(port, "/health", timeout=10)
        assert status == 200 and "serverInfo" in text and init_seconds < 2, (status, init_seconds)
        assert health_status == 200 and health_seconds < 2, (health_status, health_seconds)
        # The header timeout (5 s here) closes what is left of the flood.
        deadline = time.monotonic() + 8
        for sock in flood:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
        closed = sum(status_of(sock) in ("closed", "ConnectionResetError") for sock in flood)
        for sock in flood:
            sock.close()
        time.sleep(0.5)
        after_fds = open_descriptors(proc.pid)
        log_text = log.read_text(errors="replace")
    finally:
        stop_process(proc)
    assert closed == 1100, closed
    assert held_fds < 1024 and after_fds < idle_fds + 20, (idle_fds, held_fds, after_fds)
    assert "Too many open files" not in log_text
    assert len(log_text) < 20_000, log_text[-3000:]
    FIGURES["half_open_flood"] = {
        "connections": 1100, "rlimit_nofile": 1024, "open_seconds": round(flood_seconds, 2),
        "server_fds_idle": idle_fds, "server_fds_during_flood": held_fds, "server_fds_after": after_fds,
        "developer_initialize_seconds": round(init_seconds, 3), "health_seconds": round(health_seconds, 3),
        "flood_connections_closed_by_the_server": closed, "server_log_bytes": len(log_text),
    }
