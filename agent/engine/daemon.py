"""``firstwatch run``: the process around a :class:`agent.engine.runtime.Runtime`.

Signals: SIGTERM/SIGINT stop cleanly within a few seconds (alert state and undelivered events
stay on disk); SIGHUP reloads: the new config is validated and a whole new runtime built first,
and only if that succeeds is it swapped in, alert state handed over through the store (so no
incident is re-fired or lost); a bad config keeps the old one running, logs every error and
raises an ``agent`` event. systemd: ``READY=1`` once checks are scheduled, ``WATCHDOG=1`` only
while the scheduler makes progress, ``STATUS=`` with a one-line summary, ``RELOADING=1``.
An optional heartbeat event lets an outside dead man's switch notice a silent agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from agent import __version__
from agent.config.load import AgentConfig, load_config
from agent.core.errors import ConfigError, StoreError
from agent.core.events import Event
from agent.core.fd_limit import raise_nofile_limit
from agent.engine import event_loop
from agent.engine.artifacts import artifacts_path
from agent.engine.runtime import Runtime
from agent.engine.systemd import Notifier
from agent.incidents.store import StateLock, Store, open_checked
from agent.incidents.writer import StoreWriter, Trouble
from agent.telemetry.cloudwatch import EmfWriter
from agent.telemetry.metrics import Telemetry
from agent.web.snapshot import Snapshot

log = logging.getLogger("firstwatch")

EX_CONFIG = 78
EX_CANTCREAT = 73


class Agent:
    def __init__(
        self, path: str, cfg: AgentConfig, store: Store, shard: tuple[int, int] | None, set_aside: str | None = None
    ) -> None:
        self.path = path
        self.cfg = cfg
        self.store = store
        self.shard = shard
        self.set_aside = set_aside  # why a corrupt database was replaced at start, if it was
        self.problems: dict[str, Event] = {}
        self.writer = StoreWriter(store, on_trouble=self._store_trouble, on_recovered=self._store_recovered)
        self.telemetry_cfg = cfg.telemetry  # fixed for the process: a reload does not rebuild exporters
        self.telemetry = Telemetry(cfg.telemetry, cfg.agent_name, cfg.labels, __version__)
        cw = cfg.telemetry.cloudwatch
        self.emf = EmfWriter(cw, cfg.agent_name, cfg.labels) if cw is not None else None
        self.runtime = self._runtime(cfg)
        self.notifier = Notifier()
        self.started_at = time.time()
        self.reloads = {"success": 0, "failure": 0}

    def _runtime(self, cfg: AgentConfig) -> Runtime:
        return Runtime(
            cfg, self.store, self.writer, self.shard, telemetry=self.telemetry, emf=self.emf, problems=self.problems
        )

    def _store_trouble(self, trouble: Trouble) -> None:
        self.runtime.store_trouble(trouble)
        self.notifier.notify(f"STATUS={self._status()}")

    def _store_recovered(self, trouble: Trouble) -> None:
        self.runtime.store_recovered(trouble)
        self.notifier.notify(f"STATUS={self._status()}")

    # --- status endpoint --------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        return await self.runtime.snapshot(self.started_at)

    def healthy(self) -> tuple[bool, str]:
        return self.runtime.healthy()

    def metrics(self) -> tuple[bytes, str] | None:
        if not self.telemetry_cfg.prometheus:
            return None
        return self.telemetry.prometheus_text()

    # --- lifecycle ----------------------------------------------------------------------------

    def _status(self) -> str:
        rt = self.runtime
        targets = sum(len(c.targets()) for _, c in rt.checks)
        firing = len(rt.book.firing())
        status = f"watching {targets} targets of {len(rt.checks)} checks; {firing} alerts firing"
        if self.writer.trouble is not None:
            status = f"STATE DATABASE NOT WRITABLE ({self.writer.trouble.error}); {status}"
        return status

    async def serve(self, signals: asyncio.Queue[str]) -> None:
        await self.runtime.start()
        if self.set_aside is not None:
            log.error("%s", self.set_aside)
            self.runtime.agent_event("major", self.set_aside)
        if self.emf is not None:
            await self.emf.start()
        event_loop.settle()  # the config and runtime live as long as the process: full collections skip them
        self.notifier.notify("READY=1", f"STATUS={self._status()}")
        log.info(
            "firstwatch %s started: agent %s, %d checks, %d sinks, state in %s, on %s",
            __version__,
            self.cfg.agent_name,
            len(self.runtime.checks),
            len(self.runtime.dispatcher.sinks),
            self.cfg.state_dir,
            event_loop.running(),  # not loop_factory() again: it would repeat its warnings
        )
        http = None
        if self.cfg.listen:
            from agent.web.api import start_http

            try:
                artifacts = artifacts_path(self.cfg.state_dir)  # /artifacts/NAME: screenshots, read-only
                http = await start_http(self.cfg.listen, self, state_dir=self.cfg.state_dir, artifacts_dir=artifacts)
            except OSError as exc:  # the agent still probes and alerts; say why the page is missing
                log.error("cannot serve the status endpoint on %s: %s", self.cfg.listen, exc)
                summary = f"status endpoint not available on {self.cfg.listen}: {exc}"
                self.runtime.problem("status_endpoint", self.cfg.listen, "medium", summary)
        side = [asyncio.create_task(self._watchdog(), name="watchdog")]
        if self.cfg.heartbeat is not None:
            side.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        try:
            while True:
                sig = await signals.get()
                if sig == "reload":
                    await self.reload()
                else:
                    log.info("%s: stopping", sig)
                    break
        finally:
            self.notifier.notify("STOPPING=1")
            if http is not None:
                await http.close()
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            runs = self.runtime.scheduler.stats.runs if self.runtime.scheduler else 0
            await self.runtime.stop(timeout=3.0)
            await self.writer.close(timeout=2.0)
            if self.emf is not None:
                await self.emf.close()
            await asyncio.to_thread(self.telemetry.shutdown, 2.0)
            log.info("stopped after %d runs", runs)
            self.notifier.close()

    async def reload(self) -> None:
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            cfg = load_config(self.path)
            if cfg.state_dir != self.cfg.state_dir or cfg.listen != self.cfg.listen:
                raise ConfigError([])  # reported below with its own message
            new = self._runtime(cfg)
        except ConfigError as exc:
            self.reloads["failure"] += 1
            self.telemetry.config_reload(False)
            if exc.issues:
                for issue in exc.issues:
                    log.error("reload: %s", issue)
                why = f"{len(exc.issues)} config error(s), first: {exc.issues[0]}"
            else:
                why = "agent.state_dir and agent.listen cannot change on reload; restart the agent for that"
                log.error("reload: %s", why)
            summary = f"config reload failed, still running the previous config: {why}"
            self.runtime.problem("config_reload", self.path, "major", summary)
            self.notifier.notify("READY=1", f"STATUS=reload failed; {self._status()}")
            return
        except Exception as exc:  # building the new runtime failed: keep the old one
            self.reloads["failure"] += 1
            self.telemetry.config_reload(False)
            log.exception("reload: building the new configuration failed")
            summary = f"config reload failed, still running the previous config: {exc}"
            self.runtime.problem("config_reload", self.path, "major", summary)
            self.notifier.notify("READY=1", f"STATUS=reload failed; {self._status()}")
            return
        old = self.runtime
        await old.stop(timeout=2.0)  # the new runtime takes its alert state and schedule in memory
        if cfg.telemetry != self.telemetry_cfg:
            log.warning("reload: telemetry settings changed; they take effect at the next restart")
        self.runtime, self.cfg = new, cfg
        await new.start(previous=old)
        del old
        event_loop.thaw()  # the old runtime's objects were frozen at start: collectable again
        event_loop.settle()
        new.problem("config_reload", self.path, "major", f"config reloaded from {self.path}", cleared=True)
        self.reloads["success"] += 1
        self.telemetry.config_reload(True)
        self.telemetry.retain_checks([spec.config.name for spec, _ in new.checks])
        log.info("reloaded %s: %d checks, %d sinks", self.path, len(new.checks), len(new.dispatcher.sinks))
        self.notifier.notify("READY=1", f"STATUS={self._status()}")

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog only while the scheduler makes progress: a stalled loop or a
        stuck schedule stops the pings and systemd restarts the agent."""
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec or not self.notifier.enabled:
            return
        if os.environ.get("WATCHDOG_PID") not in (None, "", str(os.getpid())):
            return
        every = usec / 1e6 / 3
        while True:
            ok, why = self.runtime.healthy(slack=max(5.0, 2 * every), store=False)
            if ok:
                self.notifier.notify("WATCHDOG=1", f"STATUS={self._status()}")
            else:
                log.error("watchdog: not pinging systemd: %s", why)
            await asyncio.sleep(every)

    async def _heartbeat(self) -> None:
        hb = self.cfg.heartbeat
        assert hb is not None
        while True:
            await asyncio.sleep(hb.every)
            ok, why = self.runtime.healthy()
            if not ok:  # a stuck agent goes silent: that is what the dead man's switch is for
                log.error("heartbeat withheld: %s", why)
                continue
            for sink in hb.sinks:
                self.runtime.agent_event("minor", f"heartbeat: {self._status()}", only=sink)


def run(config_path: str, shard: tuple[int, int] | None) -> int:
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"firstwatch: {len(exc.issues)} config error(s); not starting", file=sys.stderr)
        return EX_CONFIG
    before, after = raise_nofile_limit()  # descriptors for probes: a busy status port must not starve them
    lock = StateLock(cfg.state_dir, shard)
    try:
        lock.acquire()
        owner = f"{shard[0]}/{shard[1]}" if shard else ""
        # the daemon's calls run on a database thread and are retried: wait briefly for a lock
        store, set_aside = open_checked(cfg.state_dir, owner=owner, busy_timeout=2.0)
    except (StoreError, OSError) as exc:
        print(f"firstwatch: {exc}", file=sys.stderr)
        lock.release()
        return EX_CANTCREAT

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signals: asyncio.Queue[str] = asyncio.Queue()
        for sig, what in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT"), (signal.SIGHUP, "reload")):
            loop.add_signal_handler(sig, signals.put_nowait, what)
        if after > before:
            log.info("open-file limit raised from %d to %d", before, after)
        await Agent(config_path, cfg, store, shard, set_aside).serve(signals)

    try:
        event_loop.run(main())
    finally:
        store.close()
        lock.release()
    return 0
