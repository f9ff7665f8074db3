"""Per-phase timing of ``type: http`` requests (``dns``, ``connect``, ``tls``), and the ``ip_version``
pinning that resolves names itself.

The phases count from the start of the request, like curl's ``-w`` times; after redirects they
describe the last hop. ``dns`` and ``connect`` of plain http come from :class:`PhaseConnector`
(the shared session's connector): the end of the DNS lookup, and the end of connection creation.
(Not an ``aiohttp.TraceConfig``: its ten signals a request cost ~30 us of CPU per probe, about 10 %
of a local probe; bench/RESULTS.md section (11).) Over https, ``connect`` is the first step of
the TLS handshake (it starts as soon as the TCP connection is up) and ``tls`` its last, both seen
by the TLS object itself (:class:`RecordingSSLObject`, which also keeps the server
certificates). With ``ip_version``, :func:`pin_family` resolves the name itself, so that is where
``dns`` ends.

A hop to an IP address literal (``http://10.0.0.1/``, ``http://[::1]:8080/``) resolves nothing:
it has no ``dns`` value at all (not 0, and not the wait for a connection), so a dashboard shows a
gap instead of a lookup that never happened, and a ``dns > ...`` rule has no data.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import socket
import ssl
import time
from typing import Any, Literal

import aiohttp
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType

from checks.http import ip_version_of

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


class Phases:
    """What the request of one probe learns as it goes: ``time.perf_counter()`` marks and certificates."""

    dns: float | None
    opened: float | None  # connection creation began (the name resolution is part of it)
    connect: float | None
    tls: float | None

    def __init__(self, host: str | None = None) -> None:
        self.start = time.perf_counter()
        self.certs: list[bytes] = []  # of every TLS handshake (redirects: several)
        self.host = host  # of the current hop, as in the URL (no brackets around IPv6)
        self.new_hop()

    def new_hop(self) -> None:
        self.dns = self.opened = self.connect = self.tls = None

    def values(self, https: bool) -> dict[str, float]:
        literal = ip_version_of(self.host) is not None
        marks = {"dns": None if literal else self.dns if self.dns is not None else self.opened, "connect": self.connect}
        if https:
            marks["tls"] = self.tls
        return {name: mark - self.start for name, mark in marks.items() if mark is not None}


# The phases of the probe running in this context. aiohttp releases (and closes) a connection once the whole
# body has arrived, often before ``request`` returns: the response loses its certificate, so the TLS object
# records it here as the handshake completes.
PHASES: contextvars.ContextVar[Phases | None] = contextvars.ContextVar("PHASES", default=None)


class RecordingSSLObject(ssl.SSLObject):
    """The ``sslobject_class`` of a check's TLS context: marks ``connect`` and ``tls`` of the probe in
    :data:`PHASES` and records the server certificate."""

    _began = False

    def do_handshake(self) -> None:
        phases = PHASES.get()
        if phases is not None and not self._began:
            self._began = True
            phases.connect = time.perf_counter()  # the first step comes as soon as TCP is connected
        super().do_handshake()  # raises SSLWantReadError until the handshake is done
        if phases is not None:
            phases.tls = time.perf_counter()
            if der := self.getpeercert(binary_form=True):
                phases.certs.append(der)


class PhaseConnector(aiohttp.TCPConnector):
    """The shared session's connector: marks the phases of the probe in :data:`PHASES` as the
    connection is made (hop by hop: a redirect opens a new connection, and starts a new hop)."""

    async def connect(self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any) -> Any:
        phases = PHASES.get()
        if phases is not None and phases.opened is not None:  # this probe connected before: a redirect
            phases.new_hop()
            phases.host = req.url.raw_host
        return await super().connect(req, *args, **kwargs)

    async def _create_connection(self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any) -> Any:
        phases = PHASES.get()
        if phases is not None:
            phases.opened = time.perf_counter()
        proto = await super()._create_connection(req, *args, **kwargs)
        if phases is not None and phases.connect is None:  # https: set at TCP connect already
            phases.connect = time.perf_counter()
        return proto

    async def _resolve_host(self, host: str, *args: Any, **kwargs: Any) -> Any:
        found = await super()._resolve_host(host, *args, **kwargs)
        phases = PHASES.get()
        if phases is not None and phases.dns is None:  # pin_family resolved the name itself
            phases.dns = time.perf_counter()
        return found


def pin_family(version: Literal[4, 6]) -> ClientMiddlewareType:
    """A client middleware (so it runs for every hop of a redirect chain) connecting over IPv``version``
    only: it resolves the name in that family and points the request at the address. The Host header
    was set from the name when the request was built; SNI and the certificate check keep the name
    through ``server_hostname``."""

    async def middleware(req: aiohttp.ClientRequest, handler: ClientHandlerType) -> aiohttp.ClientResponse:
        host, phases = req.url.raw_host or "", PHASES.get()
        if phases is not None:
            phases.new_hop()
            phases.host = host
        literal = ip_version_of(host)
        if literal is None:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, req.url.port, family=_FAMILY[version], type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                no_address = socket.gaierror(exc.errno, f"no IPv{version} address ({exc.strerror})")
                raise aiohttp.ClientConnectorDNSError(req.connection_key, no_address) from exc
            if phases is not None:
                phases.dns = time.perf_counter()
            if req.is_ssl() and req.server_hostname is None:
                req.server_hostname = host.rstrip(".")
            req.url = req.url.with_host(str(infos[0][4][0]))
        elif literal != version:  # a redirect to an address of the other family
            reason = OSError(errno.EAFNOSUPPORT, f"an IPv{literal} address, but ip_version is {version}")
            raise aiohttp.ClientConnectorError(req.connection_key, reason)
        return await handler(req)

    return middleware
