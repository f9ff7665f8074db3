"""``telemetry.cloudwatch``: check results as CloudWatch Embedded Metric Format (EMF) documents.

CloudWatch turns each EMF log line into metrics, so alarms and dashboards work from firstwatch's
measurements without an AWS SDK here: the documents go to the CloudWatch agent's EMF listener
(``tcp://127.0.0.1:25888``, newline-delimited, or ``udp://127.0.0.1:25888``, one datagram
each) or are appended to a file a log shipper forwards.

    endpoint   ``tcp://HOST:PORT``, ``udp://HOST:PORT``, or a file path
    namespace  the CloudWatch namespace (default ``firstwatch``; not ``AWS/...``)
    interval   how often buffered results are written (default 60s: standard resolution)

Every ``interval``, one document per (check, target) with results since the last one::

    {"_aws": {"Timestamp": 1795919700000, "CloudWatchMetrics": [{"Namespace": "firstwatch",
      "Dimensions": [["check", "target"], ["check"]],
      "Metrics": [{"Name": "up", "Unit": "Count"}, {"Name": "duration", "Unit": "Seconds"}]}]},
     "check": "shop-web", "target": "https://10.0.0.1/", "type": "http", "agent": "web-01",
     "up": [1, 1, 0, 1], "duration": [0.12, 0.11, 10.0, 0.13]}

``up`` is 1 when a probe passed, 0 when it failed; every other metric is a value the check
measures (``duration``, ``status``, ``tls.days_left``, ``disk[/var]`` ...), in Seconds, Percent
or Bytes where its unit is s, % or bytes, else None. A metric holds every sample of the interval
(up to the last 100), so a one-minute alarm on ``up`` Minimum sees a single failed run. A
target on the machine itself (host checks, ``localhost``, ``127.x``, ``::1``) adds ``agent`` to
the first dimension set, so ten hosts' cpu stay ten series. The agent's labels are properties.

Writing never blocks probing: ``record()`` only buffers; the flush connects and writes under a
deadline. Documents that could not be written (the agent is down) are kept, at most
``BACKLOG`` of them, oldest dropped first, and written with their own timestamps once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.core.units import Seconds
from checks.base import Result, ValueSpec, find_value

log = logging.getLogger("firstwatch.cloudwatch")

BACKLOG = 10_000  # documents kept while the endpoint is unreachable
MAX_METRICS = 100  # per document (EMF)
MAX_SAMPLES = 100  # values per metric per document (EMF)
DATAGRAM_MAX = 60_000  # bytes: split bigger documents for UDP
UNITS = {"s": "Seconds", "%": "Percent", "bytes": "Bytes"}
_RESERVED = frozenset({"_aws", "check", "target", "type", "agent"})
_NAMESPACE = re.compile(r"[A-Za-z0-9._#:/-]{1,255}\Z")
_LOCAL = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?\[?(?:localhost|127(?:\.\d{1,3}){3}|::1)\]?(?:[:/]|\Z)", re.I)


class CloudWatchConfig(BaseModel):
    """``telemetry.cloudwatch``: EMF documents to the CloudWatch agent or a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str
    namespace: str = "firstwatch"
    interval: Seconds = Field(default=60.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if "://" not in v:
            if not v.strip():
                raise ValueError("endpoint must be tcp://HOST:PORT, udp://HOST:PORT or a file path")
            return v
        parts = urlsplit(v)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("tcp", "udp") or not parts.hostname or not port or parts.path not in ("", "/"):
            raise ValueError(f"endpoint must be tcp://HOST:PORT, udp://HOST:PORT or a file path, got {v!r}")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _NAMESPACE.match(v):
            raise ValueError("namespace must be 1 to 255 of the characters A-Z a-z 0-9 . _ # : / -")
        if v.startswith("AWS/"):
            raise ValueError("namespaces starting with AWS/ are reserved for AWS services")
        return v


@dataclass
class _Series:
    """The samples of one (check, target) since the last flush."""

    type: str
    last: float = 0.0
    samples: dict[str, deque[float]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def metric_name(value: str) -> str | None:
    """A CloudWatch metric name: printable ASCII, at most 255 characters; None if nothing is left."""
    name = "".join(c if " " <= c <= "~" else "_" for c in value).strip()[:255]
    return name if name and name not in _RESERVED else None


def _dimension(value: str) -> str:
    return ("".join(c if " " <= c <= "~" else "?" for c in value).strip() or "-")[:1024]


class EmfWriter:
    """Buffers results (:meth:`record`) and writes EMF documents every ``interval`` (:meth:`start`)."""

    def __init__(self, config: CloudWatchConfig, agent: str, labels: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.agent = agent
        self.labels = {k: v for k, v in (labels or {}).items() if k not in _RESERVED}
        self.sent = 0
        self.dropped = 0
        self._buffer: dict[tuple[str, str], _Series] = {}
        self._backlog: deque[bytes] = deque()
        self._units: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._reader: asyncio.StreamReader | None = None  # at EOF once the agent hung up
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None
        parts = urlsplit(config.endpoint) if "://" in config.endpoint else None
        self._scheme = parts.scheme if parts else "file"
        self._addr = (parts.hostname or "", parts.port or 0) if parts else ("", 0)
        self._deadline = min(config.interval, 5.0)

    def record(self, result: Result, values: tuple[ValueSpec, ...]) -> None:
        """Buffer one result; ``values`` are its check type's declared ``VALUES`` (for the units)."""
        series = self._buffer.get((result.check, result.target))
        if series is None:
            series = self._buffer[(result.check, result.target)] = _Series(result.type)
        series.type, series.last = result.type, max(series.last, result.started_at)
        self._add(series, "up", 1.0 if result.ok else 0.0, "Count")
        for name, value in result.values.items():
            unit = self._units.get((result.type, name))
            if unit is None:
                spec = find_value(values, name)
                unit = self._units[(result.type, name)] = UNITS.get(spec.unit if spec else "", "None")
            metric = metric_name(name)
            if metric is not None and isinstance(value, int | float) and math.isfinite(value):
                self._add(series, metric, float(value), unit)

    @staticmethod
    def _add(series: _Series, name: str, value: float, unit: str) -> None:
        samples = series.samples.get(name)
        if samples is None:
            samples = series.samples[name] = deque(maxlen=MAX_SAMPLES)
            series.units[name] = unit
        samples.append(value)

    def documents(self, buffer: dict[tuple[str, str], _Series] | None = None) -> list[bytes]:
        """Take the buffer as EMF documents (JSON, one line each, without the newline)."""
        if buffer is None:
            buffer, self._buffer = self._buffer, {}
        out: list[bytes] = []
        for (check, target), series in buffer.items():
            local = series.type == "host" or _LOCAL.match(target) is not None
            first = ["agent", "check", "target"] if local else ["check", "target"]
            props: dict[str, Any] = {"check": _dimension(check), "target": _dimension(target)}
            props |= {"type": series.type, "agent": _dimension(self.agent)}
            props |= {k: v for k, v in self.labels.items() if k not in series.samples}
            names = list(series.samples)
            for i in range(0, len(names), MAX_METRICS):
                out += self._encode(series, names[i : i + MAX_METRICS], props, [first, ["check"]])
        return out

    def _encode(self, series: _Series, names: list[str], props: dict[str, Any], dims: list[list[str]]) -> list[bytes]:
        directive = {
            "Namespace": self.config.namespace,
            "Dimensions": dims,
            "Metrics": [{"Name": n, "Unit": series.units[n]} for n in names],
        }
        doc: dict[str, Any] = {"_aws": {"Timestamp": int(series.last * 1000), "CloudWatchMetrics": [directive]}}
        doc |= props
        for n in names:
            samples = series.samples[n]
            doc[n] = samples[0] if len(samples) == 1 else list(samples)
        line = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        if self._scheme == "udp" and len(line) > DATAGRAM_MAX and len(names) > 1:
            half = len(names) // 2
            return self._encode(series, names[:half], props, dims) + self._encode(series, names[half:], props, dims)
        return [line]

    async def flush(self) -> None:
        """Write the buffered results, and any documents kept from failed writes before them."""
        async with self._lock:
            taken, self._buffer = self._buffer, {}
            if taken:  # encoding thousands of documents is CPU work: off the event loop
                self._backlog.extend(await asyncio.to_thread(self.documents, taken))
            excess = len(self._backlog) - BACKLOG
            for _ in range(max(0, excess)):
                self._backlog.popleft()
            self.dropped += max(0, excess)
            if not self._backlog:
                return
            batch = list(self._backlog)
            try:
                async with asyncio.timeout(self._deadline):
                    await self._write(batch)
            except (OSError, TimeoutError) as exc:
                await self._disconnect()
                if not self._failing:
                    errno = exc.errno if isinstance(exc, OSError) else None
                    reason = os.strerror(errno).lower() if errno else "timed out"
                    log.warning("cloudwatch: cannot write to %s (%s); %d documents kept", self.config.endpoint,
                                reason, len(batch))  # fmt: skip
                self._failing = True
                return
            if self._failing:
                log.info("cloudwatch: writing to %s again", self.config.endpoint)
            self._failing = False
            for _ in batch:
                self._backlog.popleft()
            self.sent += len(batch)

    async def _write(self, lines: list[bytes]) -> None:
        if self._scheme == "file":
            await asyncio.to_thread(_append, self.config.endpoint, b"".join(line + b"\n" for line in lines))
        elif self._scheme == "udp":
            if self._udp is None or self._udp.is_closing():
                loop = asyncio.get_running_loop()
                self._udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=self._addr)
            for line in lines:
                self._udp.sendto(line)
        else:
            if self._writer is None or self._writer.is_closing() or (self._reader and self._reader.at_eof()):
                await self._disconnect()
                self._reader, self._writer = await asyncio.open_connection(*self._addr)
            self._writer.write(b"".join(line + b"\n" for line in lines))
            await self._writer.drain()

    async def _disconnect(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await self._writer.wait_closed()
            self._reader = self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def start(self) -> None:
        """Flush every ``interval`` until :meth:`close`."""
        if self._task is None:
            self._task = asyncio.create_task(self._every(), name="cloudwatch-emf")

    async def _every(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += self.config.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:  # shielded: close() waits for a flush under way instead of losing its documents
                await asyncio.shield(self.flush())
            except Exception:  # a bug here must not end the periodic flush
                log.exception("cloudwatch: flush failed")

    async def close(self) -> None:
        """Stop the periodic flush, write what is buffered (once, under the deadline), disconnect."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
        await self._disconnect()


def _append(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "ab") as fh:  # one write per flush: lines from one flush never interleave
        fh.write(data)
