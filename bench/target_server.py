"""Local probe targets for the benchmarks: cheap HTTP and TCP listeners that count what they serve.

Run as its own process so its CPU never lands in a prober's measurement::

    python bench/target_server.py --http 18080 --tcp 18081 --tcp 18082 --ready-file /tmp/ready

- every ``--http`` port answers any request with ``200 OK``, a 2-byte body and ``Connection: close``
  (a fresh connection per probe, as every contender is configured to use);
- every ``--tcp`` port accepts a connection and counts it (``tcp_connect`` style: the prober
  closes it);
- ``GET /__count`` on any HTTP port returns the counters as JSON and is not counted itself.

A raw ``asyncio.Protocol`` (no HTTP framework) keeps the target's own cost to a few tens of
microseconds per connection, so it stays out of the way on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections import Counter

COUNTS: Counter[str] = Counter()
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class HttpTarget(asyncio.Protocol):
    def __init__(self, port: int) -> None:
        self.port = port
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf or self.transport is None:
            return
        if self.buf.startswith(b"GET /__count "):
            body = json.dumps(dict(COUNTS)).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            self.transport.write(head + body)
        else:
            COUNTS[f"http:{self.port}"] += 1
            self.transport.write(_OK)
        self.transport.close()
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class TcpTarget(asyncio.Protocol):
    def __init__(self, port: int) -> None:
        self.port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        COUNTS[f"tcp:{self.port}"] += 1

    def data_received(self, data: bytes) -> None:  # tcp probes send nothing; ignore anything
        pass


async def serve(http_ports: list[int], tcp_ports: list[int], ready_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for port in http_ports:
        servers.append(
            await loop.create_server(lambda p=port: HttpTarget(p), "127.0.0.1", port, backlog=4096, reuse_address=True)
        )
    for port in tcp_ports:
        servers.append(
            await loop.create_server(lambda p=port: TcpTarget(p), "127.0.0.1", port, backlog=4096, reuse_address=True)
        )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(ready_file + ".tmp", ready_file)
    await stop.wait()
    for s in servers:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--http", type=int, action="append", default=[], help="HTTP port (repeatable)")
    ap.add_argument("--tcp", type=int, action="append", default=[], help="TCP port (repeatable)")
    ap.add_argument("--ready-file", help="written (with the PID) once every port listens")
    args = ap.parse_args()
    asyncio.run(serve(args.http, args.tcp, args.ready_file))


if __name__ == "__main__":
    main()
