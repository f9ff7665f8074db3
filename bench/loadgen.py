"""Fixed-rate request loops: the bare baselines, and the driver that makes blackbox_exporter probe.

    python bench/loadgen.py bare-http --rate 200 --url http://127.0.0.1:18080/t --targets 200
    python bench/loadgen.py bare-tcp  --rate 200 --tcp 127.0.0.1:18081
    python bench/loadgen.py drive-blackbox --rate 200 --exporter 127.0.0.1:9115 --module http_2xx \\
        --url http://127.0.0.1:18080/t --targets 200

- ``bare-http``: the floor of this stack: one ``aiohttp.ClientSession`` with
  ``TCPConnector(force_close=True)`` (a fresh connection per request, like firstwatch's probes),
  GET, read the body, check the status. Nothing else: no deadline, no phases, no rules, no state.
- ``bare-tcp``: ``asyncio.open_connection`` then ``transport.abort()``; the floor for tcp probes.
- ``raw-http``: the same GET over ``asyncio.open_connection`` with no HTTP library (how much of
  the floor is aiohttp); ``--uvloop`` runs any mode on uvloop (not a project dependency).
- ``drive-blackbox``: ``GET /probe?module=M&target=T`` on the exporter at the same rate over a
  keep-alive session (as Prometheus scrapes it); this process's CPU is *not* the exporter's and
  is not counted against it.

Requests are paced evenly (one every 1/rate seconds, like firstwatch's spread schedule), the
targets cycle through ``--targets`` distinct paths. It runs until SIGTERM or ``--duration`` and
writes ``{"sent", "ok", "failed"}`` to ``--stats-file`` at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import urllib.parse
from collections import Counter

import aiohttp

STATS: Counter[str] = Counter()


async def pace(rate: float, duration: float | None, one, max_inflight: int = 2000) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    step = 1.0 / rate
    nxt = loop.time()
    i = 0
    while not stop.is_set():
        now = loop.time()
        if nxt > now:
            await asyncio.sleep(nxt - now)
            continue
        nxt += step
        if len(tasks) >= max_inflight:  # the target is stuck: don't pile up
            STATS["skipped"] += 1
            continue
        STATS["sent"] += 1
        t = asyncio.ensure_future(one(i))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        i += 1
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def bare_http(args: argparse.Namespace) -> None:
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        urls = [f"{args.url}/{i}" for i in range(args.targets)]

        async def one(i: int) -> None:
            try:
                async with session.get(urls[i % len(urls)]) as resp:
                    await resp.read()
                    STATS["ok" if resp.status == 200 else "failed"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                STATS["failed"] += 1

        await pace(args.rate, args.duration, one)


async def bare_tcp(args: argparse.Namespace) -> None:
    host, port = args.tcp.rsplit(":", 1)

    async def one(i: int) -> None:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.transport.abort()
            STATS["ok"] += 1
        except OSError:
            STATS["failed"] += 1

    await pace(args.rate, args.duration, one)


async def raw_http(args: argparse.Namespace) -> None:
    """HTTP/1.1 GET over ``asyncio.open_connection`` with no HTTP library: what asyncio alone costs."""
    from urllib.parse import urlsplit

    base = urlsplit(args.url)
    host, port = base.hostname or "127.0.0.1", base.port or 80
    reqs = [
        f"GET {base.path}/{i} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        for i in range(args.targets)
    ]

    async def one(i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(reqs[i % len(reqs)])
            data = await reader.read()
            writer.transport.abort()
            STATS["ok" if data.startswith(b"HTTP/1.1 200 ") else "failed"] += 1
        except OSError:
            STATS["failed"] += 1

    await pace(args.rate, args.duration, one)


async def drive_blackbox(args: argparse.Namespace) -> None:
    if args.module.startswith("tcp"):
        targets = [args.tcp] * args.targets
    else:
        targets = [f"{args.url}/{i}" for i in range(args.targets)]
    urls = [
        f"http://{args.exporter}/probe?" + urllib.parse.urlencode({"module": args.module, "target": t}) for t in targets
    ]
    connector = aiohttp.TCPConnector(limit=0)  # keep-alive to the exporter, as Prometheus does
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(i: int) -> None:
            try:
                async with session.get(urls[i % len(urls)]) as resp:
                    body = await resp.read()
                    STATS["ok" if b"\nprobe_success 1" in body else "failed"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                STATS["failed"] += 1

        await pace(args.rate, args.duration, one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["bare-http", "bare-tcp", "raw-http", "drive-blackbox"])
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (if importable)")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--duration", type=float, help="seconds (default: until SIGTERM)")
    ap.add_argument("--url", help="base URL of the HTTP target; /N is appended")
    ap.add_argument("--targets", type=int, default=200, help="distinct targets to cycle through")
    ap.add_argument("--tcp", help="HOST:PORT of the TCP target")
    ap.add_argument("--exporter", help="HOST:PORT of blackbox_exporter")
    ap.add_argument("--module", default="http_2xx")
    ap.add_argument("--stats-file")
    args = ap.parse_args()
    run = {"bare-http": bare_http, "bare-tcp": bare_tcp, "raw-http": raw_http, "drive-blackbox": drive_blackbox}
    try:
        if args.uvloop:
            import uvloop

            uvloop.run(run[args.mode](args))
        else:
            asyncio.run(run[args.mode](args))
    finally:
        if args.stats_file:
            with open(args.stats_file, "w") as f:
                json.dump(dict(STATS), f)


if __name__ == "__main__":
    main()
