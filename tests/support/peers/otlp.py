"""Real OTLP receivers for tests, and broken collectors.

:class:`OtlpReceiver` (metrics) and :class:`OtlpLogsReceiver` (logs) listen on gRPC (grpcio,
``…Service/Export``) and HTTP (aiohttp, ``POST /v1/metrics`` or ``/v1/logs`` with
``application/x-protobuf``), both on 127.0.0.1, and decode the export request with
opentelemetry-proto into flat rows (:class:`Point`, :class:`Record`). Both transports, the thread
they run on and the waiting are one base, :class:`_Receiver`; each signal adds its decoding.

:meth:`OtlpLogsReceiver.fail` makes it refuse exports the way a collector does (an HTTP status with
a ``google.rpc.Status`` body, a gRPC status code), :meth:`OtlpLogsReceiver.reject` answers with a
partial success that rejects every record.

Two broken collectors: :class:`BlackHole` (accepts TCP connections and never answers) and
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
from typing import Any, ClassVar, Generic, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aiohttp import web
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = TypeVar("T")
Row = TypeVar("Row")
_R = TypeVar("_R", bound="_Receiver[Any]")

# HTTP status -> the gRPC code a collector answers for the same trouble
_GRPC_CODE = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED", 429: "RESOURCE_EXHAUSTED"}


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


class _Receiver(Generic[Row]):
    """Both transports at once; ``grpc_endpoint`` / ``http_endpoint`` are what an agent is given.

    A subclass names its HTTP path and request type, registers its gRPC servicer and decodes a
    request into rows; :meth:`_reply` may refuse (``None``: the usual success reply)."""

    PATH: ClassVar[str]
    REQUEST: ClassVar[Any]

    def __init__(self, grpc_port: int = 0) -> None:
        self._grpc_port = grpc_port  # 0: any free port
        self._cond = threading.Condition()
        self._rows: list[Row] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._grpc: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.grpc_endpoint = self.http_endpoint = ""

    # --- what a signal says ----------------------------------------------------------------------

    def _register(self, server: grpc.Server) -> None:
        raise NotImplementedError

    def _decode(self, message: Any, transport: str, number: int) -> list[Row]:
        raise NotImplementedError

    def _http_reply(self, count: int) -> web.Response:
        raise NotImplementedError

    def _describe(self) -> str:
        return f"{self.requests} requests"

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self: _R) -> _R:
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._register(self._grpc)
        port = self._grpc.add_insecure_port(f"127.0.0.1:{self._grpc_port}")
        self._grpc.start()
        self.grpc_endpoint = f"http://127.0.0.1:{port}"

        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        name = f"otlp-http{self.PATH}"
        self._thread = threading.Thread(target=self._serve_http, args=(ready,), name=name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the OTLP HTTP receiver of {self.PATH} did not start")
        return self

    def _serve_http(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post(self.PATH, self._http_export)
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
        message = self.REQUEST.FromString(body)
        count = self._add(message, "http", {k.lower(): v for k, v in request.headers.items()})
        return self._http_reply(count)

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self: _R) -> _R:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what arrived ----------------------------------------------------------------------------

    def _add(self, message: Any, transport: str, headers: dict[str, str]) -> int:
        with self._cond:
            self.requests += 1
            got = self._decode(message, transport, self.requests)
            self._rows.extend(got)
            self.headers.append(headers)
            self._cond.notify_all()
            return len(got)

    def _grpc_headers(self, context: Any) -> dict[str, str]:
        return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}

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
                    raise AssertionError(f"not received within {timeout}s; {self._describe()}")
                self._cond.wait(min(left, 0.1))


# --- metrics ---------------------------------------------------------------------------------------


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


def decode_metrics(
    request: metrics_service_pb2.ExportMetricsServiceRequest, transport: str, number: int = 0
) -> list[Point]:
    """Flatten a decoded metrics export request into points."""
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


class OtlpReceiver(_Receiver[Point]):
    """An OTLP metrics receiver: every data point as a :class:`Point`."""

    PATH = "/v1/metrics"
    REQUEST = metrics_service_pb2.ExportMetricsServiceRequest

    def _register(self, server: grpc.Server) -> None:
        receiver = self

        class Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                receiver._add(request, "grpc", receiver._grpc_headers(context))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]

    def _decode(self, message: Any, transport: str, number: int) -> list[Point]:
        return decode_metrics(message, transport, number)

    def _http_reply(self, count: int) -> web.Response:
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def _describe(self) -> str:
        names = sorted({p.name for p in self._rows})
        return f"{self.requests} requests, metrics {names}"

    def points(self, name: str | None = None) -> list[Point]:
        with self._cond:
            return [p for p in self._rows if name is None or p.name == name]

    def latest(self, name: str, attrs: dict[str, Any] | None = None, value: float | None = None) -> Point | None:
        """The last point of ``name`` whose attributes include ``attrs`` (and whose value is ``value``)."""
        want = attrs or {}
        for p in reversed(self.points(name)):
            if all(p.attributes.get(k) == v for k, v in want.items()):
                return p if value is None or p.value == value else None
        return None


# --- logs ------------------------------------------------------------------------------------------


@dataclass
class Record:
    """One log record as received, with its scope's and resource's context."""

    body: Any
    severity_number: int
    severity_text: str
    time_unix_nano: int
    observed_time_unix_nano: int
    event_name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    scope_version: str
    transport: str  # grpc | http
    request: int  # which export request brought it (1, 2, ...)


def decode_logs(request: logs_service_pb2.ExportLogsServiceRequest, transport: str, number: int = 0) -> list[Record]:
    """Flatten a decoded logs export request into records."""
    records: list[Record] = []
    for rl in request.resource_logs:
        resource = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                records.append(
                    Record(
                        body=_any(lr.body),
                        severity_number=int(lr.severity_number),
                        severity_text=lr.severity_text,
                        time_unix_nano=lr.time_unix_nano,
                        observed_time_unix_nano=lr.observed_time_unix_nano,
                        event_name=lr.event_name,
                        attributes=_attrs(lr.attributes),
                        resource=resource,
                        scope=sl.scope.name,
                        scope_version=sl.scope.version,
                        transport=transport,
                        request=number,
                    )
                )
    return records


class OtlpLogsReceiver(_Receiver[Record]):
    """An OTLP logs receiver: every log record as a :class:`Record`; it can refuse or reject."""

    PATH = "/v1/logs"
    REQUEST = logs_service_pb2.ExportLogsServiceRequest

    def __init__(self, grpc_port: int = 0) -> None:
        super().__init__(grpc_port)
        self._failure: tuple[int, str] | None = None  # (HTTP status, message)
        self._rejection: str | None = None

    # --- behaviour -------------------------------------------------------------------------------

    def fail(self, status: int, message: str = "") -> None:
        """Refuse every export: HTTP ``status``, or over gRPC the code a collector uses for it
        (UNAVAILABLE for a 5xx, INVALID_ARGUMENT for a 400). The request is still recorded in :attr:`headers`."""
        self._failure = (status, message)

    def reject(self, message: str) -> None:
        """Answer every export with a partial success that rejects all of its records."""
        self._rejection = message

    def _response(self, count: int) -> logs_service_pb2.ExportLogsServiceResponse:
        reply = logs_service_pb2.ExportLogsServiceResponse()
        if self._rejection is not None:
            reply.partial_success.rejected_log_records = count
            reply.partial_success.error_message = self._rejection
        return reply

    def _register(self, server: grpc.Server) -> None:
        receiver = self

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                count = receiver._add(request, "grpc", receiver._grpc_headers(context))
                if receiver._failure is not None:
                    status, message = receiver._failure
                    code = _GRPC_CODE.get(status, "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT")
                    context.abort(getattr(grpc.StatusCode, code), message)
                return receiver._response(count)

        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]

    def _decode(self, message: Any, transport: str, number: int) -> list[Record]:
        return decode_logs(message, transport, number)

    def _http_reply(self, count: int) -> web.Response:
        if self._failure is not None:
            status, text = self._failure
            error = status_pb2.Status(code=3, message=text).SerializeToString()
            return web.Response(status=status, body=error, content_type="application/x-protobuf")
        reply = self._response(count).SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def records(self) -> list[Record]:
        with self._cond:
            return list(self._rows)


# --- broken collectors -----------------------------------------------------------------------------


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
