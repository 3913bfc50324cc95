"""Calls that load a data file run at most ``max_read_calls_per_principal`` at a time per principal.

``describe_dataset``, ``validate_data`` and the ``datasets://…/schema`` resource parse a whole file:
a viewer's 40 concurrent ``describe_dataset`` on a legal 2,000 × 2,000 CSV took 101 s and 2.0 GB and
delayed a developer's calls by up to 14 s. Further calls of the same principal wait their turn
(how many may wait is bounded over HTTP by ``max_requests_per_principal``); other principals'
calls are never held up by this line.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server import rbac
from tools import data

DATA_READING_TOOLS = frozenset(fn.__name__ for fn in (data.describe_dataset, data.validate_data))
DATA_READING_RESOURCES = ("datasets://",)


class ReadCallLimit:
    """Server middleware (after ``IdentityMiddleware``, which binds the principal)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, anyio.Semaphore] = {}
        self._holders: Counter[str] = Counter()  # running and waiting calls, to drop idle semaphores

    @staticmethod
    def loads_data(ctx: ServerRequestContext[Any, Any]) -> bool:
        params = ctx.params or {}
        if ctx.method == "tools/call":
            return params.get("name") in DATA_READING_TOOLS
        if ctx.method == "resources/read":
            return str(params.get("uri", "")).startswith(DATA_READING_RESOURCES)
        return False

    def running(self, principal: str) -> int:
        slot = self._slots.get(principal)
        return 0 if slot is None else self.limit - slot.value

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        principal = rbac.current_principal()
        if principal is None or not self.loads_data(ctx):
            return await call_next(ctx)
        key = principal.id
        slot = self._slots.setdefault(key, anyio.Semaphore(self.limit))
        self._holders[key] += 1
        try:
            async with slot:
                return await call_next(ctx)
        finally:
            self._holders[key] -= 1
            if self._holders[key] == 0:
                del self._holders[key], self._slots[key]
