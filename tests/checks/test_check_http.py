"""The http check against real servers on 127.0.0.1 (and ::1): well-behaved aiohttp apps, TLS servers
with trustme certificates, and raw asyncio servers that misbehave the way broken or hostile ones do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import errno
import gzip
import json
import socket
import ssl
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme
from aiohttp import web
from pydantic import ValidationError
from yarl import URL

from agent.alerting.policy import AlertConfig
from agent.alerting.rules import compile_rule
from agent.config.load import parse_config
from agent.core.errors import ConfigError
from agent.engine.probe_runner import SharedResources, run_probe
from checks.base import Result, find_value
from checks.http import HttpCheck, HttpConfig, _hostport
from tests.support import factories
from tests.support.peers.servers import serve_app
from tests.support.peers.tls import server_context

CERT_DAYS = 30


def make_check(**options: Any) -> HttpCheck:
    return factories.check(HttpCheck, **{"name": "web", "timeout": "1s", **options})


async def probe(url: str, *, resources: SharedResources | None = None, **options: Any) -> Result:
    check = make_check(url=url, **options)
    resources = resources or SharedResources("test")
    try:
        return await run_probe(check, url, resources)
    finally:
        await resources.close()


# --- well-behaved servers -------------------------------------------------------------------------


def make_app(seen: list[dict[str, Any]]) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="<p>Add to cart</p> order #1234", headers={"X-Version": "1.2.3"})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def to_ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://files.example/")

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "headers": dict(request.headers), "body": await request.text()})
        return web.Response(status=201, text="created")

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"a" * 100_000), headers={"Content-Encoding": "gzip"})

    async def health(request: web.Request) -> web.Response:
        return web.json_response(HEALTH, status=int(request.query.get("status", "200")))

    async def degraded(request: web.Request) -> web.Response:
        return web.json_response({**HEALTH, "status": "degraded"})

    async def private(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "authorization": request.headers.get("Authorization")})
        if request.headers.get("Authorization") not in GOOD_AUTH:
            return web.Response(status=401, text="who are you?")
        return web.json_response({"status": "ok"})

    async def private_redirect(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "authorization": request.headers.get("Authorization")})
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/to-ftp", to_ftp)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/bytes/{n}", sized)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/health", health)
    app.router.add_get("/degraded", degraded)
    app.router.add_get("/private", private)
    app.router.add_get("/private/redirect", private_redirect)
    return app


HEALTH = {
    "status": "ok",
    "version": "1.4.2",
    "queue": {"depth": 150, "name": "orders"},
    "workers": [{"load": 0.5}, {"load": 2}],
    "db": {"ok": True, "latency_ms": 12.5},
    "maintenance": None,
}
USER, PASSWORD, TOKEN = "synthetic", "pä55:word", "t0ken-CANARY-8f3a"
GOOD_AUTH = {"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), f"Bearer {TOKEN}"}


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
async def base(seen: list[dict[str, Any]]) -> AsyncIterator[str]:
    runner, port = await serve_app(make_app(seen))
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def start_tls(ca: trustme.CA, *names: str, days: int = CERT_DAYS) -> tuple[web.AppRunner, int]:
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return await serve_app(make_app([]), server_context(ca.issue_cert(*names, not_after=not_after)))


@pytest.fixture
async def https(ca: trustme.CA) -> AsyncIterator[str]:
    runner, port = await start_tls(ca, "127.0.0.1", "localhost")
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


# --- hostile servers ------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> str:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        server.close()
        await server.wait_closed()


async def peak_rss_growth(coro: Awaitable[Result]) -> tuple[Result, int]:
    """Run ``coro`` while sampling this process's RSS; returns its result and the peak growth."""
    proc = psutil.Process()
    before = peak = proc.memory_info().rss
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        result = await coro
    finally:
        done.set()
        await sampler
    return result, max(peak, proc.memory_info().rss) - before


def gzip_bomb(gib: int = 1) -> bytes:
    """A valid gzip stream (~1 MB) that inflates to ``gib`` GiB of zeros: one 16 MiB deflate
    segment ending in a full flush is self-contained, so it can be repeated."""
    seg_size, zeros = 16 * 1024**2, bytes(16 * 1024**2)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    count = gib * 1024**3 // seg_size
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    trailer = deflate.flush(zlib.Z_FINISH) + struct.pack("<II", crc, (count * seg_size) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + segment * count + trailer


# --- status, values, expectations -----------------------------------------------------------------


async def test_ok_reports_status_body_size_and_duration(base: str) -> None:
    r = await probe(f"{base}/ok")
    assert r.ok, r.error
    assert r.error_kind is None
    assert r.values["status"] == 200
    assert r.values["body_bytes"] == len("<p>Add to cart</p> order #1234")
    assert 0 < r.values["duration"] < 1
    assert "tls.days_left" not in r.values  # plain http has no certificate


async def test_body_bytes_counts_after_decompression(base: str) -> None:
    r = await probe(f"{base}/gzip", expect={"body_regex": "^a+$"})
    assert r.ok, r.error
    assert r.values["body_bytes"] == 100_000


async def test_failed_status_names_code_and_final_host_port(base: str) -> None:
    r = await probe(f"{base}/status/503")
    port = base.rsplit(":", 1)[1]
    assert (r.ok, r.error_kind, r.error) == (False, "http_status", f"HTTP 503 from 127.0.0.1:{port}")
    assert r.values["status"] == 503  # still recorded for graphs


@pytest.mark.parametrize(
    ("status", "expect", "ok"),
    [
        (404, [404], True),
        (404, ["4xx"], True),
        (404, [200, "5xx"], False),
        (204, None, True),  # the default accepts any 2xx
        (301, None, False),
        (500, ["2XX", 500], True),
    ],
)
async def test_expected_status_codes_and_classes(base: str, status: int, expect: Any, ok: bool) -> None:
    options: dict[str, Any] = {"expect": {"status": expect}} if expect else {}
    r = await probe(f"{base}/status/{status}", **options)
    assert r.ok is ok
    assert r.error_kind == (None if ok else "http_status")


def test_error_texts_fill_in_default_ports() -> None:
    # no test server can listen on 80/443, so check the formatter status errors use
    url = URL("https://10.0.0.2/x")
    assert _hostport(url.host, url.port) == "10.0.0.2:443"
    url = URL("http://[::1]/")
    assert _hostport(url.host, url.port) == "[::1]:80"


async def test_body_contains_and_regex(base: str) -> None:
    url = f"{base}/ok"
    assert (await probe(url, expect={"body_contains": "Add to cart", "body_regex": r"order #\d+"})).ok
    r = await probe(url, expect={"body_contains": "Checkout"})
    assert (r.error_kind, r.error) == ("body", "body does not contain 'Checkout'")
    r = await probe(url, expect={"body_regex": r"order #[a-z]+"})
    assert (r.error_kind, r.error) == ("body", "body does not match /order #[a-z]+/")
    assert r.values["status"] == 200


async def test_header_expectations(base: str) -> None:
    url = f"{base}/ok"
    assert (await probe(url, expect={"headers": {"x-version": r"^1\.2\."}})).ok
    r = await probe(url, expect={"headers": {"X-Version": r"^2\."}})
    assert (r.error_kind, r.error) == ("expect", "header 'X-Version' does not match /^2\\./")
    assert "1.2.3" not in (r.error or "")  # header values never show up in error texts
    r = await probe(url, expect={"headers": {"X-Missing": "."}})
    assert (r.error_kind, r.error) == ("expect", "header 'X-Missing' missing")


async def test_redirects_followed_or_not(base: str) -> None:
    r = await probe(f"{base}/redirect", expect={"body_contains": "Add to cart"})
    assert r.ok, r.error
    assert r.values["status"] == 200
    r = await probe(f"{base}/redirect", follow_redirects=False)
    assert (r.error_kind, r.values["status"]) == ("http_status", 302)
    assert (await probe(f"{base}/redirect", follow_redirects=False, expect={"status": [302]})).ok


async def test_redirect_loop_is_a_status_failure(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    r = await probe(f"{base}/loop")
    assert (r.error_kind, r.error) == ("http_status", f"too many redirects from 127.0.0.1:{port}")
    r = await probe(f"{base}/to-ftp")
    assert (r.error_kind, r.error) == ("http_status", f"bad redirect from 127.0.0.1:{port}")


async def test_post_sends_method_headers_and_body(base: str, seen: list[dict[str, Any]]) -> None:
    r = await probe(
        f"{base}/echo",
        method="post",
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
        body='{"ping": 1}',
        expect={"status": [201]},
    )
    assert r.ok, r.error
    [req] = seen
    assert req["method"] == "POST"
    assert req["body"] == '{"ping": 1}'
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["Content-Type"] == "application/json"


async def test_max_body_caps_a_normal_body(base: str) -> None:
    r = await probe(f"{base}/bytes/5000", max_body="4KiB")
    assert (r.error_kind, r.error) == ("body", "body larger than max_body (4 KiB)")
    assert "body_bytes" not in r.values
    r = await probe(f"{base}/bytes/4096", max_body="4KiB")  # exactly the cap is fine
    assert r.ok and r.values["body_bytes"] == 4096


# --- TLS ------------------------------------------------------------------------------------------


async def test_https_with_ca_file_reports_days_left(https: str, ca_file: str) -> None:
    r = await probe(f"{https}/ok", ca_file=ca_file)
    assert r.ok, r.error
    assert CERT_DAYS - 1 < r.values["tls.days_left"] <= CERT_DAYS


async def test_days_left_reported_for_bodiless_answers(https: str, ca_file: str) -> None:
    # aiohttp releases the connection before returning such responses: the cert comes from the handshake
    r = await probe(f"{https}/status/204", ca_file=ca_file)
    assert r.ok and CERT_DAYS - 1 < r.values["tls.days_left"] <= CERT_DAYS
    r = await probe(f"{https}/ok", ca_file=ca_file, method="HEAD")
    assert r.ok and CERT_DAYS - 1 < r.values["tls.days_left"] <= CERT_DAYS


async def test_unknown_ca_is_a_tls_failure(https: str) -> None:
    r = await probe(f"{https}/ok")  # the system store does not trust the test CA
    assert r.error_kind == "tls"
    assert r.error is not None and r.error.startswith("certificate verify failed:")
    assert "issuer" in r.error or "self-signed" in r.error or "self signed" in r.error


async def test_self_signed_certificate_is_a_tls_failure(ca: trustme.CA, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.cert_pem.write_to_path(str(tmp_path / "cert.pem"))
    ca.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")  # the CA's own, self-signed cert
    runner, port = await serve_app(make_app([]), ctx)
    try:
        r = await probe(f"https://127.0.0.1:{port}/ok")
    finally:
        await runner.cleanup()
    assert r.error_kind == "tls"
    assert r.error == f"certificate verify failed: self-signed certificate (127.0.0.1:{port})"


@pytest.mark.parametrize(("host", "reason"), [("localhost", "Hostname mismatch"), ("127.0.0.1", "IP address mismatch")])
async def test_wrong_hostname_is_a_tls_failure(ca: trustme.CA, ca_file: str, host: str, reason: str) -> None:
    runner, port = await start_tls(ca, "shop.example.test")
    try:
        r = await probe(f"https://{host}:{port}/ok", ca_file=ca_file)
    finally:
        await runner.cleanup()
    assert r.error_kind == "tls"
    assert r.error is not None and r.error.startswith(f"certificate verify failed: {reason}")


async def test_concurrent_probes_report_their_own_certificate(ca: trustme.CA, ca_file: str) -> None:
    (runner_a, port_a), (runner_b, port_b) = await start_tls(ca, "127.0.0.1"), await start_tls(ca, "127.0.0.1", days=90)
    check = make_check(targets=[f"https://127.0.0.1:{port_a}/ok", f"https://127.0.0.1:{port_b}/ok"], ca_file=ca_file)
    resources = SharedResources("test")
    try:
        a, b = await asyncio.gather(*(run_probe(check, t, resources) for t in check.targets()))
    finally:
        await resources.close()
        await runner_a.cleanup()
        await runner_b.cleanup()
    assert a.ok and b.ok
    assert round(a.values["tls.days_left"]) == CERT_DAYS
    assert round(b.values["tls.days_left"]) == 90


async def test_tls_verify_false_accepts_and_still_reports_days_left(https: str) -> None:
    r = await probe(f"{https}/ok", tls_verify=False)
    assert r.ok, r.error
    assert CERT_DAYS - 1 < r.values["tls.days_left"] <= CERT_DAYS


async def test_tls_to_a_plain_http_port_is_a_tls_failure(base: str) -> None:
    r = await probe(base.replace("http://", "https://") + "/ok")
    assert r.error_kind == "tls"


# --- connection failures --------------------------------------------------------------------------


async def test_refused_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: the kernel answers RST
        r = await probe(f"http://127.0.0.1:{port}/")
    assert (r.error_kind, r.error) == ("refused", f"connection refused by 127.0.0.1:{port}")


async def test_dns_failure() -> None:
    r = await probe("http://no-such-host.invalid/")
    assert r.error_kind == "dns"
    assert r.error is not None and "no-such-host.invalid" in r.error


# --- hostile servers ------------------------------------------------------------------------------


async def test_drip_feeding_server_hits_the_total_deadline(raw_server: Any) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    url = await raw_server(drip)
    t0 = time.monotonic()
    r = await probe(url, timeout="500ms")
    assert r.error_kind == "timeout"
    assert time.monotonic() - t0 < 3.0  # the drip would take 2000s


async def test_silent_server_times_out(raw_server: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    url = await raw_server(silent)
    t0 = time.monotonic()
    r = await probe(url, timeout="300ms")
    assert r.error_kind == "timeout"
    assert time.monotonic() - t0 < 2.5  # the server never answers


async def test_reset_mid_headers(raw_server: Any) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/ht")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST

    url = await raw_server(reset)
    r = await probe(url)
    assert r.error_kind == "reset", r.error


async def test_close_mid_body_is_a_reset(raw_server: Any) -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
        await writer.drain()
        writer.close()

    url = await raw_server(short)
    r = await probe(url)
    assert r.error_kind == "reset", r.error


async def test_endless_body_is_cut_at_max_body(raw_server: Any) -> None:
    sent = 0
    finished = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while True:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        finally:
            finished.set()

    url = await raw_server(flood)
    t0 = time.monotonic()
    r, growth = await peak_rss_growth(probe(url))
    assert (r.error_kind, r.error) == ("body", "body larger than max_body (1 MiB)")
    assert time.monotonic() - t0 < 3.0  # the flood never ends
    assert growth < 50 * 1024**2
    await asyncio.wait_for(finished.wait(), 3.0)  # we hung up instead of draining the flood
    assert sent < 32 * 1024**2


async def test_gzip_bomb_is_cut_at_max_body(raw_server: Any) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 1024**2

    async def serve_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        writer.write(head.encode() + bomb)
        await writer.drain()
        await reader.read()

    url = await raw_server(serve_bomb)
    t0 = time.monotonic()
    r, growth = await peak_rss_growth(probe(url))
    assert (r.error_kind, r.error) == ("body", "body larger than max_body (1 MiB)")
    assert time.monotonic() - t0 < 3.0
    assert growth < 100 * 1024**2


async def test_undecodable_gzip_is_a_body_failure(raw_server: Any) -> None:
    async def bad_gzip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n" + b"not gzip at all....!"
        )
        await writer.drain()
        await reader.read()

    url = await raw_server(bad_gzip)
    r = await probe(url)
    assert r.error_kind == "body", r.error
    assert r.error is not None and "could not be decoded" in r.error
    assert r.values["status"] == 200  # what was learnt before the failure is kept


# --- config validation ----------------------------------------------------------------------------


def config(**options: Any) -> HttpConfig:
    return HttpConfig.model_validate({"name": "web", "type": "http", **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "htp://x"}, "invalid URL 'htp://x': scheme must be http or https"),
        ({"url": "example.com/health"}, "scheme must be http or https"),
        ({"targets": ["http://a.example", "ftp://b.example"]}, "invalid URL 'ftp://b.example'"),
        ({"url": "http://"}, "no host"),
        ({"url": "http://x", "expect": {"body_regex": "(unclosed"}}, "invalid regex '(unclosed'"),
        ({"url": "http://x", "expect": {"headers": {"Server": "[z-a]"}}}, "invalid regex '[z-a]'"),
        ({"url": "http://x", "expect": {"stauts": [200]}}, "Extra inputs are not permitted"),
        ({"url": "http://x", "expect": {"status": [600]}}, "100-599"),
        ({"url": "http://x", "expect": {"status": ["2xy"]}}, "invalid status '2xy'"),
        ({"url": "http://x", "method": "FETCH"}, "Input should be 'GET', 'HEAD'"),
        ({"url": "http://x", "ca_file": "/nonexistent/ca.pem"}, "no such file: '/nonexistent/ca.pem'"),
        ({"url": "http://x", "max_body": "1 parsec"}, "unit 'parsec'"),
        ({"url": "http://x", "headers": {"X-Token": "a\r\nInjected: 1"}}, "must be one line"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(**options)
    [error] = info.value.errors()
    assert message in error["msg"]  # the loader shows FILE:LINE:COL: path: msg
    assert "Injected" not in error["msg"]  # header values may be secrets: never echoed


def test_bad_target_error_points_at_the_list_entry() -> None:
    with pytest.raises(ValidationError) as info:
        config(targets=["http://a.example", "gopher://b.example"])
    assert [e["loc"] for e in info.value.errors()] == [("targets", 1)]


def test_config_defaults_and_normalisation(tmp_path: Path, ca_file: str) -> None:
    cfg = config(url="https://x.example", method="head", max_body="512KB", ca_file=ca_file)
    assert (cfg.method, cfg.max_body, cfg.follow_redirects, cfg.tls_verify) == ("HEAD", 512_000, True, True)
    assert cfg.expect.status == ["2xx"]
    assert config(url="http://x", expect={"status": ["200", "3XX"]}).expect.status == [200, "3xx"]
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValidationError, match="no usable PEM certificates"):
        config(url="http://x", ca_file=str(tmp_path / "junk.pem"))


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [{"basic": {"username": USER, "password": PASSWORD}}, {"bearer": TOKEN}, {"bearer": {"token": TOKEN}}],
    ids=["basic", "bearer", "bearer-token"],
)
async def test_auth_header_is_sent(base: str, seen: list[dict[str, Any]], auth: dict[str, Any]) -> None:
    r = await probe(f"{base}/private", auth=auth)
    assert r.ok, r.error
    assert seen[-1]["authorization"] in GOOD_AUTH


async def test_secrets_read_from_files_lose_their_trailing_newline(
    base: str, seen: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "token").write_text(TOKEN + "\r\n", encoding="utf-8")
    r = await probe(f"{base}/private", auth={"basic": {"username": USER, "password_file": str(tmp_path / "password")}})
    assert r.ok, r.error
    r = await probe(f"{base}/private", auth={"bearer": {"token_file": str(tmp_path / "token")}})
    assert r.ok, r.error
    assert [s["authorization"].split()[0] for s in seen] == ["Basic", "Bearer"]


async def test_wrong_credentials_are_a_status_failure(base: str) -> None:
    r = await probe(f"{base}/private", auth={"bearer": "not-the-token"})
    port = base.rsplit(":", 1)[1]
    assert (r.error_kind, r.error) == ("http_status", f"HTTP 401 from 127.0.0.1:{port}")


async def test_credentials_are_not_sent_to_another_origin_on_redirect(base: str, seen: list[dict[str, Any]]) -> None:
    assert (await probe(f"{base}/private/redirect?to=/private", auth={"bearer": TOKEN})).ok  # same origin: kept
    assert [s["authorization"] for s in seen] == [f"Bearer {TOKEN}"] * 2
    seen.clear()
    runner, other = await serve_app(make_app(seen))
    try:
        r = await probe(f"{base}/private/redirect?to=http://127.0.0.1:{other}/private", auth={"bearer": TOKEN})
    finally:
        await runner.cleanup()
    assert r.error_kind == "http_status"  # the other server never saw the token, so it answered 401
    assert [s["authorization"] for s in seen] == [f"Bearer {TOKEN}", None]


CANARY = "CANARY-7d1e-do-not-leak"


@pytest.mark.parametrize(
    "auth", [{"bearer": CANARY}, {"basic": {"username": "u", "password": CANARY}}], ids=["bearer", "basic"]
)
async def test_secrets_never_appear_in_error_texts_or_reprs(
    base: str, https: str, auth: dict[str, Any], raw_server: Any
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}/"

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    failures: list[tuple[str, dict[str, Any]]] = [
        (f"{base}/private", {}),
        (refused, {}),
        (await raw_server(reset), {}),
        (f"{https}/ok", {}),  # unknown CA
        (f"{base}/degraded", {"expect": {"json": [{"path": "$.status", "equals": "ok"}]}}),
        (f"{base}/ok", {"values_from_json": ["$.queue.depth"]}),
        (f"{base}/ok", {"expect": {"headers": {"X-Missing": "."}}}),
    ]
    resources = SharedResources("test")
    try:
        for url, options in failures:
            check = make_check(url=url, auth=auth, **options)
            r = await run_probe(check, url, resources)
            assert not r.ok and r.error
            assert CANARY not in r.error, r.error
    finally:
        await resources.close()
    assert CANARY not in repr(check) + repr(check.config) + str(check.config)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ('{bearer: "${TOKEN}"}\n    headers: {authorization: "x"}', "set auth or an Authorization header, not both"),
        ('{bearer: "${TOKEN}x\\ny"}', "the bearer token must be one line"),
        ('{basic: {password: "${TOKEN}"}}', "missing required option 'username'"),
        ('{basic: {username: "u:${TOKEN}", password: "p"}}', "the username cannot contain ':'"),
        ('{basic: {username: u, password: "${TOKEN}", password_file: /etc/hostname}}', "one of password or"),
        ('{bearer: "${TOKEN}", basic: {username: u, password: "${TOKEN}"}}', "exactly one of basic or bearer"),
        ('{bearer: {token: "${TOKEN}", tokn: 1}}', "tokn"),
    ],
)
def test_secrets_never_appear_in_config_errors(auth: str, message: str) -> None:
    text = f"checks:\n  - name: api\n    type: http\n    url: http://127.0.0.1/\n    auth: {auth}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={"TOKEN": CANARY})
    assert message in str(info.value)
    assert CANARY not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"), [(None, "no such file: "), ("\n", "is empty"), (b"\xff\xfe", "is not UTF-8 text")]
)
def test_secret_files_must_exist_and_hold_a_secret(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    path = tmp_path / "secret"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    for auth in ({"basic": {"username": "u", "password_file": str(path)}}, {"bearer": {"token_file": str(path)}}):
        with pytest.raises(ValidationError) as info:
            config(url="http://x", auth=auth)
        [error] = info.value.errors()
        assert message in error["msg"]
        assert error["loc"][-1] in ("password_file", "token_file")  # the loader points at that line


# --- JSON bodies ----------------------------------------------------------------------------------


async def test_json_assertions_that_hold(base: str) -> None:
    r = await probe(
        f"{base}/health",
        expect={
            "json": [
                {"path": "$.status", "equals": "ok"},
                {"path": "queue.depth", "op": ">=", "value": 100},
                {"path": "workers[1].load", "equals": 2.0},
                {"path": "$.workers[-1]", "equals": {"load": 2}},
                {"path": "$.version", "matches": r"^1\.4\."},
                {"path": "$.db.ok", "equals": True},
                {"path": "$.db.latency_ms", "op": "<", "value": 500},
                {"path": "$.maintenance", "equals": None},
            ]
        },
    )
    assert r.ok, r.error


@pytest.mark.parametrize(
    ("path", "assertion", "error"),
    [
        ("/degraded", {"path": "$.status", "equals": "ok"}, "json $.status is 'degraded', expected 'ok'"),
        ("/health", {"path": "$.queue.depth", "op": "<", "value": 100}, "json $.queue.depth is 150, expected < 100"),
        ("/health", {"path": "$.version", "matches": r"^2\."}, r"json $.version is '1.4.2', expected to match /^2\./"),
        ("/health", {"path": "data.items[0].id", "equals": 1}, "json data.items[0].id missing"),
        ("/health", {"path": "$.workers[5].load", "op": ">", "value": 0}, "json $.workers[5].load missing"),
        ("/health", {"path": "$.db.ok", "equals": 1}, "json $.db.ok is true, expected 1"),
        ("/health", {"path": "queue.name", "op": ">", "value": 1}, "json queue.name is 'orders', expected a number"),
        ("/health", {"path": "workers[0]", "equals": 1}, 'json workers[0] is {"load": 0.5}, expected 1'),
    ],
)
async def test_json_assertion_failures_explain_themselves(
    base: str, path: str, assertion: dict[str, Any], error: str
) -> None:
    r = await probe(f"{base}{path}", expect={"json": [{"path": "$.status", "matches": "."}, assertion]})
    assert (r.ok, r.error_kind, r.error) == (False, "body", error)
    assert r.values["status"] == 200


async def test_json_assertions_as_a_mapping_with_exists_and_digit_indexes(base: str) -> None:
    """The contract's short form: ``json: {"items.0.sku": {exists: true}}``."""
    ok = await probe(
        f"{base}/health",
        expect={"json": {"workers.1.load": {"equals": 2}, "$.db.ok": {"exists": True}, "nope": {"exists": False}}},
    )
    assert ok.ok, ok.error
    missing = await probe(f"{base}/health", expect={"json": {"workers.5.load": {"exists": True}}})
    assert (missing.ok, missing.error) == (False, "json workers.5.load missing")
    present = await probe(f"{base}/health", expect={"json": {"$.db.ok": {"exists": False}}})
    assert (present.ok, present.error) == (False, "json $.db.ok is true, expected it absent")


async def test_values_from_json(base: str) -> None:
    paths = ["$.queue.depth", "workers[1].load", "$.db.ok", "db.latency_ms", "$.status", "$.absent"]
    r = await probe(f"{base}/health", values_from_json=paths)
    assert r.ok, r.error
    found = {name: value for name, value in r.values.items() if name.startswith("json.")}
    # strings and missing paths give no value; true/false count as 1/0
    assert found == {"json.queue.depth": 150, "json.workers[1].load": 2, "json.db.ok": 1, "json.db.latency_ms": 12.5}
    for name in found:
        spec = find_value(HttpCheck.VALUES, name)
        assert spec is not None and (spec.name, spec.unit) == ("json.PATH", "1")


async def test_json_values_are_kept_when_the_answer_fails(base: str) -> None:
    r = await probe(f"{base}/health?status=503", values_from_json=["$.queue.depth"])
    assert (r.error_kind, r.values["json.queue.depth"]) == ("http_status", 150)
    r = await probe(
        f"{base}/degraded", values_from_json=["queue.depth"], expect={"json": [{"path": "status", "equals": "ok"}]}
    )
    assert (r.error_kind, r.values["json.queue.depth"]) == ("body", 150)


@pytest.mark.parametrize(
    "options", [{"values_from_json": ["$.queue.depth"]}, {"expect": {"json": [{"path": "$.status", "equals": "ok"}]}}]
)
async def test_a_body_that_is_not_json_is_a_body_failure(base: str, options: dict[str, Any]) -> None:
    r = await probe(f"{base}/ok", **options)
    assert r.error_kind == "body"
    assert r.error == "body is not JSON: Expecting value: line 1 column 1 (char 0)"
    assert r.values["status"] == 200


async def test_deeply_nested_json_is_refused_not_a_crash(raw_server: Any) -> None:
    nested = b"[" * 200_000

    async def deep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(nested) + nested)
        await writer.drain()
        await reader.read()

    r = await probe(await raw_server(deep), values_from_json=["$.a"])
    assert (r.error_kind, r.error) == ("body", "body is not JSON: nested too deeply")


def test_json_values_can_be_named_in_rules() -> None:
    rule = compile_rule(0, AlertConfig(when="json.queue.depth > 100", severity="major"), HttpCheck.VALUES, "http")
    result = Result("api", "http", "u", True, {"json.queue.depth": 150.0}, None, None, 0.0, 0.1)
    verdict = rule.evaluate(result)
    assert (verdict.holds, verdict.explanation) == (True, "json.queue.depth (150) > 100")


def test_json_values_with_indexes_can_be_named_in_rules() -> None:
    rule = compile_rule(0, AlertConfig(when="json.workers[1].load > 1", severity="minor"), HttpCheck.VALUES, "http")
    assert rule.value_name == "json.workers[1].load"


# --- IP version -----------------------------------------------------------------------------------


@pytest.fixture
def fake_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names with loopback addresses (the machine's hosts file may map none to ::1): ``dual.test``
    has both, ``v4only.test`` only 127.0.0.1. Everything else resolves as usual."""
    real = socket.getaddrinfo
    table = {"dual.test": ("::1", "127.0.0.1"), "v4only.test": ("127.0.0.1",)}

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        if host not in table:
            return real(host, port, family, type, proto, flags)
        found = []
        for address in table[host]:
            with contextlib.suppress(socket.gaierror):  # an address of the other family
                found += real(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
async def dual() -> AsyncIterator[tuple[int, list[str]]]:
    """One port on both 127.0.0.1 and ::1, answering ``v4`` or ``v6``; yields it and the Host headers seen."""
    hosts: list[str] = []

    def app(answer: str) -> web.Application:
        async def who(request: web.Request) -> web.Response:
            hosts.append(request.host)
            return web.Response(text=answer)

        application = web.Application()
        application.router.add_get("/", who)
        return application

    for _attempt in range(5):
        runner4, port = await serve_app(app("v4"))
        runner6 = web.AppRunner(app("v6"))
        await runner6.setup()
        try:
            await web.TCPSite(runner6, "::1", port).start()
        except OSError as exc:
            await runner6.cleanup()
            await runner4.cleanup()
            if exc.errno == errno.EADDRINUSE:
                continue  # that port is taken on ::1: try another
            pytest.skip(f"cannot listen on [::1] here: {exc}")
        yield port, hosts
        await runner6.cleanup()
        await runner4.cleanup()
        return
    pytest.skip("no port free on both 127.0.0.1 and ::1")


@pytest.mark.usefixtures("fake_names")
async def test_ip_version_picks_the_address_family(dual: tuple[int, list[str]]) -> None:
    port, hosts = dual
    for version in (4, 6):
        r = await probe(f"http://dual.test:{port}/", ip_version=version, expect={"body_regex": f"^v{version}$"})
        assert r.ok, (version, r.error)
        assert 0 < r.values["dns"] <= r.values["connect"] <= r.values["first_byte"]  # we resolved it ourselves
    assert hosts == [f"dual.test:{port}"] * 2  # the Host header keeps the name (virtual hosts still work)
    assert (await probe(f"http://dual.test:{port}/", ip_version="any", expect={"body_regex": "^v[46]$"})).ok
    assert (await probe(f"http://[::1]:{port}/", ip_version=6, expect={"body_contains": "v6"})).ok


@pytest.mark.usefixtures("fake_names")
async def test_no_address_in_that_family_is_a_dns_failure() -> None:
    r = await probe("http://v4only.test:9/", ip_version="6")
    assert (r.error_kind, r.error) == ("dns", "cannot resolve v4only.test: no IPv6 address (Name or service not known)")


async def test_ip_version_keeps_the_name_for_sni_and_the_certificate(ca: trustme.CA, ca_file: str) -> None:
    runner, port = await start_tls(ca, "localhost")  # valid for the name only, not for 127.0.0.1
    try:
        r = await probe(f"https://localhost:{port}/ok", ip_version=4, ca_file=ca_file)
    finally:
        await runner.cleanup()
    assert r.ok, r.error
    assert CERT_DAYS - 1 < r.values["tls.days_left"] <= CERT_DAYS
    assert r.values["connect"] < r.values["tls"] <= r.values["first_byte"]


async def test_redirect_to_an_address_of_the_other_family_fails(base: str) -> None:
    r = await probe(f"{base}/private/redirect?to=http://[::1]:9/", ip_version=4)
    assert (r.error_kind, r.error) == ("connection", "cannot connect to [::1]:9: an IPv6 address, but ip_version is 4")


# --- phase timings --------------------------------------------------------------------------------


async def test_phases_are_reported_in_order(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/ok", f"http://localhost:{port}/redirect"):
        r = await probe(url)
        assert r.ok, r.error
        v = r.values
        assert 0 <= v["dns"] <= v["connect"] <= v["first_byte"] <= v["duration"], (url, v)
        assert "tls" not in v
    assert v["dns"] > 0  # the last hop of /redirect starts after the first answer
    for url in (f"{base}/ok", f"{base}/redirect"):
        v = (await probe(url)).values
        assert 0 < v["connect"] <= v["first_byte"] <= v["duration"], (url, v)


async def test_an_ip_literal_has_no_dns_phase(dual: tuple[int, list[str]], base: str) -> None:
    port, _ = dual
    for url in (f"http://127.0.0.1:{port}/", f"http://[::1]:{port}/"):
        r = await probe(url)
        assert r.ok, (url, r.error)
        assert "dns" not in r.values and r.values["connect"] > 0, (url, r.values)
    assert "dns" not in (await probe(f"http://127.0.0.1:{port}/", ip_version=4)).values
    assert "dns" not in (await probe(f"http://[::1]:{port}/", ip_version=6)).values
    assert "dns" in (await probe(f"http://localhost:{port}/")).values
    # redirects: the phases describe the last hop
    local = base.replace("127.0.0.1", "localhost")
    assert "dns" not in (await probe(f"{local}/private/redirect?to={base}/ok")).values
    assert "dns" in (await probe(f"{base}/private/redirect?to={local}/ok")).values
    # a failure too: nothing listens on port 9
    r = await probe("http://127.0.0.1:9/")
    assert r.error_kind == "refused" and "dns" not in r.values


async def test_https_phases_include_the_handshake(https: str, ca_file: str) -> None:
    r = await probe(f"{https.replace('127.0.0.1', 'localhost')}/ok", ca_file=ca_file)
    assert r.ok, r.error
    v = r.values
    assert 0 <= v["dns"] <= v["connect"] < v["tls"] <= v["first_byte"] <= v["duration"]
    v = (await probe(f"{https}/ok", ca_file=ca_file)).values  # an IP address: nothing resolved
    assert "dns" not in v and 0 < v["connect"] < v["tls"] <= v["first_byte"] <= v["duration"]


async def test_the_runtime_session_measures_every_phase(base: str) -> None:
    r = await probe(f"{base.replace('127.0.0.1', 'localhost')}/ok", resources=SharedResources("test"))
    assert r.ok and 0 <= r.values["dns"] <= r.values["connect"] <= r.values["first_byte"] <= r.values["duration"]


async def test_a_slow_application_shows_in_first_byte_not_connect(raw_server: Any) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    r = await probe(await raw_server(slow))
    assert r.ok, r.error
    assert r.values["connect"] < 0.2 <= 0.3 <= r.values["first_byte"] < 0.9


async def test_failures_keep_the_phases_they_reached() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        r = await probe(f"http://localhost:{sock.getsockname()[1]}/")
    assert r.error_kind == "refused"
    assert "dns" in r.values and "connect" not in r.values and "first_byte" not in r.values


# --- new options: validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"expect": {"json": [{"path": "a..b", "equals": 1}]}}, "invalid JSON path 'a..b'"),
        ({"expect": {"json": [{"path": "a[x]", "equals": 1}]}}, "invalid JSON path 'a[x]'"),
        ({"expect": {"json": [{"path": "a", "equals": 1, "matches": "x"}]}}, "exactly one of equals, matches, op"),
        ({"expect": {"json": [{"path": "a"}]}}, "exactly one of equals, matches, op"),
        ({"expect": {"json": [{"path": "a", "op": ">"}]}}, "op and value go together"),
        ({"expect": {"json": [{"path": "a", "op": "=>", "value": 1}]}}, "Input should be '>'"),
        ({"expect": {"json": [{"path": "a", "matches": "(x"}]}}, "invalid regex '(x'"),
        ({"values_from_json": ["$"]}, "names the whole body"),
        ({"values_from_json": ['a["b c"]']}, "cannot be in a value name"),
        ({"values_from_json": ["$.a.b", "a.b"]}, "'a.b' names the same value as '$.a.b' (json.a.b)"),
        ({"ip_version": 5}, "Input should be 4, 6 or 'any'"),
        ({"ip_version": 6, "url": "http://127.0.0.1:8080/"}, "is an IPv4 address but ip_version is 6"),
        ({"ip_version": 4, "targets": ["http://a.example", "http://[::1]/"]}, "is an IPv6 address but ip_version"),
        ({"auth": {}}, "exactly one of basic or bearer"),
        ({"auth": {"basic": {"username": "u"}}}, "one of password or password_file"),
        ({"auth": {"bearer": {}}}, "one of token or token_file"),
    ],
)
def test_bad_new_options_are_rejected_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(**{"url": "http://x", **options})
    [error] = info.value.errors()
    assert message in error["msg"]


def test_new_option_defaults() -> None:
    cfg = config(url="http://x", ip_version="6")
    assert (cfg.ip_version, cfg.auth, cfg.values_from_json, cfg.expect.json_) == (6, None, [], [])
    assert config(url="http://x").ip_version == "any"
    assert "ip_version" in json.dumps(HttpConfig.model_json_schema())  # a JSON Schema of the config builds
