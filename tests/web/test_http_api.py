"""The read-only HTTP endpoint: a real server on 127.0.0.1:0, a small real StatusSource, a real client."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agent.config.settings import parse_listen
from agent.core.errors import StatusUnavailable
from agent.web.api import HEADER_TIMEOUT, HttpServer, start_http
from agent.web.client import fetch_status

SNAPSHOT: dict[str, Any] = {
    "agent": {
        "name": "mon-01",
        "version": "0.1.0",
        "started_at": "2026-11-24T02:00:00.000Z",
        "uptime_s": 2100.0,
        "labels": {"env": "prod"},
    },
    "refresh_s": 10,
    "summary": {"checks": 1, "targets": 1, "up": 0, "down": 1, "open_incidents": 0, "worst": None},
    "incidents": [],
    "checks": [
        {
            "name": "shop-web",
            "type": "http",
            "interval_s": 30.0,
            "members": [
                {
                    "target": "https://10.0.0.2/",
                    "up": False,
                    "last_run": "2026-11-24T02:34:05.000Z",
                    "duration_s": 0.04,
                    "error": "HTTP 503 from 10.0.0.2:443",
                    "values": {"status": 503.0},
                    "firing": [],
                }
            ],
        }
    ],
}
METRICS = b'# TYPE firstwatch_check_up gauge\nfirstwatch_check_up{check_name="shop-web"} 0\n'
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Source:
    def __init__(self) -> None:
        self.alive: tuple[bool, str] = (True, "")
        self.metrics_on = False
        self.broken = False

    async def snapshot(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("SECRET-INTERNALS: the state lock is poisoned")
        return SNAPSHOT

    def healthy(self) -> tuple[bool, str]:
        return self.alive

    def metrics(self) -> tuple[bytes, str] | None:
        return (METRICS, PROM_TYPE) if self.metrics_on else None


@pytest.fixture
async def served() -> AsyncIterator[tuple[Source, HttpServer, aiohttp.ClientSession]]:
    source = Source()
    server = await start_http("127.0.0.1:0", source)
    assert server.port > 0
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield source, server, client
    await server.close()


def assert_secure(resp: aiohttp.ClientResponse) -> None:
    h = resp.headers
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Cache-Control"] == "no-store"
    assert h["Referrer-Policy"] == "no-referrer"
    csp = h["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
    assert "aiohttp" not in h.get("Server", "")


async def test_routes(served: tuple[Source, HttpServer, aiohttp.ClientSession]) -> None:
    source, _, client = served
    async with client.get("/status") as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == SNAPSHOT
        assert_secure(r)
    async with client.get("/healthz") as r:
        assert (r.status, r.content_type, await r.text()) == (200, "text/plain", "ok\n")
        assert_secure(r)
    async with client.get("/") as r:
        assert r.status == 200 and r.content_type == "text/html" and r.charset == "utf-8"
        page = await r.text()
        assert "HTTP 503 from 10.0.0.2:443" in page and "<script" not in page
        assert_secure(r)
    async with client.head("/status") as r:
        assert r.status == 200 and await r.read() == b""
    async with client.get("/nope") as r:
        assert r.status == 404 and "/status" in await r.text()
        assert_secure(r)
    async with client.get("/metrics") as r:
        assert r.status == 404 and "telemetry.prometheus" in await r.text()
    source.metrics_on = True
    async with client.get("/metrics") as r:
        assert (r.status, r.headers["Content-Type"], await r.read()) == (200, PROM_TYPE, METRICS)
        assert_secure(r)


async def test_every_endpoint_is_read_only(served: tuple[Source, HttpServer, aiohttp.ClientSession]) -> None:
    _, _, client = served
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in ("/", "/status", "/healthz", "/metrics", "/nope"):
            async with client.request(method, path, data=b"x" * 4096) as r:
                assert r.status == 405, (method, path)
                assert r.headers["Allow"] == "GET, HEAD"
                assert_secure(r)


async def test_healthz_503_with_the_reason(served: tuple[Source, HttpServer, aiohttp.ClientSession]) -> None:
    source, _, client = served
    source.alive = (False, "scheduler stalled: no check run for 95s")
    async with client.get("/healthz") as r:
        assert r.status == 503 and r.content_type == "text/plain"
        assert await r.text() == "scheduler stalled: no check run for 95s\n"


async def test_a_failing_snapshot_is_a_short_500_and_logged(
    served: tuple[Source, HttpServer, aiohttp.ClientSession], caplog: pytest.LogCaptureFixture
) -> None:
    source, _, client = served
    source.broken = True
    caplog.set_level(logging.ERROR, logger="firstwatch.http")
    for path in ("/status", "/"):
        async with client.get(path) as r:
            body = await r.text()
            assert r.status == 500 and r.content_type == "text/plain"
            assert "Traceback" not in body and "SECRET-INTERNALS" not in body and len(body) < 200
            assert_secure(r)
    assert "SECRET-INTERNALS" in caplog.text  # the detail goes to the log, with the traceback
    async with client.get("/healthz") as r:
        assert r.status == 200  # liveness does not depend on the snapshot


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:80") == ("localhost", 80)
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    bad = {
        "9464": "expected HOST:PORT, got '9464' (e.g. 127.0.0.1:9464 or [::1]:9464)",
        ":9464": "expected HOST:PORT, got ':9464'",
        "localhost": "expected HOST:PORT, got 'localhost'",
        "::1:9464": "an IPv6 address needs brackets: [::1]:9464",
        "[::1]9464": "expected [IPV6]:PORT, got '[::1]9464'",
        "[127.0.0.1]:80": "'127.0.0.1' in brackets is not an IPv6 address",
        "127.0.0.1:http": "the port must be a number from 0 to 65535, got 'http'",
        "127.0.0.1:-1": "the port must be a number from 0 to 65535, got '-1'",
        "127.0.0.1:65536": "the port must be a number from 0 to 65535, got 65536",
        "web 01:80": "'web 01' is not a host name or IP address",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError) as info:
            parse_listen(text)
        assert str(info.value).startswith(message), (text, str(info.value))


async def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = await start_http("[::1]:0", Source())
    try:
        assert server.url == f"http://[::1]:{server.port}/"
        async with aiohttp.ClientSession() as client, client.get(f"http://[::1]:{server.port}/healthz") as r:
            assert r.status == 200
    finally:
        await server.close()


async def test_port_in_use_is_an_error_and_close_frees_it() -> None:
    server = await start_http("127.0.0.1:0", Source())
    port = server.port
    with pytest.raises(OSError):
        await start_http(f"127.0.0.1:{port}", Source())
    await server.close()
    again = await start_http(f"127.0.0.1:{port}", Source())
    await again.close()


async def test_fetch_status_for_the_cli() -> None:
    server = await start_http("127.0.0.1:0", Source())
    try:
        doc = await asyncio.to_thread(fetch_status, f"127.0.0.1:{server.port}")
        assert json.dumps(doc, sort_keys=True) == json.dumps(SNAPSHOT, sort_keys=True)
    finally:
        await server.close()
    with pytest.raises(StatusUnavailable, match=r"cannot reach the agent at http://127\.0\.0\.1:"):
        await asyncio.to_thread(fetch_status, f"127.0.0.1:{server.port}", 2.0)


async def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closed ``sock`` (EOF or reset) within ``seconds``."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 1024), seconds) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


async def _idle_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 3)
    return sock


async def test_connections_over_the_cap_are_reset_at_once_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="firstwatch.http")
    server = await start_http("127.0.0.1:0", Source(), max_connections=4)
    idle: list[socket.socket] = []
    try:
        idle = [await _idle_client(server.port) for _ in range(4)]
        over = [await _idle_client(server.port) for _ in range(10)]
        for sock in over:
            assert await _closed_within(sock, 1.0)
            sock.close()
        assert [await _closed_within(s, 0.2) for s in idle] == [False] * 4  # the first four are served
        refused = [r for r in caplog.records if "refusing more" in r.getMessage()]
        assert len(refused) == 1 and refused[0].levelno == logging.WARNING
        for sock in idle:
            sock.close()
        deadline = asyncio.get_running_loop().time() + 3
        async with aiohttp.ClientSession() as client:
            while True:  # the closes reach the server a moment later
                try:
                    async with client.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
        assert "accepting connections again (10 turned away meanwhile)" in caplog.text
    finally:
        for sock in idle:
            sock.close()
        await server.close()


async def test_an_idle_connection_is_dropped_by_the_header_timeout() -> None:
    server = await start_http("127.0.0.1:0", Source())
    try:
        loop = asyncio.get_running_loop()
        sock = await _idle_client(server.port)
        start = loop.time()
        assert await _closed_within(sock, HEADER_TIMEOUT + 2)
        assert HEADER_TIMEOUT - 0.5 <= loop.time() - start <= HEADER_TIMEOUT + 2
        sock.close()
    finally:
        await server.close()


EMFILE_SCRIPT = """
import asyncio, logging, os, resource, sys
from agent.web.api import start_http

class Source:
    def snapshot(self): return {}
    def healthy(self): return True, ""
    def metrics(self): return None

async def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    server = await start_http("127.0.0.1:0", Source())
    release = asyncio.Event()
    asyncio.get_running_loop().add_reader(0, release.set)
    fds = []
    try:
        while True:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    print(server.port, flush=True)
    await release.wait()
    for fd in fds:
        os.close(fd)
    await asyncio.sleep(3)
    await server.close()

asyncio.run(main())
"""


async def test_accept_errors_are_logged_once_per_episode_without_a_traceback() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EMFILE_SCRIPT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin and proc.stdout and proc.stderr
    loop = asyncio.get_running_loop()
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
        sock = await _idle_client(port)  # in the backlog: the agent has no descriptor to accept it with
        err, deadline = b"", loop.time() + 5
        while b"cannot accept connections" not in err:
            assert loop.time() < deadline, err.decode()[-2000:]
            err += await asyncio.wait_for(proc.stderr.readline(), 5)
        await asyncio.sleep(2.0)  # the listener retries the accept every 0.5 s: more failures, no more lines
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        sock.close()
        rest = await asyncio.wait_for(proc.stderr.read(), 10)
        err += rest
        await asyncio.wait_for(proc.wait(), 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 10)  # drains the pipes, or wait() never returns
    text = err.decode()
    assert text.count("cannot accept connections") == 1 and "Too many open files" in text, text
    assert "Traceback" not in text and "accepting connections again" in text, text
