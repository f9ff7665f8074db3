"""Real servers on 127.0.0.1 whose behaviour the test controls: :class:`Fleet` (web servers and their
status) and :class:`Switch` (TCP servers taken down and brought back)."""

from __future__ import annotations

import asyncio

from aiohttp import web


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
