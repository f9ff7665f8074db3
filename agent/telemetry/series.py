"""The series :mod:`agent.telemetry.metrics` keeps, and their Prometheus text (pure Python, no SDK).

Each metric holds its current points in a dict: a gauge point is the last value, a counter point a
running total, a histogram point cumulative bucket counts (explicit boundaries, OpenTelemetry's
``(previous, bound]`` buckets). Memory is one small slotted object per series and nothing per
measurement, so it is bounded by the number of series whatever happens to the exporters. Readers
(the OTLP thread, a ``/metrics`` scrape) take a snapshot metric by metric under the shared lock.

Prometheus names follow the OpenTelemetry compatibility rules, as the OpenTelemetry Prometheus
exporter applies them: characters outside ``[a-zA-Z0-9:]`` become ``_``, the unit is appended
(``s`` -> ``_seconds``, ``By`` -> ``_bytes``, ``%`` -> ``_percent``, ``d`` -> ``_days``; ``1`` and
``{annotations}`` add nothing), counters end in ``_total``; the resource is ``target_info``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Literal

Kind = Literal["gauge", "counter", "histogram"]
Observer = Callable[[], Iterable[tuple[float, dict[str, str]]]]

_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent", "d": "days", "1": ""}
_NAME = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL = re.compile(r"[^a-zA-Z0-9]+")


class Point:
    """A gauge or counter series."""

    __slots__ = ("attrs", "labels", "value")

    def __init__(self, attrs: dict[str, str], labels: str) -> None:
        self.attrs = attrs
        self.labels = labels
        self.value = 0.0


class HistPoint:
    """A histogram series: ``counts[i]`` holds values in ``(bounds[i-1], bounds[i]]``."""

    __slots__ = ("attrs", "count", "counts", "labels", "max", "min", "start_ns", "sum")

    def __init__(self, attrs: dict[str, str], labels: str, buckets: int) -> None:
        self.attrs = attrs
        self.labels = labels
        self.counts = [0] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.start_ns = time.time_ns()


class Metric:
    """One metric and its series, keyed by whatever identifies a series to the recorder."""

    def __init__(self, kind: Kind, name: str, unit: str, description: str, bounds: tuple[float, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.unit = unit
        self.description = description
        self.bounds = bounds
        self.points: dict[Hashable, Point | HistPoint] = {}
        self.observer: Observer | None = None  # a gauge read at collection instead of stored


Row = tuple[dict[str, str], str, float]  # attrs, Prometheus labels, value
# attrs, labels, counts, count, sum, min, max, start_ns
HistRow = tuple[dict[str, str], str, list[int], int, float, float, float, int]


class Taken:
    """A metric's points as copied for one reader: ``rows`` (gauge, counter) or ``hist``."""

    __slots__ = ("hist", "metric", "rows")

    def __init__(self, metric: Metric, rows: list[Row], hist: list[HistRow]) -> None:
        self.metric = metric
        self.rows = rows
        self.hist = hist


class Registry:
    """Every metric of one :class:`agent.telemetry.metrics.Telemetry`, in the order they were created."""

    def __init__(self, lock: threading.Lock, prometheus_labels: dict[str, str] | None) -> None:
        self.lock = lock
        self.start_ns = time.time_ns()
        self.metrics: dict[str, Metric] = {}
        self._extra = prometheus_labels  # None: Prometheus is off, no label text is kept

    def metric(self, kind: Kind, name: str, unit: str, description: str, bounds: tuple[float, ...] = ()) -> Metric:
        m = self.metrics.get(name)
        if m is None:
            m = self.metrics[name] = Metric(kind, name, unit, description, bounds)
        return m

    def labels(self, attrs: dict[str, str]) -> str:
        """The Prometheus label text of ``attrs`` plus the agent's labels ("" when Prometheus is off)."""
        if self._extra is None:
            return ""
        pairs = {label_name(k): v for k, v in attrs.items()}
        for k, v in self._extra.items():
            pairs.setdefault(k, v)
        return ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items())

    def point(self, m: Metric, key: Hashable, attrs: dict[str, str]) -> Point:
        """The point of ``key`` (created if new); call with the lock held."""
        p = m.points.get(key)
        if p is None:
            p = m.points[key] = Point(attrs, self.labels(attrs))
        assert isinstance(p, Point)
        return p

    def hist_point(self, m: Metric, key: Hashable, attrs: dict[str, str]) -> HistPoint:
        p = m.points.get(key)
        if p is None:
            p = m.points[key] = HistPoint(attrs, self.labels(attrs), len(m.bounds) + 1)
        assert isinstance(p, HistPoint)
        return p

    def snapshot(self) -> list[Taken]:
        """Every metric with a copy of its points, each metric copied under the lock on its own
        (one long copy of everything would hold up the event loop)."""
        out: list[Taken] = []
        for m in list(self.metrics.values()):
            rows: list[Row] = []
            hist: list[HistRow] = []
            if m.observer is not None:
                rows = [(attrs, self.labels(attrs), float(v)) for v, attrs in m.observer()]
            elif m.kind == "histogram":
                with self.lock:
                    hist = [
                        (p.attrs, p.labels, list(p.counts), p.count, p.sum, p.min, p.max, p.start_ns)
                        for p in m.points.values()
                        if isinstance(p, HistPoint)
                    ]
            else:
                with self.lock:
                    rows = [(p.attrs, p.labels, p.value) for p in m.points.values() if isinstance(p, Point)]
            if rows or hist:
                out.append(Taken(m, rows, hist))
        return out


def observe(p: HistPoint, bounds: tuple[float, ...], value: float) -> None:
    """Add ``value`` to histogram point ``p``; call with the lock held."""
    i = 0
    for b in bounds:  # a dozen or two bounds: a plain loop beats bisect's call overhead here
        if value <= b:
            break
        i += 1
    p.counts[i] += 1
    p.count += 1
    p.sum += value
    if value < p.min:
        p.min = value
    if value > p.max:
        p.max = value


def label_name(key: str) -> str:
    name = _LABEL.sub("_", key)
    return "_" + name[1:] if name[:1].isdigit() else name


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def prometheus_name(m: Metric) -> str:
    name = _NAME.sub("_", m.name)
    if name[:1].isdigit():
        name = "_" + name[1:]
    unit = re.sub(r"\{.*?\}", "", m.unit)
    suffix = _UNITS.get(unit, _NAME.sub("_", unit).strip("_"))
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    if m.kind == "counter":
        name = name.removesuffix("_total") + "_total"
    return name


def number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def render(snapshot: list[Taken], resource: dict[str, str]) -> bytes:
    """The Prometheus text format (0.0.4) of a snapshot, ``target_info`` first."""
    info = ",".join(f'{label_name(k)}="{escape(v)}"' for k, v in resource.items())
    out = ["# HELP target_info Target metadata\n# TYPE target_info gauge\n", f"target_info{{{info}}} 1.0\n"]
    for taken in snapshot:
        m = taken.metric
        name = prometheus_name(m)
        help_text = m.description.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {m.kind}\n")
        for _, labels, value in taken.rows:
            out.append(f"{name}{{{labels}}} {number(value)}\n" if labels else f"{name} {number(value)}\n")
        les = [number(b) for b in m.bounds] + ["+Inf"]
        for _, labels, counts, count, total, *_rest in taken.hist:
            sep = "," if labels else ""
            running = 0
            for le, c in zip(les, counts, strict=True):
                running += c
                out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}.0\n')
            tail = f"{{{labels}}}" if labels else ""
            out.append(f"{name}_count{tail} {count}.0\n{name}_sum{tail} {number(float(total))}\n")
    return "".join(out).encode()
