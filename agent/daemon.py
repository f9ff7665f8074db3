"""``firstwatch run``: wire config, scheduler, probes, rules, state and sinks, until a signal.

Probes measure, rules judge, the state machine debounces, sinks deliver; this module only
connects them. Logs go to stderr: one line when each target is first seen and whenever it goes
up or down, so the journal tells the story without drowning it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
import time
import zlib

from agent.alerts import AlertBook, Change
from agent.config import AgentConfig, CheckSpec, load_config
from agent.dispatch import Dispatcher
from agent.events import Event
from agent.outbox import Outbox
from agent.output import describe_values
from agent.probe_runner import SharedResources, run_probe
from agent.recorder import Recorder
from agent.scheduler import Job, Scheduler
from agent.store import Store, StoreError
from agent.systemd_notify import Notifier
from agent.units import format_duration
from agent.yaml_source import ConfigError
from checks.base import Check

log = logging.getLogger("firstwatch")

EX_CONFIG = 78
EX_CANTCREAT = 73


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether check ``name`` belongs to shard K of N (stable across agents and restarts)."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(name.encode()) % n == k - 1


class Runtime:
    """Everything one loaded config runs: checks, alert state, sinks."""

    def __init__(self, cfg: AgentConfig, store: Store, shard: tuple[int, int] | None = None) -> None:
        self.cfg = cfg
        self.resources = SharedResources(cfg.agent_name)
        self.book = AlertBook(cfg.agent_name, cfg.labels)
        sinks = [s.build() for s in cfg.sinks]
        self.outbox = Outbox(store, sinks)
        self.recorder = Recorder(store, self.book, self.outbox)
        self.dispatcher = Dispatcher(sinks, self.outbox, on_delivered=self._delivered, on_agent_event=self.agent_event)
        self.checks = [(spec, spec.build()) for spec in cfg.checks if in_shard(spec.config.name, shard)]
        self._last_ok: dict[tuple[str, str], bool] = {}

    def restore(self) -> None:
        """Bring back alert state from before a restart (see ``agent.recorder``)."""
        self.publish(self.recorder.restore([spec for spec, _ in self.checks], self.cfg.outage_tolerance))

    def publish(self, changes: list[Change]) -> None:
        try:
            self.recorder.record(changes)
        except sqlite3.Error as exc:  # a full disk must not stop alerting: deliver, and say so
            log.error("state database write failed (timeline incomplete): %s", exc)
        for change in changes:
            if change.event is not None:
                event = change.event
                log.info("event %s %s: %s", event.kind, event.severity, event.summary)
        self.dispatcher.wake()

    def agent_event(self, severity: str, summary: str) -> None:
        """The agent's own trouble, as an ``agent`` event to every sink that takes it."""
        event = Event(
            kind="agent", severity=severity, summary=summary, agent=self.cfg.agent_name, labels=self.cfg.labels
        )
        log.warning("agent event %s: %s", severity, summary)
        try:
            self.recorder.agent_event(event)
        except sqlite3.Error as exc:
            log.error("state database write failed: %s", exc)
        self.dispatcher.wake()

    def _delivered(self, sink: str, event: Event) -> None:
        try:
            self.recorder.delivered(sink, event)
        except sqlite3.Error as exc:
            log.error("state database write failed: %s", exc)

    def jobs(self) -> list[Job]:
        out = []
        for spec, check in self.checks:
            for target in check.targets():
                out.append(Job(f"{spec.config.name} {target}", spec.config.interval, self._runner(spec, check, target)))
        return out

    def _runner(self, spec: CheckSpec, check: Check, target: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            result = await run_probe(check, target, self.resources)
            key = (result.check, target)
            if self._last_ok.get(key) != result.ok:
                self._last_ok[key] = result.ok
                took = format_duration(result.duration_s)
                if result.ok:
                    log.info("%s %s: up: %s", result.check, target, describe_values(check.VALUES, result.values))
                else:
                    log.warning("%s %s: down (%s) in %s", result.check, target, result.error, took)
            self.publish(self.book.observe(spec, result))

        return run


async def _housekeeping(runtime: Runtime, every: float = 1.0) -> None:
    """Reminders due (sinks with ``repeat``), the liveness mark for restarts, old outbox rows."""
    ticks = 0
    while True:
        await asyncio.sleep(every)
        ticks += 1
        try:
            if runtime.recorder.remind(time.time()):
                runtime.dispatcher.wake()
            if ticks % 10 == 0:
                runtime.recorder.heartbeat()
            if ticks % 3600 == 0:
                runtime.outbox.prune(time.time() - 7 * 86400)
        except sqlite3.Error as exc:
            log.error("state database write failed: %s", exc)


async def serve(cfg: AgentConfig, shard: tuple[int, int] | None, stop: asyncio.Event, store: Store) -> None:
    runtime = Runtime(cfg, store, shard)
    runtime.outbox.prune(time.time() - 7 * 86400)
    runtime.dispatcher.start()
    runtime.restore()
    runtime.dispatcher.wake()
    beat = asyncio.create_task(_housekeeping(runtime), name="housekeeping")
    jobs = runtime.jobs()
    scheduler = Scheduler(jobs)
    sched_task = asyncio.create_task(scheduler.run(), name="scheduler")
    notifier = Notifier()
    notifier.notify("READY=1", f"STATUS=watching {len(jobs)} targets of {len(runtime.checks)} checks")
    log.info(
        "firstwatch started: agent %s, %d checks (%d targets), %d sinks",
        cfg.agent_name,
        len(runtime.checks),
        len(jobs),
        len(runtime.dispatcher.sinks),
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        notifier.notify("STOPPING=1")
        sched_task.cancel()
        beat.cancel()
        await asyncio.gather(sched_task, beat, return_exceptions=True)
        await runtime.dispatcher.close(timeout=5.0)
        await runtime.resources.close()
        log.info("stopped after %d runs", scheduler.stats.runs)
        notifier.close()


def run(config_path: str, shard: tuple[int, int] | None) -> int:
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"firstwatch: {len(exc.issues)} config error(s); not starting", file=sys.stderr)
        return EX_CONFIG

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: log.warning("SIGHUP: config reload is not supported yet; restart to apply changes")
        )
        await serve(cfg, shard, stop, store)

    try:
        store = Store(cfg.state_dir)
    except StoreError as exc:
        print(f"firstwatch: {exc}", file=sys.stderr)
        return EX_CANTCREAT
    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0
