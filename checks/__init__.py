"""The registry of check types: ``CHECKS[type]`` is the class implementing ``type:``.

Config validation, ``firstwatch list-checks``, the docs test and the scheduler all read this one
mapping; adding a probe type means adding a module here and one line below.
"""

from __future__ import annotations

from checks.base import Check
from checks.browser import BrowserCheck
from checks.command import CommandCheck
from checks.dns import DnsCheck
from checks.host import HostCheck
from checks.http import HttpCheck
from checks.icmp import IcmpCheck
from checks.journey import JourneyCheck
from checks.tcp import TcpCheck
from checks.tls import TlsCheck

_ALL: tuple[type[Check], ...] = (
    HttpCheck,
    TcpCheck,
    TlsCheck,
    DnsCheck,
    IcmpCheck,
    HostCheck,
    CommandCheck,
    JourneyCheck,
    BrowserCheck,
)
CHECKS: dict[str, type[Check]] = {cls.TYPE: cls for cls in _ALL}

__all__ = ["CHECKS"]
