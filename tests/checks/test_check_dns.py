"""The dns check against a real authoritative server (dnspython on asyncio, UDP and TCP) on
127.0.0.1, through the probe runner: with an explicit ``server`` and through the system resolver."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from pydantic import ValidationError

from checks.dns import DnsCheck, parse_server
from tests.support import factories

ZONE = """
test.                   3600 SOA ns1.test. admin.test. 1 7200 900 1209600 300
test.                   3600 NS  ns1.test.
test.                   600  MX  10 mail.test.
test.                   600  MX  20 mail2.test.
test.                   300  TXT "v=spf1 " "ip4:10.0.0.0/24 -all"
www.test.               300  A   10.0.0.1
www.test.               300  A   10.0.0.2
www.test.               120  AAAA 2001:db8::1
alias.test.             60   CNAME www.test.
_sip._tcp.test.         900  SRV 10 5 5060 sip.test.
1.0.0.10.in-addr.arpa.  300  PTR www.test.
big.test.               30   A   10.0.1.1
ns.test.                300  A   127.0.0.1
"""
_GROUPED: dict[tuple[str, str], tuple[int, list[str]]] = {}
for _line in ZONE.strip().splitlines():
    _name, _ttl, _type, _rdata = _line.split(None, 3)
    _GROUPED.setdefault((_name, _type), (int(_ttl), []))[1].append(_rdata)
RECORDS = {
    (dns.name.from_text(n), dns.rdatatype.from_text(t)): dns.rrset.from_text_list(n, ttl, "IN", t, rdatas)
    for (n, t), (ttl, rdatas) in _GROUPED.items()
}
NAMES = {name for name, _ in RECORDS}
SOA = RECORDS[(dns.name.from_text("test."), dns.rdatatype.SOA)]


def answer(wire: bytes, tcp: bool) -> bytes:
    """The authoritative answer to one query; special names misbehave on purpose."""
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    qname, qtype = query.question[0].name, query.question[0].rdtype
    label = qname.labels[0]
    if label == b"broken":
        response.set_rcode(dns.rcode.SERVFAIL)
    elif label == b"big" and not tcp:
        response.flags |= dns.flags.TC  # "too big for UDP": the client must ask again over TCP
    elif label == b"garbage":
        return response.to_wire()[:-3]  # cut short: a malformed reply with the right id
    name = qname
    while label not in (b"broken", b"garbage") and not response.flags & dns.flags.TC:
        if (name, qtype) in RECORDS:
            response.answer.append(RECORDS[(name, qtype)])
        elif (name, dns.rdatatype.CNAME) in RECORDS:
            cname = RECORDS[(name, dns.rdatatype.CNAME)]
            response.answer.append(cname)
            name = cname[0].target
            continue
        else:
            response.authority.append(SOA)
            if name not in NAMES:
                response.set_rcode(dns.rcode.NXDOMAIN)
        break
    return response.to_wire()


class Udp(asyncio.DatagramProtocol):
    def __init__(self, hang: bool) -> None:
        self.hang = hang
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received += 1
        if not self.hang:
            self.transport.sendto(answer(data, tcp=False), addr)


@asynccontextmanager
async def dns_server(hang: bool = False, host: str = "127.0.0.1") -> AsyncIterator[tuple[str, Udp]]:
    """UDP and TCP on one port of ``host``; yields (``HOST:PORT``, the UDP protocol)."""
    loop = asyncio.get_running_loop()
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                query = await reader.readexactly(size)
                if hang:
                    await reader.read()  # never answer; return when the client hangs up
                    return
                reply = answer(query, tcp=True)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    for _ in range(20):  # the UDP port may be taken for TCP by someone else: try another
        transport, protocol = await loop.create_datagram_endpoint(lambda: Udp(hang), local_addr=(host, 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            server = await asyncio.start_server(handle, host, port)
            break
        except OSError:
            transport.close()
    else:
        raise RuntimeError("no free port for UDP and TCP")
    try:
        yield (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), protocol
    finally:
        server.close()
        transport.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers)


def make(**options: Any) -> DnsCheck:
    return factories.check(DnsCheck, **{"name": "d", "timeout": "2s", **options})


probe = factories.probe_once


def closed_port(kind: socket.SocketKind, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def system_resolver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: str) -> Iterator[None]:
    """Point the system resolver (what ``dns.asyncresolver.Resolver()`` reads) at ``server``."""
    host, port = parse_server(server)
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {host}\noptions timeout:1\n")
    original = dns.resolver.BaseResolver.read_resolv_conf

    def read(self: dns.resolver.BaseResolver, f: Any) -> None:
        original(self, str(conf))
        self.port = port  # resolv.conf has no port syntax

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", read)
    yield


# Each record type, against an explicit server


@pytest.mark.parametrize(
    ("query", "record", "regex", "answers", "ttl"),
    [
        ("www.test", "A", r"^10\.0\.0\.2$", 2, 300),
        ("www.test", "AAAA", r"^2001:db8::1$", 1, 120),
        ("alias.test", "CNAME", r"^www\.test\.$", 1, 60),
        ("alias.test", "A", r"^10\.0\.0\.1$", 2, 60),  # the CNAME chain: its TTL is the lowest
        ("test", "MX", r"^20 mail2\.test\.$", 2, 600),
        ("test", "TXT", r"^v=spf1 ip4:10\.0\.0\.0/24 -all$", 1, 300),  # strings joined
        ("test", "NS", r"^ns1\.test\.$", 1, 3600),
        ("test", "SOA", r"^ns1\.test\. admin\.test\. 1 ", 1, 3600),
        ("_sip._tcp.test", "SRV", r"^10 5 5060 sip\.test\.$", 1, 900),
        ("1.0.0.10.in-addr.arpa", "PTR", r"^www\.test\.$", 1, 300),
        ("10.0.0.1", "PTR", r"^www\.test\.$", 1, 300),  # an address becomes its reverse name
    ],
)
async def test_record_types(query: str, record: str, regex: str, answers: int, ttl: int) -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query=query, record=record, server=server, expect={"answer": regex}))
    assert r.ok, r.error
    assert r.values["answers"] == answers
    assert r.values["ttl"] == ttl
    assert 0 < r.values["duration"] < 1


async def test_targets_probe_each_name() -> None:
    async with dns_server() as (server, _):
        check = make(targets=["www.test", "nope.test"], server=server)
        ok, missing = [await probe(check, t) for t in check.targets()]
    assert ok.ok and ok.values["answers"] == 2
    assert not missing.ok and missing.error == "rcode NXDOMAIN (expected NOERROR)"


async def test_rcode_expectations() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="gone.test", server=server))
        assert (r.ok, r.error_kind, r.error) == (False, "dns", "rcode NXDOMAIN (expected NOERROR)")
        assert r.values["answers"] == 0 and "ttl" not in r.values

        r = await probe(make(query="gone.test", server=server, expect={"rcode": "nxdomain"}))
        assert r.ok, r.error

        r = await probe(make(query="www.test", server=server, expect={"rcode": "NXDOMAIN"}))
        assert r.error == "rcode NOERROR (expected NXDOMAIN)" and r.error_kind == "dns"

        r = await probe(make(query="broken.test", server=server))
        assert r.error == "rcode SERVFAIL (expected NOERROR)" and r.error_kind == "dns"
        r = await probe(make(query="broken.test", server=server, expect={"rcode": "SERVFAIL"}))
        assert r.ok, r.error


async def test_nodata_is_noerror_with_no_answers() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="www.test", record="MX", server=server))
        assert r.ok, r.error
        assert r.values["answers"] == 0 and "ttl" not in r.values
        r = await probe(make(query="www.test", record="MX", server=server, expect={"min_answers": 1}))
        assert (r.error_kind, r.error) == ("expect", "0 answers, expected at least 1")


async def test_answer_regex_mismatch_lists_what_came() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="www.test", server=server, expect={"answer": r"^10\.0\.0\.9$"}))
        assert not r.ok
        assert r.error_kind == "expect"
        assert r.error == r"no answer matches /^10\.0\.0\.9$/; got: 10.0.0.1, 10.0.0.2"
        assert r.values["answers"] == 2

        r = await probe(make(query="www.test", record="MX", server=server, expect={"answer": "mail"}))
        assert r.error == "no answer matches /mail/; got: no answers"


def test_long_answer_lists_are_truncated() -> None:
    check = make(query="www.test", expect={"answer": "^nope$"})
    response = dns.message.make_response(dns.message.make_query("www.test", "A"))
    response.answer.append(dns.rrset.from_text("www.test.", 60, "IN", "A", *[f"10.0.{i}.{i}" for i in range(60)]))
    obs = check._impl.judge(dns.rcode.NOERROR, response)
    assert obs.error is not None and obs.error.endswith("...")
    assert len(obs.error) == len("no answer matches /^nope$/; got: ") + 200


async def test_min_answers() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="www.test", server=server, expect={"min_answers": 2}))
        assert r.ok, r.error
        r = await probe(make(query="www.test", server=server, expect={"min_answers": 3}))
        assert (r.ok, r.error_kind, r.error) == (False, "expect", "2 answers, expected at least 3")


async def test_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="big.test", server=server, expect={"answer": r"^10\.0\.1\.1$"}))
    assert r.ok, r.error
    assert r.values["answers"] == 1 and r.values["ttl"] == 30


async def test_tcp_transport() -> None:
    async with dns_server() as (server, udp):
        r = await probe(make(query="www.test", server=server, transport="tcp", expect={"min_answers": 2}))
        assert r.ok, r.error
        assert udp.received == 0  # nothing went over UDP


async def test_ipv6_server() -> None:
    try:
        closed_port(socket.SOCK_DGRAM, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    async with dns_server(host="::1") as (server, _):
        for transport in ("udp", "tcp"):
            r = await probe(make(query="www.test", record="AAAA", server=server, transport=transport))
            assert r.ok and r.values["answers"] == 1, r.error
    port = closed_port(socket.SOCK_DGRAM, "::1")
    r = await probe(make(query="www.test", server=f"[::1]:{port}"))
    assert (r.error_kind, r.error) == ("refused", f"connection refused by [::1]:{port}")


async def test_malformed_reply() -> None:
    async with dns_server() as (server, _):
        r = await probe(make(query="garbage.test", server=server))
    assert r.error_kind == "dns"
    assert r.error is not None and r.error.startswith(f"malformed reply from {server}: ")


async def test_refused_udp_and_tcp() -> None:
    port = closed_port(socket.SOCK_DGRAM)
    r = await probe(make(query="www.test", server=f"127.0.0.1:{port}"))
    assert (r.error_kind, r.error) == ("refused", f"connection refused by 127.0.0.1:{port}")
    assert r.duration_s < 1
    port = closed_port(socket.SOCK_STREAM)
    r = await probe(make(query="www.test", server=f"127.0.0.1:{port}", transport="tcp"))
    assert (r.error_kind, r.error) == ("refused", f"connection refused by 127.0.0.1:{port}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_hung_server_times_out(transport: str) -> None:
    async with dns_server(hang=True) as (server, _):
        before = open_fds()
        r = await probe(make(query="www.test", server=server, transport=transport, timeout="500ms"))
        await asyncio.sleep(0.05)  # the server side of a TCP connection closes on its next turn
        assert open_fds() == before  # the cancelled query closed its socket
    assert (r.error_kind, r.error) == ("timeout", "no answer within 0.5s")
    assert 0.5 <= r.duration_s < 2.0


async def test_hung_server_does_not_stall_other_probes() -> None:
    async with dns_server(hang=True) as (hung, udp), dns_server() as (good, _):
        t0 = time.perf_counter()
        stuck = asyncio.create_task(probe(make(query="www.test", server=hung, timeout="2s")))
        await asyncio.sleep(0.05)
        assert udp.received == 1  # the stuck probe is waiting on the hung server
        r = await probe(make(query="www.test", server=good))
        assert r.ok, r.error
        assert time.perf_counter() - t0 < 1.8 and not stuck.done()
        assert (await stuck).error_kind == "timeout"


# The system resolver (dns.asyncresolver reading resolv.conf)


async def test_system_resolver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with dns_server() as (server, udp):
        with system_resolver(monkeypatch, tmp_path, server):
            r = await probe(make(query="alias.test", expect={"answer": r"^10\.0\.0\.2$", "min_answers": 2}))
            assert r.ok, r.error
            assert r.values["ttl"] == 60
            r = await probe(make(query="big.test"))  # truncated over UDP: the resolver retries over TCP
            assert r.ok and r.values["answers"] == 1, r.error
            r = await probe(make(query="gone.test"))
            assert (r.error_kind, r.error) == ("dns", "rcode NXDOMAIN (expected NOERROR)")
            r = await probe(make(query="gone.test", expect={"rcode": "NXDOMAIN"}))
            assert r.ok, r.error
            r = await probe(make(query="broken.test"))
            assert (r.error_kind, r.error) == ("dns", "rcode SERVFAIL (expected NOERROR)")
            received = udp.received
            r = await probe(make(query="www.test", transport="tcp"))
            assert r.ok and udp.received == received, r.error


async def test_system_resolver_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = closed_port(socket.SOCK_DGRAM)
    with system_resolver(monkeypatch, tmp_path, f"127.0.0.1:{port}"):
        r = await probe(make(query="www.test"))
    assert (r.error_kind, r.error) == ("refused", f"connection refused by 127.0.0.1:{port}")


async def test_system_resolver_hung_is_cancelled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with dns_server(hang=True) as (hung, _), dns_server() as (good, _):
        with system_resolver(monkeypatch, tmp_path, hung):
            # past the resolver's own 1s per-try timeout: it retries until the runner's deadline
            before = open_fds()
            stuck = asyncio.create_task(probe(make(query="www.test", timeout="1500ms")))
            await asyncio.sleep(0.05)
            r = await probe(make(query="www.test", server=good))
            assert r.ok and not stuck.done(), r.error
            stuck_result = await stuck
            await asyncio.sleep(0.05)
            assert open_fds() == before
    assert stuck_result.error_kind == "timeout"
    assert 1.5 <= stuck_result.duration_s < 2.0


async def test_server_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with dns_server() as (server, _):
        port = parse_server(server)[1]
        with system_resolver(monkeypatch, tmp_path, server):
            r = await probe(make(query="www.test", server=f"ns.test:{port}"))  # ns.test is 127.0.0.1
            assert r.ok and r.values["answers"] == 2, r.error
            r = await probe(make(query="www.test", server=f"nope.test:{port}"))
            assert r.error_kind == "dns"
            assert r.error is not None and r.error.startswith("cannot resolve server 'nope.test': ")


# Config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"record": "AXFR"}, "unknown record type 'AXFR': use one of A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, PTR"),
        ({"server": "10.0.0.1:0"}, "invalid server '10.0.0.1:0': port must be a number from 1 to 65535"),
        ({"server": "ns1:dns"}, "invalid server 'ns1:dns': port must be a number from 1 to 65535"),
        ({"server": "2001:db8::53"}, "write IPv6 addresses in brackets, like \\[2001:db8::53\\]:53"),
        ({"server": "[ns1]:53"}, "invalid server '\\[ns1\\]:53': expected \\[IPv6\\] or \\[IPv6\\]:PORT"),
        ({"server": "udp://ns1"}, "invalid server 'udp://ns1': port must be a number"),
        ({"server": "my ns"}, "invalid server 'my ns': expected HOST or HOST:PORT"),
        ({"transport": "quic"}, "Input should be 'udp' or 'tcp'"),
        ({"expect": {"answer": "(10"}}, "invalid answer regex '\\(10': missing \\)"),
        ({"expect": {"rcode": "OK"}}, "unknown rcode 'OK': use one of NOERROR, FORMERR, SERVFAIL"),
        ({"expect": {"min_answers": -1}}, "greater than or equal to 0"),
        ({"expect": {"answers": 1}}, "Extra inputs are not permitted"),
        ({"query": "my host.test"}, "invalid query name 'my host.test': expected a DNS name"),
        ({"query": "a..test"}, "invalid query name 'a..test': "),
        ({"query": "x" * 64 + ".test"}, "invalid query name 'x{64}.test': "),
        ({"query": "https://www.test/"}, "invalid query name"),
        ({"query": "10.0.0.1"}, "query '10.0.0.1' is an IP address: use record: PTR"),
    ],
)
def test_bad_config(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**{"query": "www.test", **options})


def test_bad_targets() -> None:
    with pytest.raises(ValidationError, match="invalid query name 'bad name'"):
        make(targets=["www.test", "bad name"])
    with pytest.raises(ValidationError, match="query '::1' is an IP address"):
        make(targets=["www.test", "::1"])


def test_good_config() -> None:
    assert parse_server("ns1.example.com") == ("ns1.example.com", 53)
    assert parse_server("[2001:db8::53]") == ("2001:db8::53", 53)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    check = make(query="_sip._tcp.example.com", record="srv", server="[::1]:53", expect={"rcode": "refused"})
    assert check._cfg.record == "SRV" and check._cfg.expect.rcode == "REFUSED"
    assert make(query="bücher.example", record="aaaa").targets() == ["bücher.example"]
    assert make(query="2001:db8::1", record="PTR").targets() == ["2001:db8::1"]
    assert make(query="*.example.com.").targets() == ["*.example.com."]
