"""Calls that load a data file: at most ``max_read_calls_per_principal`` at a time per principal,
the rest wait their turn, and another principal never waits in that line (in-memory ``Client``)."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pandas as pd
import pytest
from mcp import Client

from mcp_server import rbac
from tools.admission import ReadCallLimit
from tools.server import build_server
from tests.support import VIEWER, isolated_settings, payload

pytestmark = pytest.mark.anyio
DEVELOPER = rbac.Principal("dev", {"developer"})
FILES = 6


@pytest.fixture
def wide_folder(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for number in range(FILES):  # distinct files: no call is served from another's cached frame
        frame = pd.DataFrame(rng.normal(size=(600, 80)), columns=[f"c{i}" for i in range(80)])
        frame["target"] = rng.integers(0, 2, size=len(frame))
        frame.to_csv(folder / f"wide{number}.csv", index=False)
    return folder


async def test_a_viewers_data_reads_run_two_at_a_time_and_a_developer_is_not_held_up(tmp_path,
                                                                                    wide_folder):
    settings = isolated_settings(tmp_path / "home", data_dirs=[wide_folder],  # no store: reads only
                                 max_read_calls_per_principal=2)
    server = build_server(settings)
    limit = next(m for m in server._lowlevel_server.middleware if isinstance(m, ReadCallLimit))
    peak: dict[str, int] = {}
    viewer_done: list[float] = []
    developer_seconds: list[float] = []
    developer_done: list[float] = []
    running = True

    async def sample() -> None:
        while running:
            for who in ("vera", "dev"):
                peak[who] = max(peak.get(who, 0), limit.running(who))
            await anyio.sleep(0.002)

    async def viewer() -> None:
        with rbac.acting_as(VIEWER):
            async with Client(server) as client:
                async def read(number: int) -> None:
                    result = await client.call_tool("describe_dataset", {"name": f"wide{number}"})
                    assert not result.is_error, result.content[0].text
                    assert payload(result)["n_rows"] == 600
                    viewer_done.append(time.perf_counter())

                async with anyio.create_task_group() as group:
                    for number in range(FILES):
                        group.start_soon(read, number)

    async def developer() -> None:
        with rbac.acting_as(DEVELOPER):
            async with Client(server) as client:
                with anyio.fail_after(60):
                    while peak.get("vera", 0) < 2:  # the viewer's six calls are in (two running, four waiting)
                        await anyio.sleep(0.01)
                started = time.perf_counter()
                result = await client.call_tool("describe_dataset", {"name": "wide0"})
                developer_seconds.append(time.perf_counter() - started)
                developer_done.append(time.perf_counter())
                assert not result.is_error

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            async with anyio.create_task_group() as work:
                work.start_soon(viewer)
                work.start_soon(developer)
            running = False
    finally:
        server.state.close()
    print(f"\nviewer span {max(viewer_done) - min(viewer_done):.2f} s, developer {developer_seconds}")
    assert peak["vera"] == 2, peak  # never more than the setting, and the setting was reached
    assert len(viewer_done) == FILES
    # The developer's read did not queue behind the viewer's waiting calls: it ended before their last.
    assert developer_done and developer_done[0] < max(viewer_done), (developer_seconds, viewer_done)
    assert limit.running("vera") == 0 and "vera" not in limit._slots  # idle principals leave no state
