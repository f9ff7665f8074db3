"""``type: icmp``: ping a host (ICMP echo requests) and measure round-trip time and loss.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    target           a host name or an IP address (IPv4, or IPv6 without brackets), no port;
                     ``targets:`` is the list form
    count            echo requests sent per probe (default 3, from 1 to 100)
    packet_interval  the pause between two requests (default 200ms, at least 10ms). Each reply
                     is awaited for at most the share of ``timeout`` left to it, so a host that
                     never answers reports its loss before ``timeout`` passes; ``count`` pauses
                     must fit in half of ``timeout``
    payload_size     bytes of payload in each request (default 56, as ping(8) sends)

ICMP needs either unprivileged ping sockets (the agent's group within the sysctl
``net.ipv4.ping_group_range``) or the CAP_NET_RAW capability for raw sockets; which one works is
detected when the config loads (ping sockets first), and a config with icmp checks is refused
when neither does. The agent never needs to run as root for this.

Values:

    rtt      s  the average round-trip time of the replies (absent when none came)
    rtt_max  s  the slowest reply's round-trip time (absent when none came)
    loss     %  the share of requests without a reply, from 0 to 100

Failures: ``connection`` when no reply came at all (``no reply from HOST (3 of 3 lost)``) or
the requests could not be sent; ``dns`` when the name does not resolve; ``timeout`` (set by the
runner). Some loss with at least one reply is a success: alert on it with ``loss > 20%``.

Example::

    - name: gateway
      type: icmp
      target: 192.0.2.1
      alerts:
        - {when: down, for: 1m, severity: critical}
        - {when: loss > 20%, for: 5m, severity: minor}
    - name: branch-offices
      type: icmp
      targets: [vpn-paris.example.com, vpn-tokyo.example.com]
      count: 5
      alerts:
        - {when: rtt > 300ms, for: 10m, severity: minor}
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import re
import socket
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.core.units import Seconds, format_duration
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec

if TYPE_CHECKING:
    import icmplib

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
NO_ICMP = (
    'ICMP needs unprivileged ping sockets (sysctl net.ipv4.ping_group_range="0 2147483647") '
    "or CAP_NET_RAW (AmbientCapabilities=CAP_NET_RAW in the systemd unit)"
)


def icmp_privileged() -> bool:
    """Whether ICMP needs raw sockets (True) or works with unprivileged ping sockets (False).

    Raises ValueError naming both fixes when this process can open neither."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        return False
    except OSError:
        pass  # EACCES outside ping_group_range; try a raw socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return True
    except PermissionError:
        raise ValueError(NO_ICMP) from None
    except OSError as exc:
        raise ValueError(f"cannot open an ICMP socket: {exc.strerror or exc}. {NO_ICMP}") from None


def check_target(text: str) -> str:
    """A host name or IP address; raises ValueError otherwise."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if len(text) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"invalid target {text!r}: expected a host name or an IP address, without a port")
    return text


class IcmpConfig(CheckConfig):
    target: str | None = None
    count: int = Field(default=3, ge=1, le=100)
    packet_interval: Seconds = Field(default=0.2, ge=0.01)
    payload_size: int = Field(default=56, ge=0, le=65507)

    @field_validator("target")
    @classmethod
    def _check_target(cls, v: str | None) -> str | None:
        return check_target(v) if v is not None else None

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, v: list[str] | None) -> list[str] | None:
        for t in v or ():
            check_target(t)
        return v

    @model_validator(mode="after")
    def _check_timing_and_privileges(self) -> IcmpConfig:
        pauses = (self.count - 1) * self.packet_interval
        if pauses > self.timeout / 2:
            raise ValueError(
                f"count ({self.count}) requests {format_duration(self.packet_interval)} apart take "
                f"{format_duration(pauses)}: more than half of timeout ({format_duration(self.timeout)}), "
                "leaving too little time for replies"
            )
        icmp_privileged()
        return self


def observe(host: icmplib.Host, target: str) -> Observation:
    """Turn icmplib's statistics for ``target`` into an observation."""
    sent, rtts = host.packets_sent, host.rtts
    where = target if host.address == target else f"{target} at {host.address}"
    if sent == 0:
        return Observation(ok=False, error_kind="connection", error=f"cannot send echo requests to {where}")
    values = {"loss": 100.0 * (sent - len(rtts)) / sent}
    if not rtts:
        return Observation(
            ok=False, values=values, error_kind="connection", error=f"no reply from {where} ({sent} of {sent} lost)"
        )
    values["rtt"] = sum(rtts) / len(rtts) / 1000
    values["rtt_max"] = max(rtts) / 1000
    return Observation(ok=True, values=values)


class IcmpCheck(BaseCheck):
    TYPE: ClassVar[str] = "icmp"
    TARGET_KEY: ClassVar[str | None] = "target"
    Config: ClassVar[type[CheckConfig]] = IcmpConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("rtt", "s", "the average round-trip time of the replies"),
        ValueSpec("rtt_max", "s", "the slowest reply's round-trip time"),
        ValueSpec("loss", "%", "the share of requests without a reply"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, IcmpConfig):
            raise TypeError(f"expected IcmpConfig, got {type(config).__name__}")
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        importlib.import_module("icmplib")  # when the check is built, not when a config loads
        try:
            self._privileged = icmp_privileged()
        except ValueError:
            self._privileged = True  # refused at load; if it changed since, probes report why

    def _reply_wait(self) -> float:
        """How long each reply is awaited: the requests and pauses fit within 90% of timeout."""
        cfg = self._cfg
        budget = cfg.timeout * 0.9 - (cfg.count - 1) * cfg.packet_interval
        return max(0.05, budget / cfg.count)

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        import icmplib  # loaded by __init__ already

        try:
            address = await resolve(target)
        except socket.gaierror as exc:
            return Observation(ok=False, error_kind="dns", error=f"cannot resolve {target!r}: {exc.strerror or exc}")
        try:
            host = await icmplib.async_ping(
                address,
                count=self._cfg.count,
                interval=self._cfg.packet_interval,
                timeout=self._reply_wait(),
                privileged=self._privileged,
                payload_size=self._cfg.payload_size,
            )
        except icmplib.SocketPermissionError:
            return Observation(ok=False, error_kind="connection", error=NO_ICMP)
        except icmplib.ICMPLibError as exc:
            return Observation(ok=False, error_kind="connection", error=f"ping {target} failed: {exc}")
        return observe(host, target)


async def resolve(target: str) -> str:
    """The address to ping: ``target`` itself when it is an IP address. Raises socket.gaierror."""
    try:
        ipaddress.ip_address(target)
        return target
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target, None, type=socket.SOCK_DGRAM, flags=socket.AI_ADDRCONFIG)
    except UnicodeError:  # a name the IDNA codec refuses
        raise socket.gaierror(socket.EAI_NONAME, "invalid host name") from None
    return str(infos[0][4][0])
