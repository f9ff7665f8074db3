"""The ``telemetry:`` section of the config: OTLP push, the Prometheus endpoint, CloudWatch EMF.

Models only (no exporter is imported here), so loading a config never pays for OpenTelemetry.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.core.units import Seconds
from agent.telemetry.cloudwatch import CloudWatchConfig

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP header name (RFC 9110 token)


class OtlpConfig(BaseModel):
    """``telemetry.otlp``: push metrics to an OpenTelemetry collector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str  # http(s)://host[:port]; for http/protobuf /v1/metrics is appended unless present
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    interval: Seconds = Field(default=15.0, gt=0)
    timeout: Seconds = Field(default=5.0, gt=0)  # per export, retries included
    headers: dict[str, str] = Field(default={}, repr=False)  # secrets: never logged
    insecure: bool | None = None  # gRPC: plaintext; None: from the scheme (http:// is plaintext)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be a URL such as http://127.0.0.1:4317, got {v!r}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError:
            raise ValueError(f"endpoint {v!r} has an invalid port") from None
        if parts.query or parts.fragment:
            raise ValueError(f"endpoint {v!r} must not have a query or fragment")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {name!r} has a line break in its value")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> OtlpConfig:
        parts = urlsplit(self.endpoint)
        if self.protocol == "grpc" and parts.path not in ("", "/"):
            raise ValueError(f"a grpc endpoint is host and port only, without a path: {self.endpoint!r}")
        if self.insecure and parts.scheme == "https":
            raise ValueError("insecure: true contradicts an https:// endpoint; use http:// for plaintext")
        if self.insecure is False and parts.scheme == "http" and self.protocol == "http/protobuf":
            raise ValueError("insecure: false needs an https:// endpoint with http/protobuf")
        return self


class TelemetryConfig(BaseModel):
    """``telemetry``: where metrics go. Absent or empty: nowhere (unless OTEL_* variables say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    otlp: OtlpConfig | None = Field(default=None, description="push metrics to an OpenTelemetry collector")
    prometheus: bool = Field(default=False, description="serve /metrics on agent.listen")
    cloudwatch: CloudWatchConfig | None = Field(
        default=None, description="Embedded Metric Format to the CloudWatch agent or a file"
    )
