"""Bounded input shape: a file wider than ``max_data_columns`` is refused by the parser from its header.

A 1,000,000-column CSV of ~12 MB (far under max_data_bytes) took 288 s and 2.1 GB in
describe_dataset, and server_health took 7.8 s meanwhile. Now every tool that reads it answers
within 1 s naming the limit; a file at the limit describes in bounded time while server_health
stays fast. Figures go to ``<pytest tmp>/reliability/shape.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
import pytest
from mcp import Client

from tools.server import build_server
from tests.support import error_text, isolated_settings, shared_template

pytestmark = pytest.mark.anyio
FIGURES: dict = {}


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    n = 1_000_000
    with open(folder / "million.csv", "w") as out:
        out.write(",".join(f"c{i}" for i in range(n)) + "\n")
        row = ",".join(["0"] * n) + "\n"
        out.write(row * 2)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, 1999)).round(3), columns=[f"c{i}" for i in range(1999)])
    frame["label"] = (frame["c0"] > 0).astype(int)
    frame.to_csv(folder / "at_limit.csv", index=False)
    yield folder
    out = tmp_path_factory.getbasetemp() / "reliability"
    out.mkdir(exist_ok=True)
    (out / "shape.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"\nshape.json: {json.dumps(FIGURES)}")


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory, wide_folder):
    settings = isolated_settings(tmp_path_factory.mktemp("home"), shared_template(tmp_path_factory),
                                 data_dirs=[wide_folder])
    server = build_server(settings)
    yield server
    server.state.close()


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("describe_dataset", {"name": "million"}),
        ("validate_data", {"request": {"dataset": "million"}}),
        ("tune_hyperparameters", {"request": {"dataset": "million", "target": "c0", "wait_seconds": 0}}),
    ],
    ids=["describe", "validate", "tune"],
)
async def test_a_million_column_file_is_refused_from_its_header_within_a_second(wide_server, wide_folder, tool,
                                                                              arguments):
    if tool == "tune_hyperparameters":
        arguments = {"request": {"dataset": "million", "target": "c0"}, "wait_seconds": 0}
    async with Client(wide_server) as client:
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        elapsed = time.perf_counter() - started
    text = error_text(result)
    assert result.is_error and "more than 2000 columns in its header, above max_data_columns=2000" in text, text
    assert elapsed < 1.0
    FIGURES.setdefault("million_columns", {"file_bytes": (wide_folder / "million.csv").stat().st_size})[tool] = {
        "seconds": round(elapsed, 3), "message": text[:140]}


async def test_a_file_at_the_column_limit_describes_while_server_health_stays_fast(wide_server):
    health_latencies: list[float] = []
    describe_seconds: list[float] = []
    async with Client(wide_server) as client:
        await client.call_tool("server_health", {})  # warm

        async def describe() -> None:
            started = time.perf_counter()
            result = await client.call_tool("describe_dataset", {"name": "at_limit", "target": "label"})
            describe_seconds.append(time.perf_counter() - started)
            assert not result.is_error, result.content[0].text

        async def health() -> None:
            while not describe_seconds:
                started = time.perf_counter()
                await client.call_tool("server_health", {})
                health_latencies.append(time.perf_counter() - started)
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as group:
            group.start_soon(describe)
            group.start_soon(health)
    assert describe_seconds[0] < 60
    assert max(health_latencies) < 2.0, health_latencies
    FIGURES["at_limit_2000_columns"] = {
        "rows": 2000, "describe_seconds": round(describe_seconds[0], 2), "health_calls": len(health_latencies),
        "health_p50_s": round(statistics.median(health_latencies), 3), "health_max_s": round(max(health_latencies), 3),
    }
