"""A real OTLP metrics receiver for tests: gRPC (grpcio, ``MetricsService/Export``) and HTTP
(aiohttp, ``POST /v1/metrics`` with ``application/x-protobuf``), both on 127.0.0.1, both decoding
``ExportMetricsServiceRequest`` with opentelemetry-proto into flat :class:`Point` rows.

Also two broken collectors: :class:`BlackHole` (accepts TCP connections and never answers) and
:func:`closed_port` (nothing listens). Everything runs on its own threads, so tests stay plain
synchronous code and the agent's exporter thread talks to a peer that is never blocked by them.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = TypeVar("T")


@dataclass
class Point:
    """One data point as received, with its metric's and resource's context."""

    name: str
    unit: str
    description: str
    kind: str  # gauge | sum | histogram
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    transport: str  # grpc | http
    request: int  # which export request brought it (1, 2, ...)
    value: float | None = None
    monotonic: bool | None = None
    count: int | None = None
    sum: float | None = None
    bounds: list[float] = field(default_factory=list)
    bucket_counts: list[int] = field(default_factory=list)


def _any(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_any(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = _any(kv.value)
    return out


def decode(request: metrics_service_pb2.ExportMetricsServiceRequest, transport: str, number: int = 0) -> list[Point]:
    """Flatten a decoded export request into points."""
    points: list[Point] = []
    for rm in request.resource_metrics:
        resource = _attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                base = {
                    "name": m.name,
                    "unit": m.unit,
                    "description": m.description,
                    "resource": resource,
                    "scope": sm.scope.name,
                    "transport": transport,
                    "request": number,
                }
                if kind in ("gauge", "sum"):
                    data = getattr(m, kind)
                    for dp in data.data_points:
                        value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
                        points.append(
                            Point(
                                kind=kind,
                                attributes=_attrs(dp.attributes),
                                value=value,
                                monotonic=data.is_monotonic if kind == "sum" else None,
                                **base,
                            )
                        )
                elif kind == "histogram":
                    for hp in m.histogram.data_points:
                        points.append(
                            Point(
                                kind=kind,
                                attributes=_attrs(hp.attributes),
                                count=hp.count,
                                sum=hp.sum,
                                bounds=list(hp.explicit_bounds),
                                bucket_counts=list(hp.bucket_counts),
                                **base,
                            )
                        )
    return points


class OtlpReceiver:
    """Both transports at once; ``grpc_endpoint`` / ``http_endpoint`` are what an agent is given."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._points: list[Point] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._grpc: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.grpc_endpoint = self.http_endpoint = ""

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        receiver = self

        class Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
                receiver._add(request, "grpc", headers)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Servicer(), self._grpc)  # type: ignore[no-untyped-call]
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_endpoint = f"http://127.0.0.1:{port}"

        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_http, args=(ready,), name="otlp-http", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the OTLP HTTP receiver did not start")
        return self

    def _serve_http(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/metrics", self._http_export)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.http_endpoint = f"http://127.0.0.1:{port}"
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _http_export(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"unsupported content type {request.content_type}")
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        message = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        self._add(message, "http", {k.lower(): v for k, v in request.headers.items()})
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what arrived ----------------------------------------------------------------------------

    def _add(
        self, message: metrics_service_pb2.ExportMetricsServiceRequest, transport: str, headers: dict[str, str]
    ) -> None:
        with self._cond:
            self.requests += 1
            self._points.extend(decode(message, transport, self.requests))
            self.headers.append(headers)
            self._cond.notify_all()

    def points(self, name: str | None = None) -> list[Point]:
        with self._cond:
            return [p for p in self._points if name is None or p.name == name]

    def latest(self, name: str, attrs: dict[str, Any] | None = None, value: float | None = None) -> Point | None:
        """The last point of ``name`` whose attributes include ``attrs`` (and whose value is ``value``)."""
        want = attrs or {}
        for p in reversed(self.points(name)):
            if all(p.attributes.get(k) == v for k, v in want.items()):
                return p if value is None or p.value == value else None
        return None

    def wait_for(self, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Wait until ``probe()`` returns something other than None (or False) and return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = probe()
                if got is not None and got is not False:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({p.name for p in self._points})
                    raise AssertionError(f"not received within {timeout}s; {self.requests} requests, metrics {names}")
                self._cond.wait(min(left, 0.1))


class BlackHole:
    """A collector that accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port() -> str:
    """An http:// endpoint on a loopback port where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
