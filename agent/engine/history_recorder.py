"""Every run into the run history, and what the status page reads back from it.

The runtime calls :meth:`HistoryRecorder.record` with each result (a dict lookup and a few
additions in memory), :meth:`HistoryRecorder.tick` once a second from its housekeeping, and
:meth:`HistoryRecorder.stop` when it stops. Every ``flush_every`` seconds the finished 1-minute
buckets go to the store writer as one journal write (retried, never dropped, while the disk is
full or the file locked); every ``rollup_every`` seconds a roll-up task ages them one period
per database call, so other writes get the database thread between chunks. On stop the open,
partial buckets are written too; the next runtime adds to them, so a restart loses no run. The
database is never touched on the event loop.

:meth:`HistoryRecorder.views` answers the status document: per check, uptime over 24 h, 7 d and
30 d, the last 90 days and the last 24 hours of latency, from the store plus the runs not
flushed yet. It costs a scan of the table, so its answer is kept for a while (at least
``min_age`` seconds, and ten times as long as it took to compute: at 10,000 targets the page
never takes more than a tenth of the database thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from agent.core.events import iso_time
from agent.core.severity import rank
from agent.incidents import history_store as hs
from agent.incidents.history import BINS, DAY, DEFAULT_RETENTION, LAST_WIDTH, TIERS, Accumulator, Bucket
from agent.incidents.model import Incident
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter
from agent.web.snapshot import DayView, HistoryView, LatencyPoint
from checks.base import Result

log = logging.getLogger("firstwatch")

SPANS = (DAY, 7 * DAY, 30 * DAY)  # uptime 24h, 7d, 30d
DAYS_SHOWN = 90
LATENCY_STEP = 900  # the 24 h sparkline: 96 points of 15 minutes
HELD_MAX = 50_000  # buckets kept in memory while the database cannot be written, before coarsening


def coarsen(buckets: list[Bucket]) -> list[Bucket]:
    """``buckets`` merged per (check, target) into buckets of the next coarser tier width (a
    minute into 15 minutes, 15 minutes into an hour, an hour into a day)."""
    widths = [t.width for t in TIERS] + [LAST_WIDTH]
    merged: dict[tuple[str, str, int, int], Bucket] = {}
    for b in buckets:
        width = next((w for w in widths if w > b.width), b.width)
        start = b.start // width * width
        key = (b.check, b.target, start, width)
        have = merged.get(key)
        merged[key] = b.merged(have, start, width) if have is not None else b.merged(_empty_like(b), start, width)
    return list(merged.values())


def _empty_like(b: Bucket) -> Bucket:
    return Bucket(b.check, b.target, b.start, b.width, 0, 0, 0.0, 0.0, (0,) * BINS)


class HistoryRecorder:
    def __init__(
        self,
        writer: StoreWriter,
        *,
        retention: float = DEFAULT_RETENTION,
        flush_every: int = 60,
        rollup_every: int = 600,
        min_age: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.retention = max(retention, DEFAULT_RETENTION)
        self.flush_every = flush_every
        self.rollup_every = rollup_every
        self.min_age = min_age
        self.clock = clock
        self.accumulator = Accumulator()
        self.ids = hs.SeriesIds()
        self.written = 0  # buckets handed to the writer
        self._rollup: asyncio.Task[int] | None = None
        self._views: tuple[float, dict[str, HistoryView]] | None = None  # (good until, views)
        self._reading = asyncio.Lock()
        self._held: list[Bucket] = []  # finished while the database could not be written

    def record(self, result: Result) -> None:
        self.accumulator.add(result.check, result.target, result.started_at, result.ok, result.duration_s)

    def tick(self, ticks: int) -> None:
        """Housekeeping's ``ticks``-th second: flush or roll up when it is time."""
        if ticks % self.flush_every == 0:
            self.flush()
        if ticks % self.rollup_every == 0 and (self._rollup is None or self._rollup.done()):
            self._rollup = asyncio.create_task(self.rollup(), name="history-rollup")

    def flush(self, partial: bool = False) -> int:
        """Hand the finished buckets (with ``partial``, all of them) to the writer as one write.
        While the database cannot be written they wait here instead, merged into coarser
        buckets past :data:`HELD_MAX` (memory stays bounded through a long full-disk episode;
        the runs are all kept, only their minute is blurred), and go with the first flush after."""
        self._held.extend(self.accumulator.flush(self.clock(), partial))
        if (self.writer.trouble is not None or self._reading.locked()) and not partial:  # (a read: no moving rows)
            if len(self._held) > HELD_MAX:
                self._held = coarsen(self._held)
            return 0
        buckets, self._held = self._held, []
        if buckets:
            write, after = hs.write_buckets(buckets, self.ids)
            self.writer.submit(write, after)
            self.written += len(buckets)
        return len(buckets)

    async def rollup(self) -> int:
        """Age the stored buckets, one chunk per database call; returns how many chunks."""
        now, chunks = self.clock(), 0
        try:
            while await self.writer.call(_rollup_chunk, self.writer.store, now, self.retention):
                chunks += 1
        except Exception as exc:  # locked, full: the rows stay as they are until the next try
            log.warning("run history: cannot roll up old buckets now (%s); trying again later", exc)
        return chunks

    def stop(self) -> None:
        if self._rollup is not None:
            self._rollup.cancel()
        self.flush(partial=True)

    def pending(self) -> list[Bucket]:
        """The runs not flushed yet, as buckets."""
        return self._held + self.accumulator.all_pending()

    async def views(self, checks: Collection[str]) -> dict[str, HistoryView]:
        """Each of ``checks``' history (see the module docstring); cached."""
        async with self._reading:  # one scan at a time: requests meanwhile get its answer
            now = self.clock()
            if self._views is not None and now < self._views[0]:
                return self._views[1]
            return await self._read(checks, now)

    async def _read(self, checks: Collection[str], now: float) -> dict[str, HistoryView]:
        started = time.monotonic()
        step = int(now // LATENCY_STEP) + 1  # the end of the step now is in
        steps = DAY // LATENCY_STEP
        first_day = int(now // DAY) - DAYS_SHOWN + 1
        sums = hs.CheckSums(now, SPANS, first_day, (step - steps) * LATENCY_STEP, LATENCY_STEP, steps)
        store = self.writer.store
        try:  # a chunk per database call: flushes and events get the thread in between
            for width, a, b in await self.writer.call(hs.chunks, store, sums.since, now + 1):
                await self.writer.call(hs.read_chunk, store, sums, width, a, b)
            incidents = await self.writer.call(lambda: store.incidents(since=first_day * DAY))
        except Exception as exc:
            log.warning("run history: cannot read it now (%s)", exc)
            sums, incidents = hs.CheckSums(now, SPANS, first_day), []
        views = _views(sums, incidents, self.pending(), now, list(checks))
        took = time.monotonic() - started
        self._views = (now + max(self.min_age, 10 * took), views)
        return views


def _rollup_chunk(store: Store, now: float, retention: float) -> bool:
    with store.transaction():
        return hs.rollup_step(store, now, retention)


def _empty() -> HistoryView:
    return {"uptime": {"24h": None, "7d": None, "30d": None}, "days": [], "latency": []}


def _views(
    sums: hs.CheckSums, incidents: list[Incident], pending: list[Bucket], now: float, checks: list[str]
) -> dict[str, HistoryView]:
    """The store's sums plus ``pending`` (runs not flushed yet), per check."""
    out: dict[str, HistoryView] = {}
    for check in checks:
        mine = [b for b in pending if b.check == check]
        counts = list(sums.counts(check))
        for i, span in enumerate(SPANS):
            extra = [b for b in mine if b.start + b.width > now - span]
            counts[i] = hs.RunCounts(
                counts[i].runs + sum(b.runs for b in extra), counts[i].ok + sum(b.good for b in extra)
            )
        per_day = dict(sums.days.get(check, {}))
        for b in mine:
            have = per_day.get(b.start // DAY, hs.RunCounts(0, 0))
            per_day[b.start // DAY] = hs.RunCounts(have.runs + b.runs, have.ok + b.good)
        out[check] = {
            "uptime": {"24h": counts[0].uptime, "7d": counts[1].uptime, "30d": counts[2].uptime},
            "days": _days(per_day, [i for i in incidents if i.check == check], sums.days_from, now),
            "latency": _latency(sums.latency.get(check), mine, now),
        }
    return out


def _days(per_day: dict[int, hs.RunCounts], incidents: list[Incident], first_day: int, now: float) -> list[DayView]:
    """From the first day with runs (at most 90 days back) to today."""
    seen = [d for d, c in per_day.items() if c.runs and d >= first_day]
    if not seen:
        return []
    today = int(now // DAY)
    out: list[DayView] = []
    for day in range(min(seen), today + 1):
        counts = per_day.get(day, hs.RunCounts(0, 0))
        start, end = day * DAY, (day + 1) * DAY
        open_then = [i.max_severity for i in incidents if i.fired_at < end and (i.resolved_at or now) >= start]
        state = "none" if not counts.runs else "up" if counts.ok == counts.runs else "blips"
        if open_then:
            state = max(open_then, key=rank)
        day_text = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")
        out.append({"day": day_text, "runs": counts.runs, "ok": counts.ok, "state": state})
    return out


def _latency(stored: list[Bucket] | None, pending: list[Bucket], now: float) -> list[LatencyPoint]:
    """96 points of 15 minutes over the last 24 h; pending runs fold into their step."""
    steps = DAY // LATENCY_STEP  # 96, the newest (the one now is in) last
    first = int(now // LATENCY_STEP * LATENCY_STEP) - (steps - 1) * LATENCY_STEP
    empty = (0,) * BINS
    slots = (
        list(stored)
        if stored
        else [Bucket("", "*", first + i * LATENCY_STEP, LATENCY_STEP, 0, 0, 0.0, 0.0, empty) for i in range(steps)]
    )
    for b in pending:
        i = (b.start - first) // LATENCY_STEP
        if 0 <= i < len(slots):
            slots[i] = slots[i].merged(b, start=slots[i].start, width=LATENCY_STEP)
    return [
        {"start": iso_time(s.start), "width_s": s.width, "p95_s": s.p95(), "max_s": s.duration_max if s.runs else None}
        for s in slots
    ]
