"""Shared end-to-end helpers: a controllable fleet of web servers and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

Run = tuple[int, str, str]


class Fleet:
    """Three web servers whose status the test controls."""

    def __init__(self) -> None:
        self.status = 200
        self.runners: list[web.AppRunner] = []
        self.ports: list[int] = []
        self.hits = 0
        self.then: tuple[int, int] | None = None  # (after N requests, switch to this status)

    async def handle(self, request: web.Request) -> web.Response:
        status = self.status
        self.hits += 1
        if self.then is not None and self.hits >= self.then[0]:
            self.status, self.then = self.then[1], None
        return web.Response(status=status, text="Add to cart" if status == 200 else "oops")

    async def start(self, n: int = 3) -> None:
        for _ in range(n):
            app = web.Application()
            app.router.add_get("/", self.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            self.ports.append(runner.addresses[0][1])

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/" for p in self.ports]


async def firstwatch(*args: str, timeout: float = 30) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_for_events(
    path: Path, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        evs = read_events(path)
        if pred(evs):
            return evs
        await asyncio.sleep(0.05)
    evs = read_events(path)
    raise AssertionError(f"timed out; {len(evs)} events so far, the last: {[e['summary'] for e in evs[-3:]]}")


async def start_agent(config: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", config,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
