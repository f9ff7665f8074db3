"""Which metric each declared check value becomes (pure: no OpenTelemetry import).

A check type declares its values (:class:`checks.base.ValueSpec`); :func:`route` maps one declared
value to the OpenTelemetry metric it is exported as, and :func:`template_param` pulls the
parameter out of a concrete name (``disk[/var]`` -> ``/var``). The rules:

- ``duration`` is the ``firstwatch.check.duration`` histogram, not a gauge (skipped here).
- Host values with a semantic-convention metric use it, as a 0..1 ratio where the check measures
  percent: ``cpu`` -> ``system.cpu.utilization``, ``memory`` -> ``system.memory.utilization``
  (``system.memory.state=used``), ``swap`` -> ``system.paging.utilization``
  (``system.paging.state=used``), ``load1/5/15`` -> ``system.cpu.load_average.1m/5m/15m``,
  ``disk[MOUNT]`` -> ``system.filesystem.utilization`` (``system.filesystem.mountpoint=MOUNT``).
- Every other value is ``firstwatch.check.<value>`` with the template part removed
  (``process[LABEL].rss`` -> ``firstwatch.check.process.rss``, ``perf.LABEL`` ->
  ``firstwatch.check.perf``) and its parameter as an attribute: ``MOUNT`` is
  ``system.filesystem.mountpoint``; any other is ``<first part>.<param>`` in lower case
  (``process.label``, ``perf.label``, ``json.path``). The declared unit becomes UCUM: ``s``,
  ``%``, ``By``, ``d``, ``1``.
- A value declared in unit ``any`` (a plugin's perfdata) gets one metric per unit, so seconds and
  bytes never share a name: ``firstwatch.check.perf.seconds`` (``s``),
  ``firstwatch.check.perf.bytes`` (``By``), ``firstwatch.check.perf.ratio`` (``1``, percent / 100,
  as the host utilizations), and ``firstwatch.check.perf`` (``1``) for numbers without a unit.
  Prometheus: ``firstwatch_check_perf_seconds``, ``_bytes``, ``_ratio``, ``firstwatch_check_perf``.
  When the unit is not known (a result without :class:`checks.base.Values` units), the value
  goes to ``firstwatch.check.perf``, a plain number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from checks.base import ValueSpec

UCUM: dict[str, str] = {"s": "s", "%": "%", "bytes": "By", "days": "d", "1": "1"}

_PARAM = re.compile(r"\[([A-Z][A-Z_]+)\]|\.([A-Z][A-Z_]+)(?=\.|\Z)")
_PARAM_ATTRIBUTES = {"MOUNT": "system.filesystem.mountpoint"}
# the unit of an ``any`` value -> (metric name suffix, UCUM unit, scale)
PERF_UNITS: dict[str, tuple[str, str, float]] = {
    "s": (".seconds", "s", 1.0),
    "bytes": (".bytes", "By", 1.0),
    "%": (".ratio", "1", 0.01),
    "1": ("", "1", 1.0),
}


@dataclass(frozen=True, slots=True)
class Route:
    """How one declared value is exported: ``value * scale`` on gauge ``metric`` with the fixed
    ``attributes`` plus, for template values, ``param_attribute`` = the template parameter."""

    metric: str
    unit: str
    description: str
    scale: float = 1.0
    attributes: tuple[tuple[str, str], ...] = ()
    param_attribute: str | None = None


def _semconv(metric: str, unit: str, description: str, scale: float = 1.0, **attrs: str) -> Route:
    fixed = tuple((k.replace("_", "."), v) for k, v in attrs.items())
    return Route(metric, unit, description, scale, fixed)


_UTIL = "(0..1)"
SEMCONV: dict[tuple[str, str], Route] = {
    ("host", "cpu"): _semconv("system.cpu.utilization", "1", f"CPU busy across all cores {_UTIL}", 0.01),
    ("host", "memory"): _semconv(
        "system.memory.utilization", "1", f"RAM in use {_UTIL}", 0.01, system_memory_state="used"
    ),
    ("host", "swap"): _semconv(
        "system.paging.utilization", "1", f"swap in use {_UTIL}", 0.01, system_paging_state="used"
    ),
    ("host", "load1"): _semconv("system.cpu.load_average.1m", "{thread}", "load average over 1 minute"),
    ("host", "load5"): _semconv("system.cpu.load_average.5m", "{thread}", "load average over 5 minutes"),
    ("host", "load15"): _semconv("system.cpu.load_average.15m", "{thread}", "load average over 15 minutes"),
    ("host", "disk[MOUNT]"): Route(
        "system.filesystem.utilization",
        "1",
        f"filesystem space used, as df reports it {_UTIL}",
        0.01,
        param_attribute="system.filesystem.mountpoint",
    ),
}


def route(check_type: str, spec: ValueSpec, unit: str | None = None) -> Route | None:
    """The metric for declared value ``spec`` of ``check_type``; None when it is not a gauge.
    ``unit`` is the unit a value declared ``any`` was reported in (``s``, ``%``, ``bytes``, ``1``)."""
    if spec.name == "duration":
        return None
    known = SEMCONV.get((check_type, spec.name))
    if known is not None:
        return known
    param = _PARAM.search(spec.name)
    if param is None:
        return Route(f"firstwatch.check.{spec.name}", UCUM.get(spec.unit, spec.unit), spec.meaning)
    name = param.group(1) or param.group(2)
    stem = _PARAM.sub("", spec.name)
    attribute = _PARAM_ATTRIBUTES.get(name) or f"{stem.split('.')[0]}.{name.lower()}"
    if spec.unit == "any":
        suffix, ucum, scale = PERF_UNITS.get(unit or "1", PERF_UNITS["1"])
        return Route(f"firstwatch.check.{stem}{suffix}", ucum, spec.meaning, scale, param_attribute=attribute)
    return Route(f"firstwatch.check.{stem}", UCUM.get(spec.unit, spec.unit), spec.meaning, param_attribute=attribute)


def template_param(spec: ValueSpec, concrete: str) -> str:
    """The parameter of a concrete template value: ``disk[/var]`` -> ``/var``, ``json.a.b`` ->
    ``a.b``; the whole name when ``spec`` is not a template."""
    m = spec.pattern.match(concrete)
    return m.group(1) if m and m.groups() else concrete
