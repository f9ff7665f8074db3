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

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agent.core import validators
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
        import dns.exception  # only configs with dns checks pay for dnspython
        import dns.name

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


def _choice(kind: str, names_of: Callable[[], tuple[str, ...]], shown: int) -> AfterValidator:
    def check(text: str) -> str:
        names = names_of()
        if text.upper() not in names:
            more = ", ..." if shown < len(names) else ""
            raise ValueError(f"unknown {kind} {text!r}: use one of {', '.join(names[:shown])}{more}")
        return text.upper()

    return AfterValidator(check)


@functools.cache
def _rcodes() -> tuple[str, ...]:
    import dns.rcode

    return tuple(r.name for r in dns.rcode.Rcode)


Name = Annotated[str, AfterValidator(check_name)]


class DnsExpect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rcode: Annotated[str, _choice("rcode", _rcodes, 6)] = "NOERROR"
    answer: Annotated[str, AfterValidator(functools.partial(validators.regex, what="answer regex"))] | None = None
    min_answers: int | None = Field(default=None, ge=0)


class DnsConfig(CheckConfig):
    query: Name | None = None
    targets: list[Name] | None = None
    record: Annotated[str, _choice("record type", lambda: RECORDS, len(RECORDS))] = "A"
    server: Annotated[str, AfterValidator(_server)] | None = None
    transport: Literal["udp", "tcp"] = "udp"
    expect: DnsExpect = DnsExpect()

    @model_validator(mode="after")
    def _ip_only_for_ptr(self) -> DnsConfig:
        for name in [self.query] if self.query else self.targets or ():
            if self.record != "PTR" and _ip(name) is not None:
                raise ValueError(f"query {name!r} is an IP address: use record: PTR to look up its name")
        return self


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
        # dnspython's resolver is imported here, when the check is built, not when a config loads;
        # and before any probe starts, so importing it never stalls the event loop under a probe.
        from checks.dns_probe import DnsProbe

        self._impl = DnsProbe(config)

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        return await self._impl.probe(target)
