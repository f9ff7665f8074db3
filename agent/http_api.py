"""The agent's read-only HTTP endpoint on ``agent.listen`` (loopback by default).

=========== ============================================================================
GET /healthz liveness: 200 ``ok``, or 503 with the reason (the scheduler stopped progressing)
GET /status  the status document (JSON): checks, members, last results, open incidents
GET /metrics Prometheus text when ``telemetry.prometheus`` is on, else 404
GET /        the status page (HTML, no JavaScript, refreshes itself)
=========== ============================================================================

Every endpoint is read-only: any method but GET and HEAD is answered 405 with ``Allow``, and no
request body is read. Anything that changes state (ack, note) goes through the local state
directory, which needs local authority, never through this port. Every response carries
``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer``
and a Content-Security-Policy that allows nothing but the page's own style block. A failure
inside the agent is logged and answered with a short 500, never a traceback.

:func:`fetch_status` is the client side, for ``firstwatch status``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from agent import status_page
from agent.status_client import parse_listen

log = logging.getLogger("firstwatch.http")

ALLOW = "GET, HEAD"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": status_page.CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class StatusSource(Protocol):
    """What the daemon gives the endpoint. All three are called on the event loop: keep them quick."""

    async def snapshot(self) -> dict[str, Any]:
        """The status document (see ``status_page`` for its fields)."""
        ...

    def healthy(self) -> tuple[bool, str]:
        """(alive, reason): False when the scheduler has stopped making progress."""
        ...

    def metrics(self) -> tuple[bytes, str] | None:
        """(Prometheus exposition, content type), or None when metrics are off."""
        ...


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def status_json(snapshot: dict[str, Any]) -> str:
    try:
        return json.dumps(snapshot, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(snapshot), allow_nan=False, default=str)


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", charset="utf-8", headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpServer:
    """The running endpoint: ``port`` is the bound port (useful with port 0)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        await self._runner.cleanup()


def make_app(source: StatusSource) -> web.Application:
    async def healthz(_: web.Request) -> web.StreamResponse:
        ok, reason = source.healthy()
        return _text(200, "ok") if ok else _text(503, reason or "unhealthy")

    async def status(_: web.Request) -> web.StreamResponse:
        body = status_json(await source.snapshot())
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

    routes: dict[str, Handler] = {"/healthz": healthz, "/status": status, "/metrics": metrics, "/": page}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "read-only endpoint: only GET and HEAD are allowed", Allow=ALLOW)
        handler = routes.get(request.path)
        if handler is None:
            return _text(404, "not found: try /, /status, /healthz or /metrics")
        try:
            return await handler(request)
        except Exception:
            log.exception("GET %s failed", request.path)
            return _text(500, "internal error in the agent (details are in its log)")

    async def secure(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        response.headers["Server"] = "firstwatch"

    # No request needs a body: a tiny client_max_size refuses uploads before they are buffered.
    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.on_response_prepare.append(secure)
    return app


async def start_http(listen: str, source: StatusSource) -> HttpServer:
    """Serve ``source`` on ``listen`` ("HOST:PORT"; port 0 picks a free one, see ``.port``)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(make_app(source), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=64)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("status endpoint on %s", listen if port else f"{host}:{bound}")
    return HttpServer(runner, host, int(bound))
