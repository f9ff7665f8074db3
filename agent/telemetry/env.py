"""Where OTLP export goes and what the resource says, from ``telemetry`` and the OTEL_* variables.

Pure functions over a mapping (``os.environ`` by default) so every rule is testable without
touching the process environment; see :mod:`agent.telemetry.metrics` for the rules in prose.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from agent.telemetry.config import TelemetryConfig

log = logging.getLogger("firstwatch.telemetry")

INSTANCE_ID = str(uuid.uuid4())  # service.instance.id: one per process, kept across reloads


@dataclass(frozen=True)
class ExportSettings:
    """Where and how to push OTLP metrics, resolved from ``telemetry.otlp`` or the environment."""

    endpoint: str  # gRPC: [http(s)://]host:port; HTTP: the full URL ending in /v1/metrics
    protocol: str  # "grpc" | "http/protobuf"
    interval: float
    timeout: float
    headers: dict[str, str] | None = field(repr=False)  # None: OTEL_EXPORTER_OTLP_[METRICS_]HEADERS
    insecure: bool | None  # gRPC only; None: the scheme or OTEL_EXPORTER_OTLP_[METRICS_]INSECURE


def sdk_disabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def resolve_export(config: TelemetryConfig, env: Mapping[str, str] = os.environ) -> ExportSettings | None:
    """The OTLP export to run: from ``telemetry.otlp``, else from OTEL_* variables, else None."""
    if sdk_disabled(env):
        return None
    otlp = config.otlp
    if otlp is not None:
        endpoint = otlp.endpoint
        if otlp.protocol == "http/protobuf" and not urlsplit(endpoint).path.rstrip("/").endswith("/v1/metrics"):
            endpoint = endpoint.rstrip("/") + "/v1/metrics"
        headers = {k.lower(): v for k, v in otlp.headers.items()}  # gRPC refuses upper-case metadata keys
        return ExportSettings(endpoint, otlp.protocol, otlp.interval, otlp.timeout, headers, otlp.insecure)
    exporters = env.get("OTEL_METRICS_EXPORTER", "otlp").lower()
    signal, base = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", ""), env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if not (signal or base) or "otlp" not in [e.strip() for e in exporters.split(",")]:
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip()
    if protocol not in ("grpc", "http/protobuf"):
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported (grpc, http/protobuf): no OTLP export", protocol)
        return None
    endpoint = signal or (base if protocol == "grpc" else base.rstrip("/") + "/v1/metrics")
    interval = _env_ms(env, "OTEL_METRIC_EXPORT_INTERVAL", 15.0)
    timeout = _env_ms(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", 0.0) or _env_ms(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 5.0)
    return ExportSettings(endpoint, protocol, interval, timeout, None, None)


def _env_ms(env: Mapping[str, str], name: str, default_s: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default_s
    try:
        ms = float(raw)
    except ValueError:
        ms = 0.0
    if ms > 0:
        return ms / 1000
    log.warning("%s=%r is not a positive number of milliseconds: using %gs", name, raw, default_s)
    return default_s


def resource_attributes(
    agent_name: str, labels: dict[str, str], version: str, env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The resource: ours, the agent's labels, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    over both (what the operator sets in the environment wins)."""
    out = {
        "service.name": "firstwatch",
        "service.version": version,
        "service.instance.id": INSTANCE_ID,
        "host.name": socket.gethostname(),
        "firstwatch.agent.name": agent_name,
        **labels,
    }
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, eq, value = item.partition("=")
        if eq and key.strip():
            out[key.strip()] = unquote(value.strip())
        elif item.strip():
            log.warning("OTEL_RESOURCE_ATTRIBUTES: %r is not key=value; ignored", item)
    if name := env.get("OTEL_SERVICE_NAME", "").strip():
        out["service.name"] = name
    return out
