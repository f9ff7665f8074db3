"""The http check against real servers on 127.0.0.1: well-behaved aiohttp apps, TLS servers with
trustme certificates, and raw asyncio servers that misbehave the way broken or hostile ones do."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
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

from agent.probe_runner import SharedResources, run_probe
from checks.base import Result
from checks.http import HttpCheck, HttpConfig, _hostport

CERT_DAYS = 30


def make_check(**options: Any) -> HttpCheck:
    return HttpCheck(HttpConfig.model_validate({"name": "web", "type": "http", "timeout": "1s", **options}))


async def probe(url: str, **options: Any) -> Result:
    check = make_check(url=url, **options)
    resources = SharedResources("test")
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

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/to-ftp", to_ftp)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/bytes/{n}", sized)
    app.router.add_get("/gzip", gzipped)
    return app


async def start_app(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    return runner, server.sockets[0].getsockname()[1]


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
async def base(seen: list[dict[str, Any]]) -> AsyncIterator[str]:
    runner, port = await start_app(make_app(seen))
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def start_tls(ca: trustme.CA, *names: str, days: int = CERT_DAYS) -> tuple[web.AppRunner, int]:
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, not_after=not_after).configure_cert(ctx)
    return await start_app(make_app([]), ctx)


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
    r = await probe(f"{base}/status/{status}", **({"expect": {"status": expect}} if expect else {}))
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
    runner, port = await start_app(make_app([]), ctx)
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
    assert time.monotonic() - t0 < 1.0


async def test_silent_server_times_out(raw_server: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    url = await raw_server(silent)
    t0 = time.monotonic()
    r = await probe(url, timeout="300ms")
    assert r.error_kind == "timeout"
    assert time.monotonic() - t0 < 0.8


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
    assert time.monotonic() - t0 < 1.0
    assert growth < 50 * 1024**2
    await asyncio.wait_for(finished.wait(), 1.0)  # we hung up instead of draining the flood
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
    assert time.monotonic() - t0 < 1.0
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
