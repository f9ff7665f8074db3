"""The agent's read-only HTTP endpoint on ``agent.listen`` (loopback by default).

=================== ==================================================================
GET /healthz        liveness: 200 ``ok``, or 503 with the reason (the scheduler stopped progressing)
GET /status         the status document (JSON): checks, members, last results, open incidents
GET /metrics        Prometheus text when ``telemetry.prometheus`` is on, else 404
GET /artifacts/NAME a screenshot of a failing run (``image/png``) from ``STATE_DIR/artifacts``
GET /               the status page (HTML, no JavaScript, refreshes itself)
=================== ==================================================================

Every endpoint is read-only: any method but GET and HEAD is answered 405 with ``Allow``, and no
request body is read. Anything that changes state (ack, note) goes through the local state
directory, which needs local authority, never through this port. Every response carries
``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer``
and a Content-Security-Policy that allows nothing but the page's own style block. A failure
inside the agent is logged and answered with a short 500, never a traceback.

An artifact is served only under a strict name (:func:`agent.web.snapshot.artifact_name`: no
``/``, ``..``, leading dot or percent sign, ``.png`` only) and if it is a regular file right in the
artifacts directory (real path checked, never a symlink), else 404; with ``default-src 'none'``
and an ``ETag``, read on a worker thread a chunk at a time.

The port must never cost the agent its probes. It holds at most :data:`MAX_CONNECTIONS`
connections (fewer under a low file-descriptor limit, see :func:`agent.core.fd_limit.listener_cap`);
one more is reset as soon as it is accepted. A client has :data:`HEADER_TIMEOUT` seconds from
connecting to send a complete request head, :data:`KEEPALIVE_TIMEOUT` idle seconds between
requests, and :data:`REQUEST_TIMEOUT` seconds per request, reading the answer included; past
that the connection is dropped. Refusals and failed accepts (``EMFILE``) are logged once per
episode, never once per attempt, and never with a traceback.

:func:`fetch_status` is the client side, for ``firstwatch status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, Protocol, TypedDict, cast

from aiohttp import web

from agent.config.settings import parse_listen
from agent.core.fd_limit import listener_cap
from agent.web import page as status_page
from agent.web.client import instance_id
from agent.web.snapshot import Snapshot, artifact_name

log = logging.getLogger("firstwatch.http")

ALLOW = "GET, HEAD"
MAX_CONNECTIONS = 64
BACKLOG = 64
ACCEPT_RETRY = 0.5  # seconds between accepts while the process is out of descriptors
HEADER_TIMEOUT = 5.0  # from connecting to a complete request head
KEEPALIVE_TIMEOUT = 5.0  # idle between two requests on one connection
REQUEST_TIMEOUT = 15.0  # from one request to the next (or the close): answer read, next head sent

ARTIFACTS = "/artifacts/"
ARTIFACT_CHUNK = 256 * 1024  # bytes read from disk at a time
ARTIFACT_HEADERS = {  # a screenshot: an image, nothing in it may run or load anything
    "Content-Type": "image/png",
    "Content-Security-Policy": "default-src 'none'",
    "Content-Disposition": "inline",
    "Cache-Control": "private, no-cache",  # kept by the browser, checked again with its ETag
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": status_page.CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Identity(TypedDict):
    """What the endpoint adds to ``agent`` in /status: which state directory the agent keeps."""

    instance: str


class StatusSource(Protocol):
    """What the daemon gives the endpoint. All three are called on the event loop: keep them quick."""

    async def snapshot(self) -> Snapshot:
        """The status document (see :mod:`agent.web.snapshot` for its fields)."""
        ...

    def healthy(self) -> tuple[bool, str]:
        """(alive, reason): False when the scheduler has stopped making progress."""
        ...

    def metrics(self) -> tuple[bytes, str] | None:
        """(Prometheus exposition, content type), or None when metrics are off."""
        ...


def _finite(value: object) -> object:
    """``value`` with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def status_json(snapshot: Snapshot) -> str:
    try:
        return json.dumps(snapshot, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(snapshot), allow_nan=False, default=str)


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", charset="utf-8", headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Guard:
    """Counts the listener's connections and says, once per episode, when it turns clients away."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0  # in the current episode of refusals or failed accepts
        self.accept_error: str | None = None

    def admit(self) -> bool:
        if self.open >= self.limit:
            if not self.refused and self.accept_error is None:
                log.warning("status endpoint: %d connections open, the limit; refusing more for now", self.open)
            self.refused += 1
            return False
        if self.refused or self.accept_error is not None:
            log.info("status endpoint: accepting connections again (%d turned away meanwhile)", self.refused)
            self.refused, self.accept_error = 0, None
        self.open += 1
        return True

    def accept_failed(self, exc: BaseException) -> None:
        if self.accept_error is None:
            self.accept_error = str(exc)
            log.warning("status endpoint: cannot accept connections: %s (retrying quietly)", exc)
        self.refused += 1


class _Connection(web.RequestHandler):  # type: ignore[misc,type-arg,unused-ignore]
    """aiohttp's handler for one connection, counted, with a deadline for the client's next step."""

    def __init__(self, guard: _Guard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), **kwargs)
        self._guard = guard
        self._conn: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn = cast(asyncio.Transport, transport)  # uvloop's TCP transport is not a registered asyncio.Transport
        self._deadline = asyncio.get_running_loop().call_later(HEADER_TIMEOUT, self._expire)
        super().connection_made(transport)

    def request_started(self) -> None:
        """A request head arrived: the client has REQUEST_TIMEOUT to read the answer and go on."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        conn = self._conn
        self.force_close()
        if conn is not None:
            conn.abort()  # a client that does not read would keep a graceful close waiting

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._conn is not None:
            self._conn = None
            self._guard.open -= 1
        super().connection_lost(exc)


class HttpServer:
    """The running endpoint: ``port`` is the bound port (useful with port 0)."""

    def __init__(self, runner: web.AppRunner, listeners: list[socket.socket], tasks: list[asyncio.Task[None]]) -> None:
        self._runner = runner
        self._listeners = listeners
        self._tasks = tasks
        name = listeners[0].getsockname()
        self.host = str(name[0])
        self.port = int(name[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._listeners:
            sock.close()
        await self._runner.cleanup()  # closes the open connections


def _open_artifact(directory: str, name: str) -> tuple[int, os.stat_result] | None:
    """An open descriptor on artifact ``name`` and its status, if it is a regular file right in
    ``directory`` (real paths compared; a symlink is refused, not followed); else None."""
    base = os.path.realpath(directory)
    path = os.path.join(base, name)
    if os.path.dirname(os.path.realpath(path)) != base:
        return None
    try:  # O_NONBLOCK: a FIFO put there must not hang the thread
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return fd, st
    except OSError:
        pass
    os.close(fd)
    return None


async def _send_artifact(request: web.Request, fd: int, st: os.stat_result) -> web.StreamResponse:
    """The file behind ``fd`` as the answer (only its headers for HEAD, 304 for a matching ETag)."""
    etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    headers = {**ARTIFACT_HEADERS, "ETag": etag, "Last-Modified": formatdate(st.st_mtime, usegmt=True)}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = st.st_size
    await response.prepare(request)
    left = st.st_size if request.method == "GET" else 0
    while left > 0:
        chunk = await asyncio.to_thread(os.read, fd, min(ARTIFACT_CHUNK, left))
        if not chunk:  # cut short meanwhile (pruned, rewritten): end the connection, not the promise
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write(chunk)
        left -= len(chunk)
    await response.write_eof()
    return response


def make_app(
    source: StatusSource, identity: Identity | None = None, artifacts_dir: str | None = None
) -> web.Application:
    async def healthz(_: web.Request) -> web.StreamResponse:
        ok, reason = source.healthy()
        return _text(200, "ok") if ok else _text(503, reason or "unhealthy")

    async def status(_: web.Request) -> web.StreamResponse:
        doc = await source.snapshot()
        if identity and isinstance(doc.get("agent"), dict):
            doc = {**doc, "agent": {**doc["agent"], **identity}}
        body = status_json(doc)
        return web.Response(text=body + "\n", content_type="application/json", charset="utf-8")

    async def metrics(_: web.Request) -> web.StreamResponse:
        got = source.metrics()
        if got is None:
            return _text(404, "metrics are off: set telemetry.prometheus: true to serve /metrics")
        body, content_type = got
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def page(_: web.Request) -> web.StreamResponse:
        html = status_page.render(await source.snapshot())
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def artifact(request: web.Request) -> web.StreamResponse:
        name = artifact_name(request.rel_url.raw_path.removeprefix(ARTIFACTS))  # the raw path: nothing decoded
        found = await asyncio.to_thread(_open_artifact, artifacts_dir, name) if artifacts_dir and name else None
        if found is None:
            return _text(404, "no such artifact")
        fd, st = found
        try:
            return await _send_artifact(request, fd, st)
        finally:
            os.close(fd)

    routes: dict[str, Handler] = {"/healthz": healthz, "/status": status, "/metrics": metrics, "/": page}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if isinstance(request.protocol, _Connection):
            request.protocol.request_started()
        if request.method not in ("GET", "HEAD"):
            return _text(405, "read-only endpoint: only GET and HEAD are allowed", Allow=ALLOW)
        handler = artifact if request.path.startswith(ARTIFACTS) else routes.get(request.path)
        if handler is None:
            return _text(404, "not found: try /, /status, /healthz or /metrics")
        try:
            return await handler(request)
        except Exception:
            log.exception("GET %s failed", request.path)
            return _text(500, "internal error in the agent (details are in its log)")

    async def secure(request: web.Request, response: web.StreamResponse) -> None:
        for header, value in SECURITY_HEADERS.items():  # an artifact keeps its own policy and caching
            response.headers.setdefault(header, value)
        response.headers["Server"] = "firstwatch"

    # No request needs a body: a tiny client_max_size refuses uploads before they are buffered.
    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.on_response_prepare.append(secure)
    return app


async def start_http(
    listen: str,
    source: StatusSource,
    *,
    state_dir: str | None = None,
    max_connections: int | None = None,
    artifacts_dir: str | None = None,
) -> HttpServer:
    """Serve ``source`` on ``listen`` ("HOST:PORT"; port 0 picks a free one, see ``.port``).

    ``state_dir`` (the agent's) adds ``agent.instance`` to /status, so that ``firstwatch status``
    can tell this agent from another one on the same port. ``max_connections`` defaults to
    :func:`agent.core.fd_limit.listener_cap` of :data:`MAX_CONNECTIONS`. ``artifacts_dir`` is the
    directory ``/artifacts/NAME`` serves (read-only), None for none."""
    host, port = parse_listen(listen)
    options: dict[str, Any] = {"access_log": None, "keepalive_timeout": KEEPALIVE_TIMEOUT}
    identity: Identity | None = {"instance": instance_id(state_dir)} if state_dir else None
    runner = web.AppRunner(make_app(source, identity, artifacts_dir), handle_signals=False, **options)
    await runner.setup()
    guard = _Guard(max_connections or listener_cap(MAX_CONNECTIONS))
    web_server = runner.server
    assert web_server is not None
    try:
        listeners = await _listen(host, port)
    except BaseException:
        await runner.cleanup()
        raise

    def connection() -> _Connection:
        return _Connection(guard, web_server, **options)

    tasks = [asyncio.create_task(_accept(sock, connection, guard), name="http-accept") for sock in listeners]
    server = HttpServer(runner, listeners, tasks)
    log.info("status endpoint on %s", listen if port else f"{host}:{server.port}")
    return server


async def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (as ``loop.create_server`` binds them)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


async def _accept(listener: socket.socket, connection: Callable[[], _Connection], guard: _Guard) -> None:
    """Accept one connection at a time: serve it while there is room, else reset it at once
    (its descriptor is freed before the next accept). A failed accept (EMFILE and the like) is
    reported once per episode and retried after a short pause; the loop never ends on its own."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as exc:
            guard.accept_failed(exc)
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        if not guard.admit():
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, no TIME_WAIT
            conn.close()
            continue
        try:
            await loop.connect_accepted_socket(connection, conn)
        except OSError as exc:  # the client left already
            guard.open -= 1
            with contextlib.suppress(OSError):  # uvloop may own (and have closed) the descriptor by now
                conn.close()
            log.debug("status endpoint: connection failed at setup: %s", exc)
