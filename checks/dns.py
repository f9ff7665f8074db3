"""``type: dns``: ask a DNS server (or the system resolver) one question and judge the answer.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    query      the DNS name to ask about; ``targets:`` is the list form. With ``record: PTR`` an
               IP address is turned into its reverse name (``10.0.0.1`` -> ``1.0.0.10.in-addr.arpa``)
    record     A, AAAA, CNAME, MX, TXT, NS, SOA, SRV or PTR (default A)
    server     HOST[:PORT] of the server to ask (IPv6 in brackets: ``[2001:db8::53]:53``); default:
               the system resolver (the nameservers of /etc/resolv.conf, tried in turn)
    transport  udp or tcp (default udp; a truncated UDP answer is asked again over TCP)
    expect     what the answer must look like:
                 rcode        the response code (default NOERROR; NXDOMAIN checks that a name
                              does not exist, e.g. a retired host)
                 answer       a regex searched in each answer's text; at least one must match.
                              Texts: ``10.0.0.1``, ``10 mail.example.com.`` (names end with a dot),
                              TXT strings joined as one (``v=spf1 include:... -all``)
                 min_answers  the fewest answer records of the asked type

Values:

    duration  s  the whole exchange (with a name ``server``, looking up the server too)
    answers   1  answer records of the asked type
    ttl       s  the lowest TTL in the answer section; only when there are answers

Failures: ``dns`` (an unexpected response code, ``rcode NXDOMAIN (expected NOERROR)``; a malformed
reply; the server's name did not resolve), ``expect`` (no answer matched ``answer``, or fewer than
``min_answers``), ``refused`` (nothing listens on the server's port), ``reset`` (the server closed
TCP mid-answer), ``connection`` (other network errors), ``timeout`` (set by the runner: the whole
resolution, retries included, is bounded by ``timeout``).

Example::

    - name: shop-dns
      type: dns
      query: shop.example.com
      server: 192.0.2.53
      expect: {answer: "^203\\\\.0\\\\.113\\\\.", min_answers: 2}
      alerts: [{when: down, for: 2m, severity: critical}]
    - name: mail-routing
      type: dns
      targets: [example.com, example.org]
      record: MX
      transport: tcp
      expect: {answer: "mx1\\\\.example\\\\.com\\\\.$"}
    - name: retired-host-gone
      type: dns
      query: old-db.example.com
      expect: {rcode: NXDOMAIN}
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, ClassVar, Literal

import dns._asyncio_backend
import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec

RECORDS = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR")
_LABEL = re.compile(rb"(\*|[A-Za-z0-9_-]+)\Z")
_HOST = re.compile(r"[A-Za-z0-9_.-]+\Z")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_name(text: str) -> str:
    """Validate a query: a DNS name or an IP address (for PTR). Raises ValueError."""
    if _ip(text) is None:
        try:
            name = dns.name.from_text(text)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"invalid query name {text!r}: {exc}") from None
        if not all(_LABEL.match(label) for label in name.labels if label):
            raise ValueError(f"invalid query name {text!r}: expected a DNS name such as www.example.com")
    return text


def parse_server(text: str) -> tuple[str, int]:
    """``"ns1"`` -> ``("ns1", 53)``; ``"[::1]:5353"`` -> ``("::1", 5353)``. Raises ValueError."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or not isinstance(_ip(host), ipaddress.IPv6Address):
            raise ValueError(f"invalid server {text!r}: expected [IPv6] or [IPv6]:PORT")
        port = rest[1:] if rest else port
    elif text.count(":") > 1:
        raise ValueError(f"invalid server {text!r}: write IPv6 addresses in brackets, like [2001:db8::53]:53")
    else:
        host, _, port = text.partition(":") if ":" in text else (text, "", port)
        if not host or not _HOST.match(host):
            raise ValueError(f"invalid server {text!r}: expected HOST or HOST:PORT")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid server {text!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _server(text: str) -> str:
    parse_server(text)
    return text


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"invalid answer regex {text!r}: {exc}") from None
    return text


def _choice(kind: str, names: tuple[str, ...], shown: int) -> AfterValidator:
    def check(text: str) -> str:
        if text.upper() not in names:
            more = ", ..." if shown < len(names) else ""
            raise ValueError(f"unknown {kind} {text!r}: use one of {', '.join(names[:shown])}{more}")
        return text.upper()

    return AfterValidator(check)


_RCODES = tuple(r.name for r in dns.rcode.Rcode)
Name = Annotated[str, AfterValidator(check_name)]


class DnsExpect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rcode: Annotated[str, _choice("rcode", _RCODES, 6)] = "NOERROR"
    answer: Annotated[str, AfterValidator(_regex)] | None = None
    min_answers: int | None = Field(default=None, ge=0)


class DnsConfig(CheckConfig):
    query: Name | None = None
    targets: list[Name] | None = None
    record: Annotated[str, _choice("record type", RECORDS, len(RECORDS))] = "A"
    server: Annotated[str, AfterValidator(_server)] | None = None
    transport: Literal["udp", "tcp"] = "udp"
    expect: DnsExpect = DnsExpect()

    @model_validator(mode="after")
    def _ip_only_for_ptr(self) -> DnsConfig:
        for name in [self.query] if self.query else self.targets or ():
            if self.record != "PTR" and _ip(name) is not None:
                raise ValueError(f"query {name!r} is an IP address: use record: PTR to look up its name")
        return self


def _answer_text(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)  # TXT: the strings joined, as SPF and DKIM read them
    return b"".join(strings).decode("utf-8", "replace") if isinstance(strings, tuple) else str(rdata)


def _network_failure(exc: Exception, host: str, port: int) -> Observation:
    """Map an I/O or protocol error talking to ``host`` to its error kind."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, TimeoutError):
        raise exc  # an OSError too, but the runner owns deadlines
    if isinstance(exc, ConnectionRefusedError):
        return Observation(ok=False, error_kind="refused", error=f"connection refused by {where}")
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return Observation(ok=False, error_kind="reset", error=f"{where} closed the connection mid-answer")
    if isinstance(exc, OSError):
        return Observation(ok=False, error_kind="connection", error=f"query to {where} failed: {exc.strerror or exc}")
    return Observation(ok=False, error_kind="dns", error=f"malformed reply from {where}: {exc}")


class _ConnectedUdp(dns._asyncio_backend.Backend):
    """dnspython's asyncio backend with connected UDP sockets, so that an ICMP port unreachable
    ends the query at once as ConnectionRefusedError instead of waiting out the deadline."""

    def datagram_connection_required(self) -> bool:
        return True


_BACKEND = _ConnectedUdp()


def _system_resolver() -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver()  # reads /etc/resolv.conf: edits apply at the next run
    resolver.lifetime = math.inf  # no deadline of its own: the runner's ``timeout`` bounds it all
    return resolver


async def _address_of(host: str) -> str:
    """The first IPv4 (else IPv6) address of ``host`` from the system resolver."""
    resolver = _system_resolver()
    answer = await resolver.resolve(host, "A", raise_on_no_answer=False, backend=_BACKEND)
    if not answer.rrset:
        answer = await resolver.resolve(host, "AAAA", backend=_BACKEND)  # raises NoAnswer if it has neither
    return str(answer.rrset[0]) if answer.rrset else ""


class DnsCheck(BaseCheck):
    TYPE: ClassVar[str] = "dns"
    TARGET_KEY: ClassVar[str | None] = "query"
    Config: ClassVar[type[CheckConfig]] = DnsConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "the whole exchange, retries included"),
        ValueSpec("answers", "1", "answer records of the asked type"),
        ValueSpec("ttl", "s", "the lowest TTL in the answer section (only when there are answers)"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, DnsConfig):
            raise TypeError(f"expected DnsConfig, got {type(config).__name__}")
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        self._rdtype = dns.rdatatype.from_text(config.record)
        self._rcode = dns.rcode.from_text(config.expect.rcode)
        self._regex = re.compile(config.expect.answer) if config.expect.answer is not None else None
        self._server = parse_server(config.server) if config.server else None

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        if self._rdtype == dns.rdatatype.PTR and _ip(target) is not None:
            qname = dns.reversename.from_address(target)
        else:
            qname = dns.name.from_text(target)
        if self._server is None:
            return await self._ask_system(qname)
        host, port = where = self._server
        if _ip(host) is None:
            try:
                host = await _address_of(host)
            except dns.exception.DNSException as exc:
                return Observation(ok=False, error_kind="dns", error=f"cannot resolve server {host!r}: {exc}")
        query = dns.message.make_query(qname, self._rdtype, use_edns=0, payload=1232)
        try:
            if self._cfg.transport == "tcp":
                response = await dns.asyncquery.tcp(query, host, port=port, backend=_BACKEND)
            else:
                response, _ = await dns.asyncquery.udp_with_fallback(query, host, port=port, backend=_BACKEND)
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            return _network_failure(exc, *where)
        return self._judge(response.rcode(), response)

    async def _ask_system(self, qname: dns.name.Name) -> Observation:
        try:
            resolver = _system_resolver()
            tcp = self._cfg.transport == "tcp"
            answer = await resolver.resolve(
                qname, self._rdtype, tcp=tcp, raise_on_no_answer=False, search=False, backend=_BACKEND
            )
        except dns.resolver.NXDOMAIN as exc:
            return self._judge(dns.rcode.NXDOMAIN, exc.kwargs["responses"].get(qname))
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            answered = [e[4] for e in errors if isinstance(e[3], str) and e[4] is not None]  # an rcode
            if answered:
                return self._judge(answered[-1].rcode(), answered[-1])
            if not errors:
                return Observation(ok=False, error_kind="dns", error="no nameserver to ask")
            server, _tcp, port, error, _ = errors[-1]
            server = server.removeprefix("Do53:").rpartition("@")[0] or server  # "Do53:10.0.0.1@53"
            return _network_failure(error, server, port)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf, YXDOMAIN, ...
            return Observation(ok=False, error_kind="dns", error=f"system resolver: {exc}")
        return self._judge(answer.response.rcode(), answer.response)

    def _judge(self, rcode: int, response: dns.message.Message | None) -> Observation:
        rrsets = response.answer if response is not None else []
        found = [rd for rrset in rrsets if rrset.rdtype == self._rdtype for rd in rrset]
        values = {"answers": float(len(found))}
        if found:
            values["ttl"] = float(min(rrset.ttl for rrset in rrsets))
        expect = self._cfg.expect
        if rcode != self._rcode:
            error = f"rcode {dns.rcode.to_text(dns.rcode.Rcode.make(rcode))} (expected {expect.rcode})"
            return Observation(ok=False, values=values, error_kind="dns", error=error)
        if expect.min_answers is not None and len(found) < expect.min_answers:
            error = f"{len(found)} answers, expected at least {expect.min_answers}"
            return Observation(ok=False, values=values, error_kind="expect", error=error)
        if self._regex is not None:
            texts = [_answer_text(rd) for rd in found]
            if not any(self._regex.search(text) for text in texts):
                got = ", ".join(sorted(texts)) if texts else "no answers"
                got = got if len(got) <= 200 else got[:197] + "..."
                error = f"no answer matches /{self._regex.pattern}/; got: {got}"
                return Observation(ok=False, values=values, error_kind="expect", error=error)
        return Observation(ok=True, values=values)
