"""Everything one loaded config runs: checks on a schedule, alert state, outbox and sinks.

Probes measure, rules judge, the state machine debounces, sinks deliver; a :class:`Runtime` only
connects them, and can be built completely before it starts, so a reload swaps a whole new one
in or keeps the old one (``agent.daemon``). It also answers what the HTTP endpoint and the
watchdog ask: a status snapshot and whether the scheduler is making progress.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from agent import __version__
from agent.alerts import AlertBook, Change
from agent.cloudwatch_emf import EmfWriter
from agent.config import AgentConfig, CheckSpec
from agent.dispatch import Dispatcher
from agent.events import Event, iso_time
from agent.outbox import Outbox
from agent.output import describe_values
from agent.probe_runner import SharedResources, run_probe
from agent.recorder import Recorder
from agent.scheduler import Job, Scheduler
from agent.severity import SEVERITIES, rank, worst
from agent.store import Store
from agent.telemetry import Telemetry
from agent.units import format_duration
from checks.base import Check, Result

log = logging.getLogger("firstwatch")


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether check ``name`` belongs to shard K of N (stable across agents and restarts)."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(name.encode()) % n == k - 1


class Runtime:
    def __init__(
        self,
        cfg: AgentConfig,
        store: Store,
        shard: tuple[int, int] | None = None,
        telemetry: Telemetry | None = None,
        emf: EmfWriter | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.shard = shard
        self.telemetry = telemetry
        self.emf = emf
        self._active: Counter[tuple[str, str, str]] = Counter()  # firing alerts per (check, target, severity)
        self._severity_of: dict[tuple[str, str, str], str] = {}  # (check, target, rule) -> severity firing
        self.resources = SharedResources(cfg.agent_name)
        self.book = AlertBook(cfg.agent_name, cfg.labels)
        sinks = [s.build() for s in cfg.sinks]
        self.outbox = Outbox(store, sinks)
        self.recorder = Recorder(store, self.book, self.outbox)
        self.dispatcher = Dispatcher(
            sinks,
            self.outbox,
            on_delivered=self._delivered,
            on_agent_event=self.agent_event,
            on_dropped=telemetry.event_dropped if telemetry else None,
        )
        if telemetry is not None:
            telemetry.observe_outbox(lambda: dict(self.outbox.pending))
        self.checks = [(spec, spec.build()) for spec in cfg.checks if in_shard(spec.config.name, shard)]
        self.scheduler: Scheduler | None = None
        self.last: dict[tuple[str, str], Result] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return [
            Job(f"{spec.config.name} {target}", spec.config.interval, self._runner(spec, check, target))
            for spec, check in self.checks
            for target in check.targets()
        ]

    async def start(self) -> None:
        self.outbox.prune(time.time() - 7 * 86400)
        self.dispatcher.start()
        shard = self.shard
        restored = self.recorder.restore(
            list(self.cfg.checks), self.cfg.outage_tolerance, mine=lambda name: in_shard(name, shard)
        )
        self.publish(restored)
        self._restore_active()
        resync = [s.name for s in self.dispatcher.sinks if getattr(s, "RESYNC_ON_START", False)]
        if resync and self.recorder.remind(time.time(), resync=resync):
            self.dispatcher.wake()
        tel = self.telemetry
        self.scheduler = Scheduler(
            self.jobs(), on_run=tel.scheduler_run if tel else None, on_missed=tel.scheduler_missed if tel else None
        )
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop probing, save alert state, give sinks ``timeout`` to deliver what is due."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.flush_state()
        await self.dispatcher.close(timeout=timeout)
        await self.resources.close()

    def flush_state(self) -> None:
        """Save every alert's state now (before a reload hands over to a new runtime)."""
        self.book.dirty.update(self.book.alerts)
        self.publish([])

    def _runner(self, spec: CheckSpec, check: Check, target: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            result = await run_probe(check, target, self.resources)
            key = (result.check, target)
            before = self.last.get(key)
            self.last[key] = result
            if before is None or before.ok != result.ok:
                if result.ok:
                    log.info("%s %s: up: %s", result.check, target, describe_values(check.VALUES, result.values))
                else:
                    took = format_duration(result.duration_s)
                    log.warning("%s %s: down (%s) in %s", result.check, target, result.error, took)
            if self.telemetry is not None:
                self.telemetry.record_result(result, check.VALUES)
            if self.emf is not None:
                self.emf.record(result, check.VALUES)
            self.publish(self.book.observe(spec, result))

        return run

    async def _housekeeping(self, every: float = 1.0) -> None:
        """Reminders due (sinks with ``repeat``), the liveness mark for restarts, old outbox rows."""
        ticks = 0
        while True:
            await asyncio.sleep(every)
            ticks += 1
            try:
                if self.recorder.remind(time.time()):
                    self.dispatcher.wake()
                if ticks % 10 == 0:
                    self.recorder.heartbeat()
                if ticks % 3600 == 0:
                    self.outbox.prune(time.time() - 7 * 86400)
            except sqlite3.Error as exc:
                log.error("state database write failed: %s", exc)

    # --- events -------------------------------------------------------------------------------

    def publish(self, changes: list[Change]) -> None:
        try:
            self.recorder.record(changes)
        except sqlite3.Error as exc:  # the events could not be made durable: say so loudly
            log.error(
                "state database write failed; %d event(s) not queued: %s", sum(bool(c.event) for c in changes), exc
            )
            return
        queued = False
        for change in changes:
            if change.event is not None:
                event = change.event
                log.info("event %s %s: %s", event.kind, event.severity, event.summary)
                self._track_active(change)
                queued = True
        if queued:  # most runs change nothing: don't wake every sink worker for them
            self.dispatcher.wake()

    def _restore_active(self) -> None:
        """Alerts still firing after a restart or reload show as active right away."""
        if self.telemetry is None:
            return
        sizes = {spec.config.name: len(spec.config.targets or []) for spec in self.cfg.checks}
        for (check, target, rule), alert in self.book.firing():
            shown = f"{sizes.get(check, 0)} targets" if target == "*" else target
            severity = alert.severity or "minor"
            self._severity_of[(check, shown, rule)] = severity
            self._active[(check, shown, severity)] += 1
            self.telemetry.set_alert_active(check, shown, severity, True)

    def _track_active(self, change: Change) -> None:
        """``firstwatch.alert.active`` per (check, target, severity): 1 while any rule fires there."""
        if self.telemetry is None or change.kind not in ("firing", "changed", "resolved"):
            return
        key = (change.check, change.target, change.rule)
        old = self._severity_of.pop(key, None)
        touched = set()
        if old is not None:
            self._active[(change.check, change.target, old)] -= 1
            touched.add(old)
        if change.kind != "resolved" and change.severity:
            self._severity_of[key] = change.severity
            self._active[(change.check, change.target, change.severity)] += 1
            touched.add(change.severity)
        for severity in touched:
            count = self._active[(change.check, change.target, severity)]
            self.telemetry.set_alert_active(change.check, change.target, severity, count > 0)

    def agent_event(self, severity: str, summary: str, only: str | None = None) -> None:
        """The agent's own news, as an ``agent`` event to every sink that takes it (or ``only``)."""
        event = Event(
            kind="agent", severity=severity, summary=summary, agent=self.cfg.agent_name, labels=self.cfg.labels
        )
        if only is None:
            log.warning("agent event %s: %s", severity, summary)
        try:
            self.recorder.agent_event(event, only=only)
        except sqlite3.Error as exc:
            log.error("state database write failed: %s", exc)
        self.dispatcher.wake()

    def _delivered(self, sink: str, event: Event) -> None:
        if self.telemetry is not None:
            self.telemetry.event_sent(sink)
        try:
            self.recorder.delivered(sink, event)
        except sqlite3.Error as exc:
            log.error("state database write failed: %s", exc)

    # --- what the endpoint and the watchdog ask ---------------------------------------------------

    def healthy(self, slack: float = 30.0) -> tuple[bool, str]:
        """Progress, not just liveness: the scheduler task runs and is not behind its schedule."""
        if self.scheduler is None or not self._tasks:
            return False, "not started"
        if self._tasks[0].done():
            return False, "scheduler stopped"
        behind = self.scheduler.behind()
        if behind > slack:
            return False, f"scheduler is {behind:.0f}s behind"
        return True, "ok"

    def snapshot(self, started_at: float) -> dict[str, Any]:
        open_incidents = self.store.incidents(open_only=True)
        members: dict[str, list[dict[str, Any]]] = {}
        firing: dict[tuple[str, str], list[dict[str, str]]] = {}
        for (name, member, rule), alert in self.book.firing():
            firing.setdefault((name, member), []).append({"rule": rule, "severity": alert.severity or ""})
        up = down = 0
        checks = []
        for spec, check in self.checks:
            rows = []
            for target in check.targets():
                r = self.last.get((spec.config.name, target))
                up += bool(r and r.ok)
                down += bool(r and not r.ok)
                rows.append(
                    {
                        "target": target,
                        "up": None if r is None else r.ok,
                        "last_run": iso_time(r.started_at) if r else None,
                        "duration_s": round(r.duration_s, 6) if r else None,
                        "error": r.error if r else None,
                        "values": dict(r.values) if r else {},
                        "firing": firing.get((spec.config.name, target), [])
                        + firing.get((spec.config.name, f"{len(spec.config.targets or [])} targets"), []),
                    }
                )
            members[spec.config.name] = rows
            checks.append(
                {
                    "name": spec.config.name,
                    "type": spec.config.type,
                    "interval_s": spec.config.interval,
                    "members": rows,
                }
            )
        incidents = []
        for inc in sorted(open_incidents, key=lambda i: (-rank(i["severity"]), i["fired_at"])):
            timeline = [
                {"time": iso_time(e.time), "kind": e.kind, "text": e.text, "author": e.author}
                for e in self.store.entries(incident=inc["id"])
                if e.kind != "delivered"
            ]
            incidents.append(
                {
                    "id": inc["id"],
                    "summary": inc["summary"],
                    "severity": inc["severity"],
                    "check": inc["check_name"],
                    "target": inc["target"],
                    "started_at": iso_time(inc["started_at"]),
                    "fired_at": iso_time(inc["fired_at"]),
                    "acked_by": inc["acked_by"],
                    "acked_at": iso_time(inc["acked_at"]) if inc["acked_at"] else None,
                    "timeline": timeline[-50:],
                }
            )
        return {
            "agent": {
                "name": self.cfg.agent_name,
                "version": __version__,
                "started_at": iso_time(started_at),
                "uptime_s": round(time.time() - started_at, 3),
                "labels": dict(self.cfg.labels),
            },
            "refresh_s": 10,
            "summary": {
                "checks": len(self.checks),
                "targets": sum(len(rows) for rows in members.values()),
                "up": up,
                "down": down,
                "open_incidents": len(incidents),
                "worst": worst([i["severity"] for i in incidents]),
            },
            "incidents": incidents,
            "checks": checks,
            "severities": list(SEVERITIES),
        }
