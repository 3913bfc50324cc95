"""Logs that cannot fill a disk: size rotation shared by processes, repeated events summarized."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from mcp_server.log_bounds import RepeatedEvents, RotatingAppender
from mcp_server.rbac import AuditLog, Permission, Principal


def _append_lines(path: str, writer: int, lines: int) -> None:
    appender = RotatingAppender(Path(path), max_bytes=4_000, backups=100)
    for number in range(lines):
        appender.append(json.dumps({"writer": writer, "n": number, "pad": "x" * 40}) + "\n")


def test_rotation_keeps_whole_lines_and_every_line_across_two_processes(tmp_path):
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_lines, args=(str(path), w, 400)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    files = [path, *sorted(tmp_path.glob("audit.jsonl.*[0-9]"))]
    assert len(files) > 5  # ~60 KB written, rotated every 4 KB
    assert all(f.stat().st_size <= 4_000 for f in files)
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted((e["writer"], e["n"]) for e in entries) == [(w, n) for w in range(2) for n in range(400)]


def test_rotation_drops_the_oldest_beyond_the_backups(tmp_path):
    path = tmp_path / "server.log"
    appender = RotatingAppender(path, max_bytes=1_000, backups=3)
    for number in range(300):
        appender.append(f"line {number:04d} " + "y" * 40 + "\n")
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert names == ["server.log", "server.log.1", "server.log.2", "server.log.3"]
    assert "line 0299" in path.read_text() and "line 0000" not in "".join(p.read_text() for p in tmp_path.glob("server.log*"))


def test_repeated_events_let_the_first_through_and_report_the_count_once():
    now = [0.0]
    reported = []
    events = RepeatedEvents(60, lambda key, count, details, seconds: reported.append((key, count, details, seconds)),
                            clock=lambda: now[0])
    assert events.admit("vera", "cancel_job")
    assert not any(events.admit("vera", "cancel_job") for _ in range(212))
    assert events.admit("dev", "tune")  # another key has its own window
    assert reported == []
    now[0] = 61.0
    assert events.admit("vera", "cancel_job")  # a new interval: written in full again, the count reported
    assert reported == [("vera", 212, {"cancel_job": 212}, 61.0)]
    events.admit("vera", "delete")
    events.flush()
    assert reported[-1] == ("vera", 1, {"delete": 1}, 0.0)


def test_audit_log_rotates_and_summarizes_denials(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=10_000, backups=2, repeat_interval=3600)
    vera, dev = Principal("vera", {"viewer"}), Principal("dev", {"developer"})
    for _ in range(500):
        log.record(principal=vera, permission=Permission.EXECUTE, action="tune_hyperparameters", allowed=False)
    for _ in range(200):
        log.record(principal=dev, permission=Permission.READ, action="get_job", allowed=True)
    log.flush()
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert [f.name for f in files if not f.name.endswith(".lock")] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(f.stat().st_size <= 10_000 for f in files)
    newest = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert newest[-1] == {**newest[-1], "principal": "vera", "allowed": False, "repeated": 499,
                          "actions": {"tune_hyperparameters": 499}}
