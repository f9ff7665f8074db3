"""``type: otlp``: each event exported as one OpenTelemetry log record to an OTLP collector.

Options (besides the routing keys every sink has):

    endpoint  ``http(s)://host:port``; gRPC: no path (port 4317 when none is given);
              http/protobuf: ``/v1/logs`` is appended unless the path ends with it
    protocol  ``grpc`` (default) or ``http/protobuf``
    headers   sent with every export (lower-cased over gRPC): secrets, never logged or shown
    timeout   a total deadline per event, connecting included (default 10s)
    insecure  gRPC only: plaintext or TLS; by default from the scheme (http:// is plaintext)

The record (OpenTelemetry logs data model and semantic conventions; absent fields are left out)::

    body               the summary; time: the event's; observed time: when it was sent
    severity_number    critical 21 FATAL, major 17 ERROR, medium 13 WARN, minor 9 INFO
    severity_text      the severity upper-cased: CRITICAL, MAJOR, MEDIUM, MINOR
    event_name         firstwatch.<kind>, also as the ``event.name`` attribute for older backends
    log.record.uid     the event id, the same on every redelivery: backends drop duplicates
    firstwatch.incident, firstwatch.fingerprint, firstwatch.rule, firstwatch.value (double),
    firstwatch.started_at (ISO 8601), check.name, check.target, check.type
    <label>            each event label under its own name (never over the attributes above)

Resource: as for metrics (:func:`agent.telemetry.env.resource_attributes`, with the event's
agent and labels); scope: ``firstwatch``. Encoded with opentelemetry-proto, sent by a non-blocking
grpcio call or aiohttp; not by the SDK's log exporters: they report only success or failure (a
400 looks like a 503), retry in a blocking call (the outbox retries) and use the private ``_logs``.
Dropped (PermanentDeliveryError): a partial success rejecting the record, HTTP 3xx, 4xx but 408/429,
gRPC INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, UNIMPLEMENTED. Retried:
the rest (refused, timeout, 5xx, UNAVAILABLE). Errors name only the collector's host:port.

Example::

    sinks:
      - type: otlp
        endpoint: http://otel-collector:4317
        headers: {Authorization: "Bearer ${OTLP_TOKEN}"}
        min_severity: medium
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.core.events import Event
from agent.core.units import Seconds
from agent.delivery.sinks.base import BaseSink, SinkConfig
from agent.telemetry.config import OtlpConfig

if TYPE_CHECKING:  # protobuf and aiohttp load when a sink is built (grpcio on its first gRPC export)
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from agent.delivery.sinks.otlp_export import OtlpExport

_RESERVED = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding", "te", "host"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _otlp_rules(**fields: Any) -> None:
    """Validate with :class:`OtlpConfig`'s rules (the same endpoint, headers and insecure as metrics)."""
    try:
        OtlpConfig(**fields)
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


class OtlpSinkConfig(SinkConfig):
    model_config = ConfigDict(hide_input_in_errors=True)  # headers are secrets

    endpoint: str
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = Field(default={}, repr=False)
    timeout: Seconds = Field(default=10.0, gt=0)
    insecure: bool | None = None

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str) -> str:
        _otlp_rules(endpoint=v, protocol="http/protobuf")
        if urlsplit(v).username is not None:
            raise ValueError("endpoint must not hold credentials: put them in headers")
        return v

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str]) -> dict[str, str]:
        _otlp_rules(endpoint="http://localhost", headers=v)
        for name, value in v.items():  # never echo a value: it is a secret
            if name.lower() in _RESERVED or name.lower().startswith("grpc-"):
                raise ValueError(f"header {name!r} is set by the exporter itself")
            if not value.isascii() or _CONTROL.search(value.replace("\t", " ")):
                raise ValueError(f"header {name!r}: the value must be printable ASCII")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> OtlpSinkConfig:
        _otlp_rules(endpoint=self.endpoint, protocol=self.protocol, insecure=self.insecure)
        return self


class OtlpSink(BaseSink):
    TYPE = "otlp"
    Config: ClassVar[type[SinkConfig]] = OtlpSinkConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, OtlpSinkConfig)
        self._cfg = config
        # protobuf and aiohttp are imported here, when the sink is built, not when a config loads;
        # and before any event is sent, so importing them never stalls the dispatcher.
        from agent.delivery.sinks.otlp_export import OtlpExport

        self._impl: OtlpExport = OtlpExport(config, name)

    def __repr__(self) -> str:  # the config holds secrets
        return f"<OtlpSink {self.name!r} {self._cfg.protocol} to {self._impl.host}>"

    def request(self, event: Event) -> ExportLogsServiceRequest:
        """The export request carrying ``event`` as one log record."""
        return self._impl.request(event)

    async def send(self, event: Event) -> None:
        await self._impl.send(event)

    async def close(self) -> None:
        await self._impl.close()
