"""A real OTLP logs receiver for tests: gRPC (grpcio, ``LogsService/Export``) and HTTP (aiohttp,
``POST /v1/logs`` with ``application/x-protobuf``), both on 127.0.0.1, both decoding
``ExportLogsServiceRequest`` with opentelemetry-proto into flat :class:`Record` rows.

:meth:`OtlpLogsReceiver.fail` makes it refuse exports the way a collector does (an HTTP status with
a ``google.rpc.Status`` body, a gRPC status code), :meth:`OtlpLogsReceiver.reject` answers with a
partial success that rejects every record. Broken collectors (``BlackHole``, ``closed_port``) are
in :mod:`tests.otlp_receiver`. Everything runs on threads of its own, so the agent's event loop
under test never shares one with its peer.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aiohttp import web
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from tests.otlp_receiver import _any, _attrs

T = TypeVar("T")

# HTTP status -> the gRPC code a collector answers for the same trouble
_GRPC_CODE = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED", 429: "RESOURCE_EXHAUSTED"}


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


def decode(request: logs_service_pb2.ExportLogsServiceRequest, transport: str, number: int = 0) -> list[Record]:
    """Flatten a decoded export request into records."""
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


class OtlpLogsReceiver:
    """Both transports at once; ``grpc_endpoint`` / ``http_endpoint`` are what a sink is given."""

    def __init__(self, grpc_port: int = 0) -> None:
        self._grpc_port = grpc_port  # 0: any free port
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._failure: tuple[int, str] | None = None  # (HTTP status, message)
        self._rejection: str | None = None
        self._grpc: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.grpc_endpoint = self.http_endpoint = ""

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

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> OtlpLogsReceiver:
        receiver = self

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name
                headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
                count = receiver._add(request, "grpc", headers)
                if receiver._failure is not None:
                    status, message = receiver._failure
                    code = _GRPC_CODE.get(status, "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT")
                    context.abort(getattr(grpc.StatusCode, code), message)
                return receiver._response(count)

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), self._grpc)  # type: ignore[no-untyped-call]
        port = self._grpc.add_insecure_port(f"127.0.0.1:{self._grpc_port}")
        self._grpc.start()
        self.grpc_endpoint = f"http://127.0.0.1:{port}"

        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_http, args=(ready,), name="otlp-logs-http", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the OTLP logs HTTP receiver did not start")
        return self

    def _serve_http(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/logs", self._http_export)
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
        message = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        count = self._add(message, "http", {k.lower(): v for k, v in request.headers.items()})
        if self._failure is not None:
            status, text = self._failure
            error = status_pb2.Status(code=3, message=text).SerializeToString()
            return web.Response(status=status, body=error, content_type="application/x-protobuf")
        reply = self._response(count).SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> OtlpLogsReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what arrived ----------------------------------------------------------------------------

    def _add(self, message: logs_service_pb2.ExportLogsServiceRequest, transport: str, headers: dict[str, str]) -> int:
        with self._cond:
            self.requests += 1
            got = decode(message, transport, self.requests)
            self._records.extend(got)
            self.headers.append(headers)
            self._cond.notify_all()
            return len(got)

    def records(self) -> list[Record]:
        with self._cond:
            return list(self._records)

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
                    raise AssertionError(f"not received within {timeout}s; {self.requests} requests")
                self._cond.wait(min(left, 0.1))
