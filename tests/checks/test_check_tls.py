"""The tls check against real TLS servers on 127.0.0.1 (trustme and cryptography certificates),
through the probe runner."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

import checks.tls
from checks.base import Result
from checks.tls import TlsCheck
from tests.support import factories
from tests.support.peers.servers import free_port, serve_tcp
from tests.support.peers.tls import server_context

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def make(**options: Any) -> TlsCheck:
    return factories.check(TlsCheck, **{"name": "t", "timeout": "3s", **options})


probe = factories.probe_once


@asynccontextmanager
async def serve(tls: ssl.SSLContext | None, *, plain_reply: bytes | None = None) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that handshakes (``tls``) or, without it, reads and answers ``plain_reply``
    (or stays silent); yields the ``127.0.0.1:PORT`` target."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if plain_reply is not None:
            await reader.read(1)
            writer.write(plain_reply)
            await writer.drain()
        await asyncio.sleep(10)

    async with serve_tcp(handle, tls) as target:
        yield target


def assert_days(r: Result, expected: float) -> None:
    assert r.values["days_left"] == pytest.approx(expected, abs=0.01), r.values


def cert(
    cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, days: tuple[int, int], ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for ``cn`` (and 127.0.0.1) signed by ``issuer``, or by itself without one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem_files(tmp_path: Path, chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


# Certificates


async def test_valid_certificate(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("localhost", "127.0.0.1", not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    async with serve(server_context(leaf)) as target:
        r = await probe(make(target=target, ca_file=ca_file))
        assert r.ok, r.error
        assert r.error_kind is None and r.type == "tls"
        assert_days(r, 30)
        assert 0 < r.values["handshake"] <= r.values["duration"] < 3
        r = await probe(make(target=target, ca_file=ca_file, server_name="localhost", min_version="1.3"))
        assert r.ok, r.error


async def test_days_left_is_the_earliest_expiry_in_the_presented_chain(tmp_path: Path) -> None:
    root = cert("root", None, (-10, 3650), ca=True)
    inter = cert("intermediate", root, (-10, 10), ca=True)  # the intermediate expires first
    leaf = cert("localhost", inter, (-1, 300), ca=False)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pem_files(tmp_path, [leaf[0], inter[0]], leaf[1]))
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(root[0].public_bytes(serialization.Encoding.PEM))
    async with serve(ctx) as target:
        r = await probe(make(target=target, ca_file=str(root_file)))
    assert r.ok, r.error
    assert_days(r, 10)


async def test_expired_certificate_still_reports_days_left(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("127.0.0.1", not_before=NOW - 90 * DAY, not_after=NOW - 3 * DAY)
    async with serve(server_context(leaf)) as target:
        r = await probe(make(target=target, ca_file=ca_file))
        assert not r.ok
        assert r.error_kind == "tls"
        expiry = (NOW - 3 * DAY).strftime("%Y-%m-%d %H:%M:%S")
        assert r.error == f"certificate expired: not valid after {expiry} UTC"
        assert_days(r, -3)
        assert "handshake" not in r.values
        # tls_verify: false connects anyway, and `days_left < 14` still fires on the value.
        r = await probe(make(target=target, tls_verify=False))
        assert r.ok, r.error
        assert_days(r, -3)
        assert r.values["handshake"] > 0


async def test_not_yet_valid_certificate(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("127.0.0.1", not_before=NOW + 2 * DAY, not_after=NOW + 60 * DAY)
    async with serve(server_context(leaf)) as target:
        r = await probe(make(target=target, ca_file=ca_file))
    assert r.error_kind == "tls"
    start = (NOW + 2 * DAY).strftime("%Y-%m-%d %H:%M:%S")
    assert r.error == f"certificate not yet valid: not valid before {start} UTC"
    assert_days(r, 60)


async def test_self_signed_certificate(tmp_path: Path) -> None:
    leaf = cert("localhost", None, (-1, 20), ca=False)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pem_files(tmp_path, [leaf[0]], leaf[1]))
    async with serve(ctx) as target:
        r = await probe(make(target=target))
    assert r.error_kind == "tls"
    assert r.error == "self-signed certificate: the server's certificate is its own issuer and is not trusted"
    assert_days(r, 20)


async def test_self_signed_root_in_chain(tmp_path: Path) -> None:
    root = cert("root", None, (-1, 3650), ca=True)
    leaf = cert("localhost", root, (-1, 40), ca=False)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pem_files(tmp_path, [leaf[0], root[0]], leaf[1]))
    async with serve(ctx) as target:
        r = await probe(make(target=target))
    assert r.error == "self-signed certificate: the chain ends in a self-signed root that is not trusted"
    assert_days(r, 40)


async def test_hostname_mismatch(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("localhost", not_after=NOW + 50 * DAY)
    async with serve(server_context(leaf)) as target:
        r = await probe(make(target=target, ca_file=ca_file, server_name="db.example.com"))
        assert r.error_kind == "tls"
        assert r.error == "hostname mismatch: the certificate is not valid for 'db.example.com'"
        assert_days(r, 50)
        r = await probe(make(target=target, ca_file=ca_file))  # an IP target, a certificate for a name
        assert r.error == "hostname mismatch: the certificate is not valid for '127.0.0.1'"
        r = await probe(make(target=target, ca_file=ca_file, server_name="localhost"))
        assert r.ok, r.error


async def test_unknown_ca(ca: trustme.CA, tmp_path: Path) -> None:
    leaf = ca.issue_cert("127.0.0.1", not_after=NOW + 70 * DAY)
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with serve(server_context(leaf)) as target:
        r = await probe(make(target=target))
        assert r.error_kind == "tls"
        assert r.error == (
            "unknown CA: unable to get local issuer certificate (no issuer found in the system trust store)"
        )
        assert_days(r, 70)
        r = await probe(make(target=target, ca_file=str(other)))
        assert (
            r.error == f"unknown CA: unable to get local issuer certificate (no issuer found in ca_file {str(other)!r})"
        )


# Client certificates


@pytest.fixture
def client_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    client = ca.issue_cert("agent@example.com")
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(b"".join(p.bytes() for p in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(key_path))
    return {"cert_file": str(cert_path), "key_file": str(key_path)}


@contextmanager
def serve_blocking(ctx: ssl.SSLContext) -> Iterator[str]:
    """A server on the blocking ssl module, one connection at a time: like nginx or Go servers (and
    unlike asyncio's), it sends the alert when it rejects a handshake."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(3)
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)  # until the probe hangs up
                except OSError:
                    pass  # the handshake was rejected (alert sent), or the probe hung up

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def mtls_server_context(ca: trustme.CA, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = server_context(ca.issue_cert("127.0.0.1"), max_version=version)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
async def test_client_certificate_required(
    ca: trustme.CA,
    ca_file: str,
    client_files: dict[str, str],
    tmp_path: Path,
    version: ssl.TLSVersion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checks.tls, "_SETTLE_S", 60.0)  # only the server's verdict can end the wait early
    stranger = trustme.CA().issue_cert("agent@example.com")  # from a CA the server does not trust
    cert_path, key_path = tmp_path / "stranger.pem", tmp_path / "stranger.key"
    stranger.cert_chain_pems[0].write_to_path(str(cert_path))
    stranger.private_key_pem.write_to_path(str(key_path))
    with serve_blocking(mtls_server_context(ca, version)) as target:
        r = await probe(make(target=target, ca_file=ca_file, **client_files))
        assert r.ok, r.error
        assert r.values["duration"] < 2, "the TLS 1.3 session ticket should end the wait for a verdict"
        r = await probe(make(target=target, ca_file=ca_file))
        assert r.error_kind == "tls"
        if version == ssl.TLSVersion.TLSv1_3:
            assert r.error == (
                "handshake failed: tlsv13 alert certificate required"
                " (the server wants a client certificate: set cert_file and key_file)"
            )
        else:  # TLS 1.2 servers answer a generic alert
            assert r.error == "handshake failed: sslv3 alert handshake failure"
        r = await probe(make(target=target, ca_file=ca_file, cert_file=str(cert_path), key_file=str(key_path)))
        assert r.error_kind == "tls"
        assert r.error == "handshake failed: tlsv1 alert unknown ca (the server refused our client certificate)"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
async def test_server_hanging_up_on_a_missing_client_certificate(
    ca: trustme.CA, ca_file: str, version: ssl.TLSVersion
) -> None:
    # asyncio servers close without an alert: with TLS 1.3 that happens after our handshake is done.
    async with serve(mtls_server_context(ca, version)) as target:
        r = await probe(make(target=target, ca_file=ca_file))
    assert r.error_kind == "reset"
    assert r.error == "connection closed by peer during TLS handshake"


# Protocol and network failures


async def test_min_version_against_an_old_server(ca: trustme.CA, ca_file: str) -> None:
    with serve_blocking(server_context(ca.issue_cert("127.0.0.1"), max_version=ssl.TLSVersion.TLSv1_2)) as target:
        r = await probe(make(target=target, ca_file=ca_file))
        assert r.ok, r.error
        r = await probe(make(target=target, ca_file=ca_file, min_version=1.3))  # as YAML reads `1.3`
    assert r.error_kind == "tls"
    assert r.error == "handshake failed: tlsv1 alert protocol version"


async def test_handshake_never_answered_times_out() -> None:
    async with serve(None) as target:
        r = await probe(make(target=target, timeout="400ms"))
    assert r.error_kind == "timeout"
    assert 0.4 <= r.duration_s < 0.9


async def test_plaintext_server() -> None:
    async with serve(None, plain_reply=b"HTTP/1.0 400 Bad Request\r\n\r\n") as target:
        r = await probe(make(target=target))
    assert r.error_kind == "tls"
    assert r.error == "handshake failed: wrong version number (does this port speak TLS?)"


async def test_server_closes_during_handshake() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    async with server:
        r = await probe(make(target=f"127.0.0.1:{server.sockets[0].getsockname()[1]}"))
    assert r.error_kind == "reset"
    assert r.error == "connection closed by peer during TLS handshake"


async def test_refused() -> None:
    port = free_port()
    r = await probe(make(target=f"127.0.0.1:{port}"))
    assert r.error_kind == "refused"
    assert r.error == f"connection refused by 127.0.0.1:{port}"


# Config


def test_client_cert_and_key_go_together(client_files: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="cert_file and key_file go together: set both or neither"):
        make(target="db:443", cert_file=client_files["cert_file"])
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        make(target="db:443", key_file=client_files["key_file"])
    with pytest.raises(ValidationError, match=r"cert_file '/nope\.pem' not found"):
        make(target="db:443", cert_file="/nope.pem", key_file=client_files["key_file"])
    with pytest.raises(ValidationError, match=r"key_file '/nope\.key' not found"):
        make(target="db:443", cert_file=client_files["cert_file"], key_file="/nope.key")
    other_key = trustme.CA().issue_cert("x").private_key_pem
    mismatched = Path(client_files["key_file"]).with_name("other.key")
    other_key.write_to_path(str(mismatched))
    with pytest.raises(ValidationError, match="not a usable certificate and key"):
        make(target="db:443", cert_file=client_files["cert_file"], key_file=str(mismatched))


def test_encrypted_key_is_refused_without_prompting(tmp_path: Path) -> None:
    leaf, key = cert("agent", None, (-1, 10), ca=False)
    cert_path = tmp_path / "c.pem"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path = tmp_path / "c.key"
    encryption = serialization.BestAvailableEncryption(b"secret-passphrase")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    with pytest.raises(ValidationError, match="key_file is encrypted") as info:
        make(target="db:443", cert_file=str(cert_path), key_file=str(key_path))
    assert "secret-passphrase" not in str(info.value)


def test_bad_ca_file_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no such file: '/nope\.pem'"):
        make(target="db:443", ca_file="/nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="holds no usable PEM certificates"):
        make(target="db:443", ca_file=str(junk))
    with pytest.raises(ValidationError, match="min_version"):
        make(target="db:443", min_version="1.1")
    with pytest.raises(ValidationError, match="invalid server_name ''"):
        make(target="db:443", server_name="")
    with pytest.raises(ValidationError, match="invalid target 'db'"):
        make(target="db")
    with pytest.raises(ValidationError, match="invalid target"):
        make(targets=["db:443", "db"])
    assert make(targets=["a:443", "[::1]:8443"]).targets() == ["a:443", "[::1]:8443"]
