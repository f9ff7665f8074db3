"""Servers on 127.0.0.1:0 for tests: a raw TCP (or TLS) server running one handler per connection,
an aiohttp application, and a port where nothing listens."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve_tcp(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Run ``handler`` per connection (after the TLS handshake with ``tls``); yields the
    ``127.0.0.1:PORT`` target. A client hanging up is expected (hostile servers are tested), and
    at the end every connection is aborted and every handler cancelled."""

    handlers: set[asyncio.Task[None]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the probe hung up on us (expected for hostile servers), or the test is over
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers)


async def serve_app(
    app: web.Application, ssl_context: ssl.SSLContext | None = None, **runner_options: Any
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 (over TLS with ``ssl_context``); the runner (to clean up) and port."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    return runner, server.sockets[0].getsockname()[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
