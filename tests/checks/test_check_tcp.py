"""The tcp check against real asyncio servers on 127.0.0.1, through the probe runner."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from checks.tcp import TcpCheck, parse_target
from tests.support import factories
from tests.support.peers.servers import free_port, serve_tcp
from tests.support.peers.tls import server_context

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def make(**options: Any) -> TcpCheck:
    return factories.check(TcpCheck, **{"name": "t", "timeout": "1s", **options})


probe = factories.probe_once


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)


async def smtp_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mx.test ESMTP ready\r\n")
    await writer.drain()
    line = await reader.readline()
    writer.write(b"250 hello " + line.split(b" ", 1)[-1])
    await writer.drain()
    await asyncio.sleep(10)


async def test_connect_ok() -> None:
    async with serve_tcp(silent) as target:
        r = await probe(make(target=target))
    assert r.ok, r.error
    assert r.error_kind is None
    assert 0 < r.values["duration"] < 1
    assert r.target == target and r.type == "tcp"


async def test_refused() -> None:
    port = free_port()
    r = await probe(make(target=f"127.0.0.1:{port}"))
    assert not r.ok
    assert r.error_kind == "refused"
    assert r.error == f"connection refused by 127.0.0.1:{port}"


async def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    r = await probe(make(target="nowhere.invalid:25"))
    assert r.error_kind == "dns"
    assert r.error == "cannot resolve 'nowhere.invalid': Name or service not known"


async def test_banner_expect_matches() -> None:
    async with serve_tcp(smtp_like) as target:
        r = await probe(make(target=target, expect=r"^220 .*ready"))
    assert r.ok, r.error


async def test_send_then_expect_reply() -> None:
    async with serve_tcp(smtp_like) as target:
        r = await probe(make(target=target, send="EHLO firstwatch\r\n", expect=r"(?m)^250 hello firstwatch"))
    assert r.ok, r.error


async def test_expect_mismatch_then_close() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 go away\r\n")
        await writer.drain()

    async with serve_tcp(refuse) as target:
        r = await probe(make(target=target, expect="^220"))
    assert not r.ok
    assert r.error_kind == "expect"
    assert r.error == r"connection closed before /^220/ matched (got '554 go away\r\n')"


async def test_server_closes_before_sending() -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serve_tcp(close_at_once) as target:
        r = await probe(make(target=target, expect="^220"))
    assert r.error_kind == "expect"
    assert r.error == "connection closed before /^220/ matched (got nothing)"


async def test_server_resets_mid_exchange() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    async with serve_tcp(reset) as target:
        r = await probe(make(target=target, send="PING\r\n", expect="PONG"))
    assert r.error_kind == "reset"
    assert r.error == "connection reset by peer during expect"


async def test_server_never_answers_times_out() -> None:
    async with serve_tcp(silent) as target:
        r = await probe(make(target=target, expect="^220", timeout="400ms"))
    assert r.error_kind == "timeout"
    assert 0.4 <= r.duration_s < 0.9


async def test_drip_server_cannot_hold_the_probe() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    async with serve_tcp(drip) as target:
        r = await probe(make(target=target, expect="^220", timeout="400ms"))
    assert r.error_kind == "timeout"
    assert r.duration_s < 0.9


async def test_flood_stops_at_max_read() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(b"y" * 1_000_000)
            await writer.drain()

    async with serve_tcp(flood) as target:
        r = await probe(make(target=target, expect="^220"))
        assert r.error_kind == "expect"
        assert r.error == "expected /^220/ not found in the first 64 KiB"
        assert r.duration_s < 0.5
        r = await probe(make(target=target, expect="^220", max_read=1000))
        assert r.error == "expected /^220/ not found in the first 1000 bytes"


# TLS


@pytest.fixture
def tls_server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca.issue_cert("localhost", "127.0.0.1"))


async def test_tls_ok_with_ca_file(tls_server_ctx: ssl.SSLContext, ca_file: str) -> None:
    async with serve_tcp(smtp_like, tls=tls_server_ctx) as target:
        r = await probe(make(target=target, tls=True, ca_file=ca_file, expect="^220"))
        assert r.ok, r.error
        r = await probe(make(target=target, tls=True, ca_file=ca_file, server_name="localhost"))
        assert r.ok, r.error


async def test_tls_unknown_ca(tls_server_ctx: ssl.SSLContext, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with serve_tcp(silent, tls=tls_server_ctx) as target:
        r = await probe(make(target=target, tls=True, ca_file=str(other)))
        assert r.error_kind == "tls"
        assert r.error is not None and r.error.startswith("certificate verify failed: unable to get local issuer")
        r = await probe(make(target=target, tls=True, tls_verify=False))
        assert r.ok, r.error


async def test_tls_wrong_name(tls_server_ctx: ssl.SSLContext, ca_file: str) -> None:
    async with serve_tcp(silent, tls=tls_server_ctx) as target:
        r = await probe(make(target=target, tls=True, ca_file=ca_file, server_name="db.example.com"))
    assert r.error_kind == "tls"
    assert r.error is not None and "db.example.com" in r.error and "certificate verify failed" in r.error


async def test_tls_to_a_plaintext_server(ca_file: str) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()

    async with serve_tcp(plain) as target:
        r = await probe(make(target=target, tls=True, ca_file=ca_file))
    assert r.error_kind == "tls"
    assert r.error == "TLS handshake failed: wrong version number (does this port speak TLS?)"


# Config


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("10.0.0.1", "invalid target '10.0.0.1': expected HOST:PORT"),
        (":80", "invalid target ':80': expected HOST:PORT"),
        ("db:0", "invalid target 'db:0': port must be a number from 1 to 65535"),
        ("db:65536", "invalid target 'db:65536': port must be a number from 1 to 65535"),
        ("db:http", "invalid target 'db:http': port must be a number from 1 to 65535"),
        ("::1:80", "invalid target '::1:80': write IPv6 addresses in brackets, like [::1]:80"),
        ("[db]:80", "invalid target '[db]:80': 'db' is not an IPv6 address"),
        ("tcp://db:80", "invalid target 'tcp://db:80': write IPv6 addresses in brackets, like [::1]:80"),
        ("my db:80", "invalid target 'my db:80': expected HOST:PORT"),
    ],
)
def test_bad_target(target: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make(target=target)
    with pytest.raises(ValidationError, match="invalid target"):
        make(targets=["db:5432", target])


def test_good_targets() -> None:
    assert parse_target("[::1]:80") == ("::1", 80)
    assert parse_target("db-1.internal:5432") == ("db-1.internal", 5432)
    assert parse_target("10.0.0.1:65535") == ("10.0.0.1", 65535)
    check = make(targets=["a:1", "[2001:db8::1]:443"])
    assert check.targets() == ["a:1", "[2001:db8::1]:443"]


def test_bad_regex() -> None:
    with pytest.raises(ValidationError, match=r"invalid expect regex '\(220': missing \)"):
        make(target="db:25", expect="(220")


def test_bad_tls_options(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no such file: '/nope\.pem'"):
        make(target="db:443", tls=True, ca_file="/nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="holds no usable PEM certificates"):
        make(target="db:443", tls=True, ca_file=str(junk))
    with pytest.raises(ValidationError, match="server_name only apply with tls: true"):
        make(target="db:443", server_name="db")
    with pytest.raises(ValidationError, match="max_read"):
        make(target="db:443", max_read=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make(target="db:443", expct="x")
