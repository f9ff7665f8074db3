"""The probe of ``type: dns``: one question to a DNS server or the system resolver over dnspython,
the answer judged against the check's expectations, network errors mapped to error kinds.

:mod:`checks.dns` holds the options, their validation and the values; it imports this module on
the first probe, so loading and validating a config never pays for dnspython's resolver.
"""

from __future__ import annotations

import math
import re

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

from checks.base import Observation
from checks.dns import DnsConfig, _ip, parse_server


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


class DnsProbe:
    """What one dns check needs to probe, compiled once from its config: the record type, the
    expected response code, the answer regex and the server to ask."""

    def __init__(self, config: DnsConfig) -> None:
        self._cfg = config
        self._rdtype = dns.rdatatype.from_text(config.record)
        self._rcode = dns.rcode.from_text(config.expect.rcode)
        self._regex = re.compile(config.expect.answer) if config.expect.answer is not None else None
        self._server = parse_server(config.server) if config.server else None

    async def probe(self, target: str) -> Observation:
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
        return self.judge(response.rcode(), response)

    async def _ask_system(self, qname: dns.name.Name) -> Observation:
        try:
            resolver = _system_resolver()
            tcp = self._cfg.transport == "tcp"
            answer = await resolver.resolve(
                qname, self._rdtype, tcp=tcp, raise_on_no_answer=False, search=False, backend=_BACKEND
            )
        except dns.resolver.NXDOMAIN as exc:
            return self.judge(dns.rcode.NXDOMAIN, exc.kwargs["responses"].get(qname))
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            answered = [e[4] for e in errors if isinstance(e[3], str) and e[4] is not None]  # an rcode
            if answered:
                return self.judge(answered[-1].rcode(), answered[-1])
            if not errors:
                return Observation(ok=False, error_kind="dns", error="no nameserver to ask")
            server, _tcp, port, error, _ = errors[-1]
            server = server.removeprefix("Do53:").rpartition("@")[0] or server  # "Do53:10.0.0.1@53"
            return _network_failure(error, server, port)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf, YXDOMAIN, ...
            return Observation(ok=False, error_kind="dns", error=f"system resolver: {exc}")
        return self.judge(answer.response.rcode(), answer.response)

    def judge(self, rcode: int, response: dns.message.Message | None) -> Observation:
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
