"""Everything one loaded config runs: checks on a schedule, alert state, outbox and sinks.

Probes measure, rules judge, the state machine debounces, sinks deliver; a :class:`Runtime` only
connects them, and can be built completely before it starts, so a reload swaps a whole new one
in or keeps the old one (``agent.engine.daemon``). It also answers what the HTTP endpoint and the
watchdog ask: a status snapshot and whether the scheduler is making progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from agent.alerting.book import AlertBook, Change
from agent.config.load import AgentConfig, CheckSpec
from agent.core.events import Event, fingerprint, iso_time, new_event_id
from agent.core.safe_text import printable
from agent.core.units import format_duration
from agent.delivery.dispatch import Dispatcher
from agent.delivery.outbox import Outbox
from agent.delivery.sinks.base import Sink
from agent.engine.active_alerts import ActiveAlerts
from agent.engine.artifacts import Artifacts
from agent.engine.history_recorder import HistoryRecorder
from agent.engine.probe_runner import SharedResources, run_probe
from agent.engine.quiet_time import POLL_SECONDS, QuietTime
from agent.engine.recorder import Recorder
from agent.engine.scheduler import Job, Scheduler
from agent.engine.slo_watch import SloWatch, seed_from_history
from agent.engine.snapshot import build_snapshot
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter, Trouble
from agent.telemetry.cloudwatch import EmfWriter
from agent.telemetry.metrics import Telemetry
from agent.web.snapshot import Snapshot
from checks.base import Check, Result, describe_values
from checks.browser import BrowserCheck

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
        writer: StoreWriter,
        shard: tuple[int, int] | None = None,
        telemetry: Telemetry | None = None,
        emf: EmfWriter | None = None,
        problems: dict[str, Event] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.writer = writer
        self.shard = shard
        self.telemetry = telemetry
        self.emf = emf
        # the agent's own open problems (fingerprint -> the event that raised it); shared by the
        # runtimes of one process, so a problem raised before a reload is resolved after it
        self.problems: dict[str, Event] = problems if problems is not None else {}
        self.active = ActiveAlerts(telemetry)  # firstwatch.alert.active
        self.resources = SharedResources(cfg.agent_name)
        self.artifacts = Artifacts(cfg.state_dir)  # screenshots of failing runs, kept to a bound
        self.resources.artifacts_dir = self.artifacts.directory
        self.resources.browser_settings = cfg.browser  # agent.browser: the browser checks' Chromium
        self.quiet = QuietTime(cfg.maintenance)  # maintenance windows and silences
        self.book = AlertBook(
            cfg.agent_name, cfg.labels, clock_offset=lambda: time.time() - time.monotonic(), quiet=self.quiet.quiet_for
        )
        sinks = [s.build() for s in cfg.sinks]
        if telemetry is not None:  # events.sent and events.dropped exported at 0 per sink from the start
            telemetry.register_sinks([s.name for s in sinks])
        agent_url = f"http://{cfg.listen}/" if cfg.listen else None
        for sink in sinks:
            if hasattr(sink, "agent_url"):
                sink.agent_url = agent_url  # links from alerts back to this agent's status page
        self.outbox = Outbox(store, sinks)
        self.recorder = Recorder(store, self.book, self.outbox)
        self.dispatcher = Dispatcher(
            sinks,
            self.outbox,
            on_delivered=self._delivered,
            on_agent_event=self.agent_event,
            on_dropped=telemetry.event_dropped if telemetry else None,
            on_problem=self.problem,
            db=writer.call,
        )
        if telemetry is not None:
            telemetry.observe_outbox(lambda: dict(self.outbox.pending))
        self.checks = [(spec, spec.build()) for spec in cfg.checks if in_shard(spec.config.name, shard)]
        self.slos = SloWatch(self.checks, self.book)  # SLO windows; burn alerts judged per run
        self.history = HistoryRecorder(writer, retention=self.slos.longest)  # every run, bucketed
        if telemetry is not None:  # firstwatch.slo.*: only with SLOs
            telemetry.observe_slos(self.slos.metric_readings if self.slos.trackers else None)
        for spec, _ in self.checks:
            for parent in spec.policy.depends_on:
                if not in_shard(parent, shard):  # judged by another agent: unknown here
                    log.warning(
                        "%s depends on %s, which another shard runs: %s pages on its own when it fails",
                        spec.config.name, parent, spec.config.name,
                    )  # fmt: skip
        if telemetry is not None:  # firstwatch.browser.restarts: only once a runtime has browser checks
            browsers = any(isinstance(check, BrowserCheck) for _, check in self.checks)
            telemetry.observe_browser_restarts(self.resources.browser_restarts if browsers else None)
        self.scheduler: Scheduler | None = None
        self.last: dict[tuple[str, str], Result] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unavailable: set[tuple[str, str]] = set()  # (check, target) our own tool cannot probe
        self._direct: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return [
            Job(f"{spec.config.name} {target}", spec.config.interval, self._runner(spec, check, target))
            for spec, check in self.checks
            for target in check.targets()
        ]

    async def start(self, previous: Runtime | None = None) -> None:
        """Start probing and delivering. ``previous`` (a reload) hands over its alert state and
        its schedule in memory; otherwise both come from the store (a restart)."""
        self.writer.on_rollback = self.outbox.mark_stale
        shard = self.shard
        if previous is not None:
            saved = {k: d for k in previous.book.alerts if (d := previous.book.snapshot(k)) is not None}
            keyed = {json.dumps(list(k)): d for k, d in saved.items()}
            gap = 0.0
            self.quiet.silences = previous.quiet.silences
        else:
            try:
                await self.writer.call(self.outbox.prune, time.time() - 7 * 86400)
            except Exception as exc:
                log.error("state database: cannot prune old outbox rows: %s", exc)
            keyed, gap = await self._saved_state()
            await self.quiet.refresh(
                self.writer, self.store
            )  # before the first run: a restart in a silence pages nobody
        orphans, forget = self.recorder.restore(
            list(self.cfg.checks), keyed, gap, self.cfg.outage_tolerance, mine=lambda name: in_shard(name, shard)
        )
        if forget:
            self.writer.submit(self.recorder.forget_write(forget))
        self.publish(orphans)
        self.active.restore(self.book.firing(), {s.config.name: len(s.config.targets or []) for s in self.cfg.checks})
        for event in self.problems.values():
            if event.rule == "sink_failing" and event.target in {s.name for s in self.dispatcher.sinks}:
                self.dispatcher.failing.setdefault(event.target, event.time)
        self.dispatcher.start()
        resync = [s.name for s in self.dispatcher.sinks if getattr(s, "RESYNC_ON_START", False)]
        if resync:  # new sink objects (a restart or a reload) know nothing of the open incidents
            self._remind(resync)
        await seed_from_history(self.slos, self.writer, previous.history.pending() if previous else [])
        tel = self.telemetry
        self.scheduler = Scheduler(
            self.jobs(),
            on_run=tel.scheduler_run if tel else None,
            on_missed=tel.scheduler_missed if tel else None,
            previous=previous.scheduler if previous is not None else None,
        )
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self.artifacts.start(), name="artifacts"),
        ]

    async def _saved_state(self, patience: float = 30.0) -> tuple[dict[str, dict[str, Any]], float]:
        """The alert state saved before a restart. A database locked by another process is
        waited for (``patience`` seconds, saying so); past that the agent starts without it
        rather than not monitoring at all."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return await self.writer.call(self.recorder.saved_state)
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("state database: cannot read the saved alert state (%s); starting without it", exc)
                    return {}, float("inf")
                log.warning("state database: cannot read the saved alert state yet (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop probing, save alert state, give sinks ``timeout`` to deliver what is due."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.history.stop()  # the open buckets too: the next runtime adds to them
        self.flush_state()
        await self.writer.drain(min(timeout, 2.0))
        await self.dispatcher.close(timeout=timeout)
        await self.resources.close()

    def flush_state(self) -> None:
        """Save every alert's state now (before a reload hands over to a new runtime)."""
        self.book.dirty.update(self.book.alerts)
        self.publish([])

    def _runner(self, spec: CheckSpec, check: Check, target: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            mono = time.monotonic()
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
            self.history.record(result)
            self.publish(self.book.observe(spec, result, mono, self.slos.judge(spec, result, mono)))
            unavailable = result.error_kind == "agent"  # our own tool failed, not the target
            if unavailable or key in self._unavailable:
                (self._unavailable.add if unavailable else self._unavailable.discard)(key)
                what = f"{result.check} {target}"
                text = f"{what}: cannot probe: {result.error}" if unavailable else f"{what}: probing again"
                self.problem("probe_unavailable", what, "major", text, cleared=not unavailable)
            if result.artifact is not None:  # after the run's changes: its incident may have just opened
                await self.artifacts.record(result, self.book, self.writer)

        return run

    async def _housekeeping(self, every: float = 1.0) -> None:
        """Reminders due (sinks with ``repeat``), silences made from the CLI, the liveness mark
        for restarts, old outbox rows."""
        ticks = 0
        repeats = any(s.config.repeat for s in self.dispatcher.sinks)
        while True:
            await asyncio.sleep(every)
            ticks += 1
            self.history.tick(ticks)
            if ticks % POLL_SECONDS == 0:
                await self.quiet.refresh(self.writer, self.store)
            if repeats and not self.writer.trouble:
                self._remind(None)
            if ticks % 10 == 0:
                self.writer.submit(_alive)
            if ticks % 3600 == 0:
                try:
                    await self.writer.call(self.outbox.prune, time.time() - 7 * 86400)
                except Exception as exc:
                    log.error("state database: cannot prune old outbox rows: %s", exc)

    def _remind(self, resync: list[str] | None) -> None:
        counted: list[int] = []

        def after() -> None:
            if counted and counted[-1]:
                self.dispatcher.wake()

        self.writer.submit(self.recorder.remind_write(time.time(), resync, counted), after)

    # --- events -------------------------------------------------------------------------------

    def publish(self, changes: list[Change]) -> None:
        """Record ``changes`` and queue their events: durable first (the store writer commits
        them in order, retrying while the database cannot be written), then delivered."""
        queued = False
        opened = {c.opened.id for c in changes if c.opened is not None}
        for change in changes:
            if change.event is not None:
                event = change.event
                log.info("event %s %s: %s", event.kind, event.severity, printable(event.summary))
                self.active.track(change)
                queued = True
            elif change.kind in ("affected", "silenced") and change.incident not in opened:  # once per hold
                log.info("%s", printable(change.text))
        write = self.recorder.persist(changes)
        if write is not None:
            # most runs change nothing: don't wake every sink worker for them
            self.writer.submit(write, self.dispatcher.wake if queued else None)

    def agent_event(self, severity: str, summary: str, only: str | None = None) -> None:
        """The agent's own news, as an ``agent`` event to every sink that takes it (or ``only``)."""
        event = Event(
            kind="agent", severity=severity, summary=summary, agent=self.cfg.agent_name, labels=self.cfg.labels
        )
        if only is None:
            log.warning("agent event %s: %s", severity, summary)
        self.writer.submit(self.recorder.agent_event(event, only=only), self.dispatcher.wake)

    def _raise(self, problem: str, subject: str, severity: str, summary: str) -> Event | None:
        """Open agent problem ``problem`` about ``subject``; None if it is open already."""
        fp = fingerprint(self.cfg.agent_name, "agent", subject, problem)
        if fp in self.problems:
            return None
        event = self.problems[fp] = Event(
            kind="agent", severity=severity, summary=summary, agent=self.cfg.agent_name, fingerprint=fp,
            target=subject, type="agent", rule=problem, labels=self.cfg.labels,
        )  # fmt: skip
        log.warning("agent event %s: %s", severity, summary)
        return event

    def problem(self, problem: str, subject: str, severity: str, summary: str, cleared: bool = False) -> None:
        """A problem of the agent's own with an identity (``problem`` about ``subject``: a sink
        failing, the state database, a reload): an ``agent`` event when it starts, and a
        ``resolved`` event with the same fingerprint when it clears, so Alertmanager and pagers
        close it. Raising an open problem again, or clearing one that is not open, does nothing."""
        if not cleared:
            event = self._raise(problem, subject, severity, summary)
        else:
            raised = self.problems.pop(fingerprint(self.cfg.agent_name, "agent", subject, problem), None)
            if raised is not None:
                log.warning("agent problem cleared: %s", summary)
            event = raised and replace(
                raised, kind="resolved", summary=summary, started_at=raised.time, time=time.time(), id=new_event_id()
            )
        if event is not None:
            self.writer.submit(self.recorder.agent_event(event), self.dispatcher.wake)

    def store_trouble(self, trouble: Trouble) -> None:
        """The state database cannot be written: tell the sinks that need no database now (the
        outbox cannot take the news), and the others once it can (:meth:`store_recovered`)."""
        summary = (
            f"state database cannot be written: {trouble.error}; {trouble.waiting} change(s) kept in memory and"
            " retried; probing goes on"
        )
        event = self._raise("store_write", "state", "critical", summary)
        if event is None:
            return
        for sink in self.dispatcher.sinks:
            if sink.DIRECT and sink.config.accepts(event):
                task = asyncio.create_task(_send_direct(sink, event), name=f"direct:{sink.name}")
                self._direct.add(task)
                task.add_done_callback(self._direct.discard)

    def store_recovered(self, trouble: Trouble) -> None:
        raised = self.problems.get(fingerprint(self.cfg.agent_name, "agent", "state", "store_write"))
        if raised is None:
            return
        direct = frozenset(s.name for s in self.dispatcher.sinks if s.DIRECT)
        self.writer.submit(self.recorder.agent_event(raised, skip=direct))  # the others hear it now
        took = time.monotonic() - trouble.since_mono
        summary = f"state database writable again after {format_duration(took)}; {trouble.waiting} write(s) committed"
        self.problem("store_write", "state", "critical", summary, cleared=True)

    def _delivered(self, sink: str, event: Event) -> None:
        if self.telemetry is not None:
            self.telemetry.event_sent(sink)
        write = self.recorder.delivered(sink, event)
        if write is not None:
            self.writer.submit(write)

    # --- what the endpoint and the watchdog ask ---------------------------------------------------

    def healthy(self, slack: float = 30.0, *, store: bool = True) -> tuple[bool, str]:
        """Progress, not just liveness: the scheduler task runs and is not behind its schedule,
        and (with ``store``) the state database can be written. The watchdog asks without
        ``store``: a restart would lose the changes waiting in memory, and fix nothing."""
        trouble = self.writer.trouble
        if store and trouble is not None:
            return False, (
                f"state database cannot be written since {iso_time(trouble.since)}: {trouble.error};"
                f" {self.writer.waiting} write(s) waiting"
            )
        if self.scheduler is None or not self._tasks:
            return False, "not started"
        if self._tasks[0].done():
            return False, "scheduler stopped"
        behind = self.scheduler.behind()
        if behind > slack:
            return False, f"scheduler is {behind:.0f}s behind"
        return True, "ok"

    async def snapshot(self, started_at: float) -> Snapshot:
        """The status document (``/status``, the status page, ``firstwatch status``)."""
        return await build_snapshot(self, started_at)


def _alive(store: Store) -> None:
    store.set_meta("last_alive", repr(time.time()))


async def _send_direct(sink: Sink, event: Event) -> None:
    try:
        async with asyncio.timeout(10):
            await sink.send(event)
    except Exception as exc:
        log.error("sink %s: cannot deliver the agent's news directly: %s", sink.name, exc)
