"""The export behind ``type: otlp``: an event encoded as an OTLP logs request (opentelemetry-proto)
and sent to the collector over gRPC (grpcio) or http/protobuf (aiohttp), its answer mapped to
:class:`DeliveryError` (retried) or :class:`PermanentDeliveryError` (dropped).

:mod:`agent.delivery.sinks.otlp` holds the options, their validation and the documentation; it imports this
module when a sink is built, so loading and validating a config never pays for protobuf or aiohttp
(grpcio is imported on the first gRPC export).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent import __version__
from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import Event, iso_time
from agent.core.units import format_duration
from agent.delivery.sinks.otlp import _CONTROL, OtlpSinkConfig
from agent.telemetry.env import resource_attributes

SEVERITY_NUMBER = {"critical": 21, "major": 17, "medium": 13, "minor": 9}  # FATAL, ERROR, WARN, INFO
BODY_CAP = 4096  # bytes of an answer ever read
# the gRPC codes of a request the collector refuses (any other code is worth retrying)
_PERMANENT_GRPC = frozenset({"INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "UNIMPLEMENTED"})
_SCHEMES = frozenset({"basic", "bearer", "digest", "token"})  # auth scheme names are no secret


class OtlpExport:
    """One otlp sink's connection to its collector: the endpoint resolved from its config, the
    secrets to mask, and the gRPC channel or HTTP session, made on first use."""

    def __init__(self, config: OtlpSinkConfig, name: str) -> None:
        self._cfg = config
        self.name = name  # the sink's, in every error message
        parts = urlsplit(config.endpoint)
        self._grpc = config.protocol == "grpc"
        default_port = 4317 if self._grpc else 443 if parts.scheme == "https" else 80
        self.host = parts.netloc if parts.port is not None else f"{parts.netloc}:{default_port}"  # host:port
        path = parts.path.rstrip("/")
        self._url = parts._replace(path=path if path.endswith("/v1/logs") else path + "/v1/logs").geturl()
        words = {w for v in config.headers.values() for w in v.split() if w.lower() not in _SCHEMES}
        self._secrets = sorted({s for s in {*config.headers.values(), *words} if len(s) >= 4}, key=len, reverse=True)
        self._channel: Any = None  # grpc.Channel, made on first use (importing grpcio takes a while)
        self._export: Any = None
        self._session: aiohttp.ClientSession | None = None

    def request(self, event: Event) -> ExportLogsServiceRequest:
        """The export request carrying ``event`` as one log record."""
        fields: dict[str, str | float | None] = {
            "event.name": f"firstwatch.{event.kind}",
            "log.record.uid": event.id,
            "firstwatch.incident": event.incident,
            "firstwatch.fingerprint": event.fingerprint,
            "check.name": event.check,
            "check.target": event.target,
            "check.type": event.type,
            "firstwatch.rule": event.rule,
            "firstwatch.value": None if event.value is None else float(event.value),
            "firstwatch.started_at": None if event.started_at is None else iso_time(event.started_at),
        }
        attrs = {**event.labels, **{k: v for k, v in fields.items() if v is not None}}
        record = LogRecord(
            time_unix_nano=round(event.time * 1e6) * 1000,  # microseconds: what a float epoch holds
            observed_time_unix_nano=time.time_ns(),
            severity_number=SeverityNumber.ValueType(SEVERITY_NUMBER.get(event.severity, 0)),
            severity_text=event.severity.upper(),
            body=AnyValue(string_value=event.summary),
            attributes=_key_values(attrs),
            event_name=f"firstwatch.{event.kind}",
        )
        resource = Resource(attributes=_key_values(resource_attributes(event.agent, dict(event.labels), __version__)))
        scope = ScopeLogs(scope=InstrumentationScope(name="firstwatch", version=__version__), log_records=[record])
        return ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=resource, scope_logs=[scope])])

    async def send(self, event: Event) -> None:
        message = self.request(event)
        try:
            async with asyncio.timeout(self._cfg.timeout):
                if self._grpc:
                    answer = await self._send_grpc(message)
                else:
                    answer = await self._send_http(message.SerializeToString())
        except TimeoutError:
            raise self._fail(f"no answer from {self.host} within {format_duration(self._cfg.timeout)}") from None
        if answer.partial_success.rejected_log_records:
            reason = answer.partial_success.error_message or "no reason given"
            raise self._fail(f"{self.host} rejected the event: {self._excerpt(reason)}", permanent=True)

    async def _send_grpc(self, message: ExportLogsServiceRequest) -> ExportLogsServiceResponse:
        import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

        if self._export is None:
            self._export = self._grpc_export(grpc)
        metadata = [(k.lower(), v) for k, v in self._cfg.headers.items()]
        call = self._export.future(message, timeout=self._cfg.timeout, metadata=metadata)
        loop, done = asyncio.get_running_loop(), asyncio.Event()

        def finished(_: Any) -> None:  # on a gRPC thread, or here when the call already ended
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(done.set)

        call.add_done_callback(finished)
        try:
            await done.wait()
        except asyncio.CancelledError:
            call.cancel()
            raise
        try:
            return call.result()  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = str(exc.details() or "")
            if code == "DEADLINE_EXCEEDED":
                raise TimeoutError from None
            if code == "UNAVAILABLE" and (unreachable := _unreachable(details)):
                raise self._fail(unreachable.format(host=self.host)) from None
            reason = f"{self.host} answered {code}" + (f": {self._excerpt(details)}" if details else "")
            raise self._fail(reason, permanent=code in _PERMANENT_GRPC) from None

    def _grpc_export(self, grpc: Any) -> Any:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub

        parts = urlsplit(self._cfg.endpoint)
        tls = not self._cfg.insecure if self._cfg.insecure is not None else parts.scheme == "https"
        # reconnect soon after a collector comes back (gRPC's default backoff grows to 2 minutes)
        options = [("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000)]
        if tls:
            self._channel = grpc.secure_channel(self.host, grpc.ssl_channel_credentials(), options=options)
        else:
            self._channel = grpc.insecure_channel(self.host, options=options)
        return LogsServiceStub(self._channel).Export  # type: ignore[no-untyped-call]

    async def _send_http(self, body: bytes) -> ExportLogsServiceResponse:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout in send() is the deadline
                headers={"User-Agent": f"firstwatch/{__version__}"},
            )
        headers = {**self._cfg.headers, "Content-Type": "application/x-protobuf"}
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False) as resp:
                status, kind = resp.status, resp.content_type
                answer = await resp.content.read(BODY_CAP)
                if not resp.content.at_eof():
                    resp.close()  # never drain the rest
        except aiohttp.ClientConnectorDNSError:
            raise self._fail(f"cannot resolve {self.host}") from None
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError):
            raise self._fail(f"TLS with {self.host} failed") from None
        except aiohttp.ClientConnectorError as exc:
            why = os.strerror(exc.os_error.errno).lower() if exc.os_error.errno else "connection failed"  # not its text
            raise self._fail(f"cannot connect to {self.host}: {why}") from None
        except aiohttp.ClientResponseError:
            raise self._fail(f"{self.host} does not answer in HTTP/1.1 (set protocol: grpc?)") from None
        except (aiohttp.ClientError, OSError) as exc:  # the type only: the text may name the URL
            raise self._fail(f"request to {self.host} failed ({type(exc).__name__})") from None
        protobuf = kind == "application/x-protobuf"
        if 200 <= status < 300:
            reply = ExportLogsServiceResponse()
            with contextlib.suppress(Exception):  # unreadable: the collector took the event all the same
                reply.ParseFromString(answer if protobuf else b"")
            return reply
        text = "" if protobuf else answer.decode("utf-8", errors="replace")
        with contextlib.suppress(Exception):  # an OTLP error answer is a google.rpc.Status
            text = Status.FromString(answer).message if protobuf else text
        reason = f"HTTP {status} from {self.host}" + (f": {self._excerpt(text)}" if text.strip() else "")
        raise self._fail(reason, permanent=status < 500 and status not in (408, 429))  # 3xx: not followed

    def _excerpt(self, text: str) -> str:
        """At most 200 characters of what a collector said, secrets masked, control characters gone."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _CONTROL.sub(" ", text).strip()[:200]

    def _fail(self, reason: str, permanent: bool = False) -> DeliveryError:
        return (PermanentDeliveryError if permanent else DeliveryError)(f"otlp {self.name}: {reason}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._channel is not None:
            self._channel.close()
            self._channel = self._export = None


def _key_values(attrs: Mapping[str, str | float]) -> list[KeyValue]:
    return [
        KeyValue(key=k, value=AnyValue(double_value=v) if isinstance(v, float) else AnyValue(string_value=v))
        for k, v in attrs.items()
    ]


def _unreachable(details: str) -> str | None:
    """Why gRPC could not reach ``{host}`` at all (a template), from its UNAVAILABLE details; None
    when the collector itself answered UNAVAILABLE."""
    if details.startswith("errors resolving") or "DNS resolution failed" in details:
        return "cannot resolve {host}"
    if not details.startswith("failed to connect to all addresses"):
        return None
    found = re.search(r"last error: \w+: \S+: (.*)", details)
    reason = (found.group(1) if found else "").lower()
    if "http1.x" in reason:
        return "cannot connect to {host}: it speaks HTTP/1.1, not gRPC (set protocol: http/protobuf?)"
    if "handshake" in reason:
        return "cannot connect to {host}: the TLS handshake failed"
    return "cannot connect to {host}: " + (reason.rpartition(": ")[2][:100] or "connection failed")
