"""The registry of check types: ``CHECKS[type]`` is the class implementing ``type:``.

Config validation, ``firstwatch list-checks``, the docs test and the scheduler all read this one
mapping; adding a probe type means adding a module here and one line below. A type's module is
imported when its class is first asked for (:class:`agent.core.registry.LazyRegistry`), so a
config of http and tcp checks never imports the others.
"""

from __future__ import annotations

from agent.core.registry import LazyRegistry
from checks.base import Check

CHECKS: LazyRegistry[type[Check]] = LazyRegistry(
    {
        "http": "checks.http:HttpCheck",
        "tcp": "checks.tcp:TcpCheck",
        "tls": "checks.tls:TlsCheck",
        "dns": "checks.dns:DnsCheck",
        "icmp": "checks.icmp:IcmpCheck",
        "host": "checks.host:HostCheck",
        "command": "checks.command:CommandCheck",
        "journey": "checks.journey:JourneyCheck",
        "browser": "checks.browser:BrowserCheck",
    }
)

__all__ = ["CHECKS"]
