"""Deliver the outbox: one worker per sink, in order, at least once, never blocking probing.

Each worker takes its sink's oldest pending row (``agent.delivery.outbox``), sends it under a safety
deadline, and marks it delivered; a failure (``DeliveryError``, a timeout, anything unexpected)
keeps the row at the head and retries it with capped exponential backoff and jitter, so a sink
that is down for an hour gets everything, in order, once it is back. A
``PermanentDeliveryError`` (the target rejected the event itself) drops that row, counted.

Escalation: a row for a sink with ``delay`` goes out only if its incident is still open and
unacknowledged when the delay has passed (and a later event only if the firing went out).

The agent's own trouble is reported once per episode, not once per event: one ``agent`` event
when a sink starts failing (with the error), one when it recovers (with how many events waited),
and one per burst of drops. Sinks never slow each other: each has its own worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent.core.errors import PermanentDeliveryError
from agent.core.events import Event
from agent.delivery.outbox import Outbox, Row
from agent.delivery.sinks.base import Sink

log = logging.getLogger("firstwatch.dispatch")

AgentEvent = Callable[[str, str], None]  # (severity, summary)
T = TypeVar("T")
DbRunner = Callable[..., Awaitable[Any]]  # StoreWriter.call: runs a function on the database thread


class Dispatcher:
    def __init__(
        self,
        sinks: list[Sink],
        outbox: Outbox,
        *,
        on_delivered: Callable[[str, Event], None] | None = None,
        on_agent_event: AgentEvent | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
        on_problem: Callable[[str, str, str, str, bool], None] | None = None,
        db: DbRunner | None = None,
        backoff: float = 0.5,
        max_backoff: float = 300.0,
        deadline: float = 60.0,
    ) -> None:
        self.sinks = sinks
        self.outbox = outbox
        self.on_delivered = on_delivered
        self.on_agent_event = on_agent_event
        self.on_dropped = on_dropped
        self.on_problem = on_problem  # (problem, subject, severity, summary, cleared)
        self._db_runner = db
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.deadline = deadline
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.failing: dict[str, float] = {}  # sink -> since when
        self._wake = {s.name: asyncio.Event() for s in sinks}
        self._workers: list[asyncio.Task[None]] = []
        self._last_drop_report: dict[str, float] = {}
        self._drop_log: dict[str, tuple[float, int]] = {}  # sink -> (last logged, drops since)
        self._reported_overflow: Counter[str] = Counter()

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Outbox reads and writes: on the database thread in the daemon, inline in tests."""
        if self._db_runner is None:
            return fn(*args)
        result: T = await self._db_runner(fn, *args)
        return result

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(s), name=f"sink:{s.name}") for s in self.sinks]

    def wake(self) -> None:
        """New rows were committed: let idle workers look."""
        for ev in self._wake.values():
            ev.set()
        self._report_overflow()

    async def _sleep(self, sink: str, until: float | None) -> None:
        wake = self._wake[sink]
        wake.clear()
        timeout = 30.0 if until is None else max(0.0, min(30.0, until - time.time()))
        try:
            async with asyncio.timeout(timeout):
                await wake.wait()
        except TimeoutError:
            pass

    async def _work(self, sink: Sink) -> None:
        while True:
            try:
                await self._step(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is locked, full or failing: rows wait, retry
                log.error("sink %s: cannot read the outbox: %s; retrying", sink.name, exc)
                await asyncio.sleep(1.0)

    async def _step(self, sink: Sink) -> None:
        now = time.time()
        row = await self._db(self.outbox.head, sink.name, now)
        if row is None:
            await self._sleep(sink.name, await self._db(self.outbox.next_wake, sink.name))
            return
        # a retry is never further away than the longest backoff: a clock stepped back by an
        # hour must not hold a sink's queue for an hour
        if now < row.retry_at < now + self.max_backoff * 1.5:
            await self._sleep(sink.name, row.retry_at)
            return
        if sink.config.delay and not await self._db(self.outbox.escalation_allowed, row):
            await self._db(self.outbox.finish, row, "skipped", "incident resolved or acknowledged before the delay")
            return
        await self._deliver(sink, row)

    async def _deliver(self, sink: Sink, row: Row) -> None:
        event = row.event()
        try:
            async with asyncio.timeout(self.deadline):
                await sink.send(event)
        except asyncio.CancelledError:
            raise
        except PermanentDeliveryError as exc:
            await self._db(self.outbox.finish, row, "dropped", str(exc))
            self._dropped(sink.name, event, str(exc))
            return
        except Exception as exc:  # DeliveryError, a timeout, or a sink bug: retry, never lose it
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.deadline:g}s"
            delay = min(self.max_backoff, self.backoff * 2 ** min(row.attempts, 20)) * random.uniform(0.8, 1.2)
            await self._db(self.outbox.retry_later, row, time.time() + delay, reason)
            if sink.name not in self.failing:
                self.failing[sink.name] = time.time()
                log.error("sink %s failing: %s (retrying, events are kept)", sink.name, reason)
                summary = f"sink {sink.name} is failing: {reason}; events are kept and retried"
                self._problem("sink_failing", sink.name, "major", summary)
            return
        await self._mark_delivered(row)
        self.sent[sink.name] += 1
        if sink.name in self.failing:
            since = self.failing.pop(sink.name)
            waiting = self.outbox.pending[sink.name]
            log.warning("sink %s recovered after %.0fs", sink.name, time.time() - since)
            summary = f"sink {sink.name} recovered after {time.time() - since:.0f}s; {waiting} queued"
            self._problem("sink_failing", sink.name, "major", summary, cleared=True)
        if self.on_delivered is not None:
            self.on_delivered(sink.name, event)

    async def _mark_delivered(self, row: Row) -> None:
        """Mark a sent row delivered, retrying while the database cannot be written: the worker
        stays on it, so a full disk never makes it send the same event again and again."""
        delay = self.backoff
        while True:
            try:
                await self._db(self.outbox.finish, row, "delivered")
                return
            except Exception as exc:
                log.error("sink %s: delivered, but cannot mark it in the outbox: %s; retrying", row.sink, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dropped(self, sink: str, event: Event, why: str, count: int = 1) -> None:
        self.dropped[sink] += count
        if self.on_dropped is not None:
            self.on_dropped(sink, count)
        now = time.time()
        last, since = self._drop_log.get(sink, (-1e18, 0))
        if now - last >= 60:  # one line a minute per sink, however many drop: a flood must not fill the disk
            self._drop_log[sink] = (now, 0)
            more = f"; {since} more dropped since the last message" if since else ""
            log.error("sink %s: %d event(s) dropped (%s)%s", sink, count, why, more)
        else:
            self._drop_log[sink] = (last, since + count)
        if now - self._last_drop_report.get(sink, 0.0) > 600 and event.kind != "agent":
            self._last_drop_report[sink] = now
            self._agent_event("major", f"sink {sink} dropped events ({why}); {self.dropped[sink]} dropped so far")

    def _report_overflow(self) -> None:
        for sink, total in self.outbox.overflow.items():
            new = total - self._reported_overflow[sink]
            if new > 0:
                self._reported_overflow[sink] = total
                self._dropped(sink, Event(kind="firing", severity="major", summary="", agent=""), "outbox full", new)

    def _agent_event(self, severity: str, summary: str) -> None:
        if self.on_agent_event is not None:
            self.on_agent_event(severity, summary)

    def _problem(self, problem: str, subject: str, severity: str, summary: str, *, cleared: bool = False) -> None:
        """A problem of the agent's own that has an end (a sink failing): raised once, and
        resolved when it clears, so Alertmanager and pagers can close it."""
        if self.on_problem is not None:
            self.on_problem(problem, subject, severity, summary, cleared)
        else:
            self._agent_event("minor" if cleared else severity, summary)

    async def close(self, timeout: float = 5.0) -> None:
        """Give workers ``timeout`` to finish what is due, then stop them and close sinks. What
        is not delivered stays in the outbox for the next start."""
        deadline = time.time() + timeout

        async def due() -> bool:
            for s in self.sinks:
                row = await self._db(self.outbox.head, s.name, time.time())
                if row is not None and row.retry_at <= time.time():
                    return True
            return False

        try:
            while time.time() < deadline and await due():  # noqa: ASYNC110 - a bounded drain poll at shutdown
                await asyncio.sleep(0.02)
        except Exception as exc:  # the database fails: what is not delivered stays for the next start
            log.error("shutdown: cannot read the outbox: %s", exc)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left = sum(self.outbox.pending.values())
        if left:
            log.warning("shutdown: %d events not yet delivered stay in the outbox for the next start", left)
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:
                log.warning("sink %s: close failed: %s", sink.name, exc)
