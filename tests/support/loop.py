"""Watching the event loop from a test: a blocked loop shows as missing ticks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Ticks:
    """How many 10 ms ticks the loop has run since :func:`ticking` started."""

    count = 0


@asynccontextmanager
async def ticking(every: float = 0.01) -> AsyncIterator[Ticks]:
    ticks = Ticks()

    async def tick() -> None:
        while True:
            await asyncio.sleep(every)
            ticks.count += 1

    task = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        task.cancel()
