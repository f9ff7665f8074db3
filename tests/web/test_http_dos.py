"""The status port cannot starve the probes (issue 12, item 7): the real agent, run with a low
file-descriptor limit, is flooded with idle and slow-header connections on ``agent.listen``;
its healthy targets stay up, the listener drops the idle clients within its timeouts, /healthz
answers again and the log stays small. Everything is on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.agent import read_events
from tests.support.peers.fleet import Fleet

FD_LIMIT = 256
FLOOD = 320  # more idle connections than the agent may open files
HEADER_TIMEOUT = 5.0  # agent.web.api.HEADER_TIMEOUT
SLACK = 2.5


def _low_fd_limit() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


async def _connect(port: int) -> socket.socket | bool:
    """An idle client: connected, sends nothing. True when the agent reset it at once (over its
    connection limit, often before the connect call returned), False when it did not come up."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 3.0)
    except ConnectionResetError:
        sock.close()
        return True
    except (OSError, TimeoutError):
        sock.close()
        return False
    return sock


async def _closed_by_peer(sock: socket.socket, within: float) -> float | None:
    """Seconds until the agent closed ``sock`` (EOF or reset), or None if still open after ``within``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while True:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), max(0.01, start + within - loop.time()))
            if not data:
                break
    except TimeoutError:
        return None
    except OSError:
        pass  # reset: closed too
    return loop.time() - start


async def _drip_headers(port: int, within: float, connected: asyncio.Event) -> float | None:
    """A slow-header client: one header byte every 0.2 s. Seconds until the agent hung up."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = loop.time()
    connected.set()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        while loop.time() - start < within:
            writer.write(b"X")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    return loop.time() - start
        return None
    except OSError:
        return loop.time() - start
    finally:
        writer.close()


async def _healthz(port: int, within: float) -> int | None:
    """Status of GET /healthz, retried until it answers or ``within`` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    timeout = aiohttp.ClientTimeout(total=1.0)
    while loop.time() < deadline:
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as s,
                s.get(f"http://127.0.0.1:{port}/healthz") as r,
            ):
                return r.status
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)
    return None


async def test_idle_connections_do_not_starve_probes(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 100:
        if hard < FLOOD + 100 and hard != resource.RLIM_INFINITY:
            pytest.skip(f"this test process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FLOOD + 100, hard))
    fleet = Fleet()
    await fleet.start(2)
    events = tmp_path / "events.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"agent: {{name: dos, state_dir: '{tmp_path}', listen: '127.0.0.1:0'}}\n"
        "checks:\n"
        f"  - {{name: web, type: http, targets: {fleet.urls}, interval: 300ms, timeout: 250ms}}\n"
        f"sinks: [{{type: file, path: '{events}'}}]\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, preexec_fn=_low_fd_limit,
    )  # fmt: skip
    assert proc.stderr is not None
    log = bytearray()
    port_seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.extend(line)
            m = re.search(rb"status endpoint on 127\.0\.0\.1:(\d+)", line)
            if m and not port_seen.done():
                port_seen.set_result(int(m.group(1)))

    reader = asyncio.create_task(read_log())
    socks: list[socket.socket] = []
    try:
        port = await asyncio.wait_for(port_seen, 15)
        # the targets are up before the flood
        assert await _healthz(port, 5.0) == 200
        flood_start = time.monotonic()
        connected = asyncio.Event()
        drip = asyncio.create_task(_drip_headers(port, HEADER_TIMEOUT + SLACK, connected))
        await asyncio.wait_for(connected.wait(), 3)
        await asyncio.sleep(0.3)  # the slow client is being served before the flood takes the other slots
        reset = 0
        for _ in range(FLOOD // 32):  # in waves, so that the kernel's listen backlog takes them all
            got = await asyncio.gather(*(_connect(port) for _ in range(32)))
            socks += [s for s in got if isinstance(s, socket.socket)]
            reset += sum(s is True for s in got)
        assert len(socks) + reset == FLOOD
        # every idle connection is closed by the agent: at once past the cap, else by the header timeout
        closed = await asyncio.gather(*(_closed_by_peer(s, HEADER_TIMEOUT + SLACK) for s in socks))
        still_open = sum(c is None for c in closed)
        dripped = await drip
        downs = log.count(b" down ")
        assert still_open == 0, f"{still_open} of {len(socks)} idle still open; {downs} down, {len(log)}B log"
        assert dripped is not None and HEADER_TIMEOUT - 1 <= dripped <= HEADER_TIMEOUT + SLACK, dripped
        assert await _healthz(port, 3.0) == 200
        held = time.monotonic() - flood_start
        await asyncio.sleep(0.5)  # a probe round after the flood, to see its effect too
        text = log.decode(errors="replace")
        assert " down " not in text and "Too many open files" not in text, text[-2000:]
        assert [e for e in read_events(events) if e["kind"] == "firing"] == []
        assert text.count("refusing more") == 1 and "accepting connections again" in text, text
        assert len(log) < 16 * 1024, f"{len(log)} log bytes in {held:.1f}s: {text[-2000:]}"
        slowest = max(c or 0 for c in closed)
        print(f"flood: {len(socks)} connected, {reset} reset at once, closed within {slowest:.2f}s, "
              f"slow-header client dropped after {dripped:.2f}s, log {len(log)} bytes")  # fmt: skip
    finally:
        for s in socks:
            s.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        for r in fleet.runners:
            await r.cleanup()


def test_raise_nofile_limit_takes_the_soft_limit_to_the_hard_one() -> None:
    """In a child started with soft 256 / hard 512, as under a LimitNOFILE=256:512 unit."""
    script = (
        "import resource; from agent.core.fd_limit import listener_cap, raise_nofile_limit; "
        "print(raise_nofile_limit(), resource.getrlimit(resource.RLIMIT_NOFILE), listener_cap(64))"
    )

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, preexec_fn=limits, check=True
    ).stdout
    assert out.split() == ["(256,", "512)", "(512,", "512)", "64"], out
