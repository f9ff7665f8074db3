"""Shared end-to-end helpers: a controllable fleet of web servers and the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
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


class Daemon:
    """A daemon subprocess whose log is collected as it runs."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.log += line.decode(errors="replace")

    async def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.log):
                return m
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log:\n{self.log[-3000:]}")

    async def port(self) -> int:
        return int((await self.wait_log(r"status endpoint on 127\.0\.0\.1:(\d+)")).group(1))

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 20)
        await self._reader
        return self.log


async def start_daemon(config: Path, *args: str, env: dict[str, str] | None = None) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(config), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return Daemon(proc)


class Switch:
    """TCP servers on 127.0.0.1 that the test takes down and brings back, counting connections."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ports: list[int] = []
        self.hits: list[int] = [0] * n
        self.servers: list[asyncio.Server | None] = [None] * n

    async def up(self, i: int) -> None:
        def accepted(_r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int = i) -> None:
            self.hits[i] += 1
            w.close()

        port = self.ports[i] if len(self.ports) > i else 0
        server = await asyncio.start_server(accepted, "127.0.0.1", port, reuse_address=True)
        if len(self.ports) <= i:
            self.ports.append(server.sockets[0].getsockname()[1])
        self.servers[i] = server

    async def down(self, i: int) -> None:
        server = self.servers[i]
        if server is not None:
            server.close()
            await server.wait_closed()
            self.servers[i] = None
