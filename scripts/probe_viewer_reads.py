"""Probe (issue 29): a viewer's 40 concurrent describe_dataset on a 2,000 x 2,000 CSV, a developer's calls meanwhile.

    PYTHONPATH=$PWD python scripts/probe_viewer_reads.py [work folder, default /tmp/nba-mcp-probe-reads]

Spawns ``nba-mcp serve --transport http`` with a viewer and a developer token, fires the viewer's 40
calls on one session while the developer calls ``list_jobs`` every 0.3 s, and prints the viewer's
time and outcomes, the server's RSS and the developer's latencies (docs/reliability.md, round 3).
Takes minutes: not part of the test suite (``tests/test_tools_admission.py`` checks the bound).
"""
import hashlib, json, subprocess, sys, time, os
from pathlib import Path
import anyio, httpx2, numpy as np, pandas as pd
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.support import free_port, server_env, wait_http, stop_process

root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/nba-mcp-probe-reads"); data = root / "data"; data.mkdir(parents=True, exist_ok=True)
csv = data / "wide.csv"
if not csv.exists():
    rng = np.random.default_rng(0)
    f = pd.DataFrame(rng.normal(size=(2000, 1999)).round(4), columns=[f"c{i}" for i in range(1999)]); f["target"] = rng.integers(0, 2, 2000)
    f.to_csv(csv, index=False)
V, D = "viewer-probe-token-0123456789", "developer-probe-token-0123456789"
tokens = json.dumps([{"sha256": hashlib.sha256(V.encode()).hexdigest(), "principal": "vera", "roles": ["viewer"]},
                     {"sha256": hashlib.sha256(D.encode()).hexdigest(), "principal": "dev", "roles": ["developer"]}])
port = free_port(); base = f"http://127.0.0.1:{port}"
env = server_env(root / "home", data_dirs=[data], NBA_MCP_HTTP_TOKENS=tokens, NBA_MCP_LOG_LEVEL="WARNING")
proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--transport", "http", "--port", str(port)],
                        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"))
def rss(): return int([l for l in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if l.startswith("VmRSS")][0].split()[1]) / 1024
def connect(token): return Client(streamable_http_client(base + "/mcp", http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=300)))
async def main():
    out = {"rss_before_mb": rss()}; peak = [0.0]; dev = []; statuses = {}
    done = anyio.Event()
    async def sample():
        while not done.is_set(): peak[0] = max(peak[0], rss()); await anyio.sleep(0.2)
    async def viewer():
        async with connect(V) as c:
            async def one():
                try:
                    r = await c.call_tool("describe_dataset", {"name": "wide"}); k = "error" if r.is_error else "ok"
                except Exception as e: k = type(e).__name__ + ":" + str(e)[:80]
                statuses[k] = statuses.get(k, 0) + 1
            t = time.perf_counter()
            async with anyio.create_task_group() as g:
                for _ in range(40): g.start_soon(one)
            out["viewer_seconds"] = time.perf_counter() - t
        done.set()
    async def developer():
        async with connect(D) as c:
            await c.call_tool("list_datasets", {})
            while not done.is_set():
                t = time.perf_counter(); await c.call_tool("list_jobs", {}); dev.append(time.perf_counter() - t); await anyio.sleep(0.3)
    async with anyio.create_task_group() as g:
        g.start_soon(sample); g.start_soon(viewer); g.start_soon(developer)
    out.update(peak_rss_mb=peak[0], rss_after_mb=rss(), viewer_statuses=statuses, developer_calls=len(dev),
               developer_max_s=max(dev), developer_p50_s=sorted(dev)[len(dev)//2])
    print(json.dumps(out, indent=1))
try:
    assert wait_http(base + "/health", 90)
    anyio.run(main)
finally:
    stop_process(proc)
