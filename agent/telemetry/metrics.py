"""Metrics out of firstwatch: OTLP push (gRPC or HTTP/protobuf) and a Prometheus ``/metrics`` text.

Every number comes from the same :class:`checks.base.Result` the rules judge. The daemon calls the
cheap recording methods below, which only update in-memory series (:mod:`agent.telemetry.series`,
memory bounded by the number of series); the OpenTelemetry OTLP exporter pushes them on a thread of
its own (:mod:`agent.telemetry.otlp`), so recording never blocks the event loop and a collector that
is down, slow or refusing costs one bounded export attempt per interval; ``/metrics`` renders the
same series as Prometheus text.

The metric set (OpenTelemetry names; Prometheus turns dots into underscores and adds the unit
suffix: ``firstwatch_check_duration_seconds``, ``firstwatch_events_sent_total``)::

    firstwatch.check.up          gauge      1      1 when the last probe passed, 0 when it failed
    firstwatch.check.duration    histogram  s      the probe's duration value (buckets 1 ms .. 60 s, 1-2.5-5-7.5)
    firstwatch.check.<value>     gauge      UCUM   every other declared value (agent.telemetry.values)
    firstwatch.check.perf.seconds gauge     s      plugin perfdata by unit: also .bytes (By), .ratio
                                                   (1, percent / 100), and firstwatch.check.perf (1)
    system.cpu.utilization       gauge      1      host cpu, 0..1
    system.memory.utilization    gauge      1      host memory, 0..1, system.memory.state=used
    system.paging.utilization    gauge      1      host swap, 0..1, system.paging.state=used
    system.cpu.load_average.1m   gauge      {thread}  host load1 (also .5m, .15m)
    system.filesystem.utilization gauge     1      host disk[MOUNT], 0..1, system.filesystem.mountpoint
    firstwatch.alert.active      gauge      1      1 while a rule of that severity fires, else 0
    firstwatch.events.sent       counter    {event}  per sink
    firstwatch.events.dropped    counter    {event}  per sink (past a bounded buffer)
    firstwatch.outbox.depth      gauge      {event}  undelivered events per sink
    firstwatch.scheduler.runs    counter    {run}  probe runs started
    firstwatch.scheduler.lag     histogram  s      how late each run started (buckets 0.5 ms .. 10 s)
    firstwatch.scheduler.missed  counter    {run}  runs skipped (still running, or the loop fell behind)
    firstwatch.config.reloads    counter    {reload}  by result=success|failure
    firstwatch.browser.restarts  counter    {restart}  the browser checks' Chromium restarted after it
                                                   crashed, was killed or hung (only with browser checks)
    firstwatch.slo.sli           gauge      1      per (check, target) with an slo; also
                                                   .error_budget.remaining and .burn_rate (agent.telemetry.slos)

Counters are exported from the start, at 0: ``scheduler.runs``, ``scheduler.missed`` and both
``config.reloads`` results at once, ``events.sent`` and ``events.dropped`` per sink once the
daemon names its sinks (:meth:`Telemetry.register_sinks`), so a rate or an alert on them works
before the first event is ever dropped. ``browser.restarts`` exists only once a runtime with
browser checks asks for it (:meth:`Telemetry.observe_browser_restarts`), from 0.

Check metrics carry ``check.name``, ``check.type``, ``check.target`` (alerts: ``check.name``,
``check.target``, ``severity``). The resource: ``service.name=firstwatch`` (OTEL_SERVICE_NAME
overrides), ``service.version``, ``host.name``, ``service.instance.id`` (one UUID per process),
``firstwatch.agent.name``, the agent's labels, then OTEL_RESOURCE_ATTRIBUTES over all of them. On
``/metrics`` the resource is the ``target_info`` series, and the agent's name
(``firstwatch_agent_name``) and labels are also on every series, so a central Prometheus tells
agents apart by them (``firstwatch rules`` counts agents that way). Gauges of a (check, target)
show exactly the values of its last result, so a value a failed probe could not measure
disappears instead of repeating a stale number.

Configuration: ``telemetry.otlp`` (:class:`OtlpConfig`); without it, the standard
``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`` turns OTLP export on, with
``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`` (default ``http/protobuf``, as the specification says),
``OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT`` (ms), ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default 15 s),
unless ``OTEL_METRICS_EXPORTER`` names no ``otlp``. Headers, certificates and compression come from
the usual OTEL_EXPORTER_OTLP_* variables when the config does not set them. Temporality is always
cumulative. ``OTEL_SDK_DISABLED=true`` turns all of it off (``/metrics`` then serves an empty page).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.telemetry.config import TelemetryConfig
from agent.telemetry.env import resolve_export, resource_attributes, sdk_disabled
from agent.telemetry.series import HistPoint, Metric, Point, Registry, label_name, observe, render
from agent.telemetry.slos import GAUGES as SLO_GAUGES
from agent.telemetry.slos import Rows, SloReading, reading
from agent.telemetry.values import route, template_param
from checks.base import Result, ValueSpec, find_value, unit_of

if TYPE_CHECKING:
    from agent.telemetry.otlp import OtlpPusher

log = logging.getLogger("firstwatch.telemetry")

# probe latencies: a loopback answer (1 ms) to a timeout (10 s default, 60 s at most in practice)
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip
LAG_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_VALUES_PER_TARGET = 1000  # perfdata labels are the plugin's to choose: bound what one target adds


# How one concrete value of one target is written: (metric, its key there, point, scale).
_Route = tuple[Metric, tuple[tuple[str, str], str], Point, float]


class _Plan:
    """What is cached per (check, target) so recording a result is a few attribute writes."""

    __slots__ = ("attrs", "duration", "names", "routes", "specs", "type", "up")

    def __init__(self, result: Result, specs: tuple[ValueSpec, ...], up: Point, duration: HistPoint) -> None:
        self.type = result.type
        self.specs = specs
        self.attrs = up.attrs
        self.up = up
        self.duration = duration
        self.routes: dict[str, _Route | None] = {}
        self.names: tuple[str, ...] = ()  # the value names of the last result, in its order


class Telemetry:
    """The daemon's handle on metrics. Every recording method is cheap (a few microseconds, no
    I/O, no SDK call) and safe from the event loop; :meth:`flush` and :meth:`shutdown` block (call
    them through ``asyncio.to_thread``); :meth:`prometheus_text` formats every series (on a very
    large fleet, also worth a thread)."""

    def __init__(self, config: TelemetryConfig, agent_name: str, labels: dict[str, str], version: str) -> None:
        self.config = config
        self.export = resolve_export(config)
        self.prometheus = config.prometheus and not sdk_disabled()
        self.enabled = self.export is not None or self.prometheus
        self.resource = resource_attributes(agent_name, labels, version)
        self._lock = threading.Lock()
        series_labels = (
            {"firstwatch_agent_name": agent_name, **{label_name(k): v for k, v in labels.items()}}
            if self.prometheus
            else None
        )
        reg = self._registry = Registry(self._lock, series_labels)
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._up = reg.metric("gauge", "firstwatch.check.up", "1", "1 when the last probe passed, 0 when it failed")
        self._duration = reg.metric(
            "histogram", "firstwatch.check.duration", "s", "how long the probe took", DURATION_BUCKETS
        )
        self._alerts = reg.metric("gauge", "firstwatch.alert.active", "1", "1 while an alert of this severity fires")
        self._sent = reg.metric("counter", "firstwatch.events.sent", "{event}", "events delivered, per sink")
        self._dropped = reg.metric("counter", "firstwatch.events.dropped", "{event}", "events dropped, per sink")
        self._outbox = reg.metric("gauge", "firstwatch.outbox.depth", "{event}", "events not yet delivered, per sink")
        self._runs = reg.metric("counter", "firstwatch.scheduler.runs", "{run}", "probe runs started")
        self._lag = reg.metric("histogram", "firstwatch.scheduler.lag", "s", "how late runs start", LAG_BUCKETS)
        self._missed = reg.metric("counter", "firstwatch.scheduler.missed", "{run}", "probe runs skipped")
        self._reloads = reg.metric("counter", "firstwatch.config.reloads", "{reload}", "config reloads, by result")
        if self.enabled:  # counters start at 0, not at their first count
            with self._lock:
                reg.point(self._runs, "", {})
                reg.point(self._missed, "", {})
                for outcome in ("success", "failure"):
                    reg.point(self._reloads, outcome, {"result": outcome})
        self._restarts: Callable[[], int] | None = None  # the current runtime's browser restarts
        self._restarts_before = 0  # counted by the runtimes before it (reloads)
        self._pusher: OtlpPusher | None = None
        if self.export is not None:
            from agent.telemetry.otlp import OtlpPusher

            self._pusher = OtlpPusher(self.export, reg.snapshot, self.resource, version, reg.start_ns)
        if self.enabled:
            where = f"OTLP {self.export.protocol} to {_safe(self.export.endpoint)}" if self.export else "no OTLP"
            log.info("telemetry: %s, Prometheus /metrics %s", where, "on" if self.prometheus else "off")

    # --- recording (event loop) -----------------------------------------------------------------

    def record_result(self, result: Result, values: tuple[ValueSpec, ...]) -> None:
        """Record one probe result; ``values`` are its check type's declared ``VALUES``."""
        if not self.enabled:
            return
        key = (result.check, result.target)
        plan = self._plans.get(key)
        if plan is None or plan.specs is not values or plan.type != result.type:
            plan = self._new_plan(key, result, values)
        vals = result.values
        routes = plan.routes
        for name in vals:
            if name not in routes and len(routes) < _MAX_VALUES_PER_TARGET:
                routes[name] = self._route(plan, key, name, vals)
        with self._lock:
            plan.up.value = 1.0 if result.ok else 0.0
            observe(plan.duration, DURATION_BUCKETS, vals.get("duration", result.duration_s))
            for name, value in vals.items():
                route = routes.get(name)
                if route is not None:
                    metric, pkey, point, scale = route
                    point.value = value * scale
                    metric.points[pkey] = point
            names = tuple(vals)
            if names != plan.names:
                for gone in set(plan.names).difference(names):
                    if (route := routes.get(gone)) is not None:
                        route[0].points.pop(route[1], None)
                plan.names = names

    def set_alert_active(self, check: str, target: str, severity: str, active: bool) -> None:
        if not self.enabled:
            return
        attrs = {"check.name": check, "check.target": target, "severity": severity}
        with self._lock:
            self._registry.point(self._alerts, (check, target, severity), attrs).value = 1.0 if active else 0.0

    def register_sinks(self, names: Collection[str]) -> None:
        """Export ``firstwatch.events.sent`` and ``.dropped`` of each sink in ``names`` from now on,
        at 0 until they count (totals already counted are kept). Call with the sinks of a runtime."""
        if not self.enabled:
            return
        with self._lock:
            for sink in names:
                self._registry.point(self._sent, sink, {"sink": sink})
                self._registry.point(self._dropped, sink, {"sink": sink})

    def event_sent(self, sink: str) -> None:
        self._count(self._sent, sink, "sink", 1)

    def event_dropped(self, sink: str, n: int = 1) -> None:
        self._count(self._dropped, sink, "sink", n)

    def scheduler_run(self, lag_s: float) -> None:
        """A run started ``lag_s`` seconds after its slot."""
        if not self.enabled:
            return
        with self._lock:
            self._registry.point(self._runs, "", {}).value += 1
            observe(self._registry.hist_point(self._lag, "", {}), LAG_BUCKETS, max(lag_s, 0.0))

    def scheduler_missed(self, n: int = 1) -> None:
        self._count(self._missed, "", None, n)

    def config_reload(self, success: bool) -> None:
        self._count(self._reloads, "success" if success else "failure", "result", 1)

    def observe_outbox(self, fn: Callable[[], dict[str, int]] | None) -> None:
        """Report ``fn()`` (sink -> undelivered events) as ``firstwatch.outbox.depth`` at each
        collection; replaces an earlier ``fn`` (None removes it). ``fn`` may run on the exporter's
        thread: it must only read in-memory counts, never touch the event loop or a database."""
        if fn is None:
            self._outbox.observer = None
            return
        self._outbox.observer = _guarded(
            "firstwatch.outbox.depth", lambda: [(float(n), {"sink": sink}) for sink, n in fn().items()]
        )

    def observe_slos(self, fn: Callable[[], Sequence[SloReading]] | None) -> None:
        """Report ``fn()`` (one reading per (check, target) with an ``slo``) as the gauges
        ``firstwatch.slo.sli``, ``.error_budget.remaining`` and ``.burn_rate``
        (:mod:`agent.telemetry.slos`) at each collection, once per gauge; replaces an earlier
        ``fn`` (None removes the series). The gauges exist only once a runtime asks for them.
        ``fn`` may run on the exporter's thread: it must only read in-memory numbers."""
        if fn is None and SLO_GAUGES[0][0] not in self._registry.metrics:
            return  # never had an slo: no such metrics
        for name, unit, description, rows in SLO_GAUGES:
            metric = self._registry.metric("gauge", name, unit, description)
            metric.observer = None if fn is None else _guarded(name, reading(rows, fn))

    def observe_browser_restarts(self, fn: Callable[[], int] | None) -> None:
        """Export ``fn()`` (the restarts of a runtime's browser) as the counter
        ``firstwatch.browser.restarts``, read at each collection. The first call registers it;
        a later one (a reload) adds what the previous ``fn`` counted, so the total never goes
        back; None keeps the total without a browser. ``fn`` may run on the exporter's thread:
        it must only read an in-memory count."""
        if self._restarts is not None:
            self._restarts_before += _safe_count(self._restarts)
        self._restarts = fn
        if fn is None and "firstwatch.browser.restarts" not in self._registry.metrics:
            return  # never had browser checks: no such metric
        metric = self._registry.metric(
            "counter", "firstwatch.browser.restarts", "{restart}", "browser restarts after a crash, kill or hang"
        )
        metric.observer = self._browser_restarts

    def _browser_restarts(self) -> list[tuple[float, dict[str, str]]]:
        fn = self._restarts
        return [(float(self._restarts_before + (_safe_count(fn) if fn is not None else 0)), {})]

    def retain_checks(self, names: Collection[str]) -> None:
        """Forget the series of checks not in ``names`` (after a reload removed them)."""
        with self._lock:
            for key in [k for k in self._plans if k[0] not in names]:
                self._drop(key, self._plans.pop(key))
            for k in [k for k in self._alerts.points if isinstance(k, tuple) and k[0] not in names]:
                del self._alerts.points[k]

    # --- output ---------------------------------------------------------------------------------

    def prometheus_text(self) -> tuple[bytes, str]:
        """The ``/metrics`` body and its content type (empty when Prometheus is off)."""
        if not self.prometheus:
            return b"", PROMETHEUS_CONTENT_TYPE
        return render(self._registry.snapshot(), self.resource), PROMETHEUS_CONTENT_TYPE

    def flush(self) -> bool:
        """Export now (blocking: at most about twice the export timeout)."""
        return self._pusher.export() if self._pusher is not None else True

    def shutdown(self, timeout_s: float = 3.0) -> None:
        """One last export, then stop; returns within about ``timeout_s`` even when the collector is
        down or never answers."""
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.shutdown(timeout_s)

    # --- internals ------------------------------------------------------------------------------

    def _new_plan(self, key: tuple[str, str], result: Result, specs: tuple[ValueSpec, ...]) -> _Plan:
        attrs = {"check.name": result.check, "check.type": result.type, "check.target": result.target}
        with self._lock:
            if (old := self._plans.pop(key, None)) is not None:
                self._drop(key, old)
            up = self._registry.point(self._up, key, attrs)
            duration = self._registry.hist_point(self._duration, key, attrs)
        plan = self._plans[key] = _Plan(result, specs, up, duration)
        return plan

    def _route(self, plan: _Plan, key: tuple[str, str], name: str, values: dict[str, float]) -> _Route | None:
        spec = find_value(plan.specs, name)
        r = route(plan.type, spec, unit_of(plan.specs, values, name)) if spec is not None else None
        if r is None or spec is None:
            return None
        metric = self._registry.metric("gauge", r.metric, r.unit, r.description)
        attrs = plan.attrs
        if r.attributes or r.param_attribute:
            attrs = {**attrs, **dict(r.attributes)}
            if r.param_attribute:
                attrs[r.param_attribute] = template_param(spec, name)
        labels = plan.up.labels if attrs is plan.attrs else self._registry.labels(attrs)
        return metric, (key, name), Point(attrs, labels), r.scale

    def _drop(self, key: tuple[str, str], plan: _Plan) -> None:
        """Remove every series of one (check, target); call with the lock held."""
        self._up.points.pop(key, None)
        self._duration.points.pop(key, None)
        for target in plan.routes.values():
            if target is not None:
                target[0].points.pop(target[1], None)

    def _count(self, metric: Metric, key: str, attribute: str | None, n: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._registry.point(metric, key, {attribute: key} if attribute else {}).value += n


def _safe_count(fn: Callable[[], int]) -> int:
    try:
        return int(fn())
    except Exception:  # the runtime's callback broke: count nothing from it, export the rest
        log.exception("telemetry: observing firstwatch.browser.restarts failed")
        return 0


def _guarded(name: str, rows: Callable[[], Rows]) -> Callable[[], Rows]:
    """``rows`` as the observer of gauge ``name``: when the daemon's callback breaks, say so once
    and export everything else."""
    failed = False

    def observe() -> Rows:
        nonlocal failed
        try:
            return rows()
        except Exception:
            if not failed:
                log.exception("telemetry: observing %s failed", name)
                failed = True
            return []

    return observe


def _safe(endpoint: str) -> str:
    """An endpoint for the log: without credentials a URL might carry."""
    parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()
