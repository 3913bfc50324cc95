"""A minimal MCP client for a running `nba-mcp serve --transport http` server.

    NBA_MCP_HTTP_TOKEN=change-me nba-mcp serve --transport http --port 8765 &
    NBA_MCP_HTTP_TOKEN=change-me python examples/http_client.py

It lists the tools, describes a data set, runs a short tuning job while printing its progress,
and polls the job if it outlives the call.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = os.environ.get("NBA_MCP_URL", "http://127.0.0.1:8765/mcp")


def answer(result) -> dict:
    """A tool's answer: one JSON text block."""
    return json.loads(result.content[0].text)


async def main() -> int:
    token = os.environ.get("NBA_MCP_HTTP_TOKEN")
    if not token:
        print("set NBA_MCP_HTTP_TOKEN to the server's token", file=sys.stderr)
        return 2
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with Client(streamable_http_client(URL, http_client=http)) as client:
        tools = (await client.list_tools()).tools
        print("tools:", ", ".join(t.name for t in tools))

        description = answer(await client.call_tool("describe_dataset", {"dataset": "sklearn:breast_cancer"}))
        print(f"breast_cancer: {description['n_rows']} rows, target {description['target']['class_counts']}")

        async def on_progress(current: float, total: float | None, message: str | None) -> None:
            print("  progress:", message)

        request = {"dataset": "sklearn:breast_cancer", "estimator": "logistic_regression",
                   "max_trials": 8, "cv_folds": 3, "seed": 0}
        result = await client.call_tool("tune_hyperparameters", {"request": request, "wait_seconds": 20},
                                        progress_callback=on_progress)
        if result.is_error:
            print("error:", result.content[0].text, file=sys.stderr)
            return 1
        job = answer(result)
        while not job["done"]:
            job = answer(await client.call_tool("get_job", {"job_id": job["job_id"], "wait_seconds": 20},
                                                progress_callback=on_progress))
        outcome = job["result"]
        print(f"best {outcome['scoring']} = {outcome['best_score']:.4f} with {outcome['best_params']}")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
