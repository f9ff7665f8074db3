"""Hand events to sinks without ever blocking probing: one bounded queue and worker per sink.

``publish`` is synchronous and never waits: it routes the event (``SinkConfig.accepts``) and puts
it on each interested sink's queue. A full queue drops the event, counts it per sink, and logs it
(rate-limited) rather than growing memory or stalling the scheduler. A failing ``send`` is retried
with capped exponential backoff a few times, then counted as dropped.

This is the in-memory delivery path; the durable outbox (SQLite, delivery across restarts) is a
later milestone and will sit in front of these same workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from agent.events import Event
from agent.sinks.base import Sink

log = logging.getLogger("firstwatch.dispatch")


class Dispatcher:
    def __init__(
        self,
        sinks: list[Sink],
        *,
        queue_size: int = 10000,
        attempts: int = 4,
        backoff: float = 0.5,
        on_delivered: Callable[[str, Event], None] | None = None,
    ) -> None:
        self.sinks = sinks
        self.on_delivered = on_delivered
        self.attempts = attempts
        self.backoff = backoff
        self.queues: dict[str, asyncio.Queue[Event]] = {s.name: asyncio.Queue(queue_size) for s in sinks}
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._workers: list[asyncio.Task[None]] = []
        self._last_drop_log = 0.0

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(s), name=f"sink:{s.name}") for s in self.sinks]

    def publish(self, event: Event) -> None:
        for sink in self.sinks:
            if not sink.config.accepts(event):
                continue
            try:
                self.queues[sink.name].put_nowait(event)
            except asyncio.QueueFull:
                self._drop(sink, event, "queue full")

    def _drop(self, sink: Sink, event: Event, why: str) -> None:
        self.dropped[sink.name] += 1
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.error(
                "sink %s: event %s dropped (%s); %d dropped so far", sink.name, event.id, why, self.dropped[sink.name]
            )

    async def _work(self, sink: Sink) -> None:
        queue = self.queues[sink.name]
        while True:
            event = await queue.get()
            try:
                await self._deliver(sink, event)
            finally:
                queue.task_done()

    async def _deliver(self, sink: Sink, event: Event) -> None:
        for attempt in range(self.attempts):
            try:
                await sink.send(event)
                self.sent[sink.name] += 1
                if self.on_delivered is not None:
                    self.on_delivered(sink.name, event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sink %s: sending event %s failed (attempt %d): %s", sink.name, event.id, attempt + 1, exc)
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(min(self.backoff * 2**attempt, 30.0))
        self._drop(sink, event, "delivery failed")

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for queued events to be delivered; True if all were."""
        try:
            async with asyncio.timeout(timeout):
                for q in self.queues.values():
                    await q.join()
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop workers and close sinks."""
        if not await self.drain(timeout):
            pending = sum(q.qsize() for q in self.queues.values())
            log.error("shutdown: %d queued events not delivered within %gs", pending, timeout)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:
                log.warning("sink %s: close failed: %s", sink.name, exc)
