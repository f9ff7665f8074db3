"""One schedule for every (check, target): a heap of due times, a single timer, no overlap.

Placement: each job gets a stable phase inside its interval from a hash of its name, so 1,000
checks with the same interval are spread evenly over it instead of firing in one burst (as
Prometheus spreads scrapes). The first run comes soon after start (spread over at most
``first_window`` seconds) so the agent reports on every check within seconds; from then on a job
runs on its phase slots, the first gap being between half and one and a half intervals.

A job never overlaps itself: if its previous run is still going when it is due again (its timeout
is longer than its interval, or the loop stalled), that run is counted as missed. If the loop fell
behind by more than an interval, the slots passed are counted as missed and the job moves to its
next slot instead of bursting to catch up.

Coalescing: a wake starts every job due within the next few milliseconds (``Job.early``: 25 ms,
at most a twentieth of the interval), as the kernel's timer slack does, so the probes of one
wake share the event loop's turns instead of each paying for its own. A run never starts late
because of it, and never earlier than that.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("firstwatch.scheduler")

FIRST_RUNS_PER_S = 700
# A job starts at its due time or up to this much before it (its ``early``): one wake of the loop
# starts every job due within the next 25 ms, so at 200 probes a second about five share each
# wake, and their connections and answers share the loop's turns (a sixth less CPU per HTTP probe
# than one wake per job; bench/RESULTS.md section (12)). Never more than a twentieth of the
# job's interval, half of the jitter the rules' ``for:`` absorbs (agent.alerting.book).
COALESCE_S = 0.025
# ... and never less than this: uvloop's clock and timers tick in whole milliseconds, so a wake a
# fraction of a millisecond early spun the loop until the millisecond turned (5x the CPU per run).
CLOCK_SLACK = 0.001


@dataclass
class Job:
    """One recurring run: ``run()`` is awaited every ``interval`` seconds."""

    name: str
    interval: float
    run: Callable[[], Awaitable[None]]
    phase: float = 0.0  # fraction of the interval, from a hash of the name
    running: bool = False
    early: float = 0.0  # how much before its due time a run may start (see COALESCE_S)

    def __post_init__(self) -> None:
        self.phase = zlib.crc32(self.name.encode()) / 2**32
        self.early = max(CLOCK_SLACK, min(COALESCE_S, self.interval / 20))


@dataclass
class SchedulerStats:
    runs: int = 0
    missed: int = 0
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=20000))
    last_progress: float = 0.0  # loop time of the last run started (the watchdog reads it)


class Scheduler:
    def __init__(
        self,
        jobs: list[Job],
        *,
        clock: Callable[[], float] | None = None,
        first_window: float = 5.0,
        on_run: Callable[[float], None] | None = None,
        on_missed: Callable[[int], None] | None = None,
        previous: Scheduler | None = None,
    ) -> None:
        self.on_run = on_run
        self.previous = previous
        self.on_missed = on_missed
        self.jobs = jobs
        self.clock = clock or asyncio.get_running_loop().time
        self.first_window = first_window
        self.stats = SchedulerStats()
        self._heap: list[tuple[float, int, Job]] = []
        self._anchor = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def _next_slot(self, job: Job, not_before: float) -> float:
        """The first of the job's phase slots at or after ``not_before``."""
        base = self._anchor + job.phase * job.interval
        k = max(0, math.ceil((not_before - base) / job.interval - 1e-9))
        return base + k * job.interval

    def plan(self, start: float) -> None:
        """Place every job's first run (called by :meth:`run`; public for tests). The first runs
        are spread over ``first_window`` seconds, widened so that at most FIRST_RUNS_PER_S start
        each second: 10,000 checks start over about 14 s instead of bursting 2,000 a second (at 500
        a second, the first runs of 10,000 http checks ended 24.3 s after the process started, against
        the 25 s target: bench/RESULTS.md section (11))."""
        self._anchor = start
        window = max(self.first_window, len(self.jobs) / FIRST_RUNS_PER_S)
        kept: dict[str, tuple[float, float]] = {}
        if self.previous is not None:  # a reload: a job whose schedule did not change keeps its slots
            self._anchor = self.previous._anchor
            kept = {job.name: (due, job.interval) for due, _, job in self.previous._heap}
            self.previous = None  # not kept alive
        self._heap = []
        for i, job in enumerate(self.jobs):
            due, interval = kept.get(job.name, (0.0, 0.0))
            if interval != job.interval:
                due = start + job.phase * min(job.interval, window)
            self._heap.append((due, i, job))
        heapq.heapify(self._heap)

    async def run(self) -> None:
        """Run jobs until cancelled; in-flight runs are cancelled with it."""
        self.plan(self.clock())
        heap = self._heap
        try:
            while heap:
                now = self.clock()
                while heap and heap[0][0] <= now + heap[0][2].early:
                    due, seq, job = heapq.heappop(heap)
                    self._start(job, due, now)
                    nxt = self._next_slot(job, due + job.interval / 2)
                    if nxt <= now:  # fell behind by more than an interval: skip, don't burst
                        skipped = self._next_slot(job, now)
                        self._missed(round((skipped - nxt) / job.interval))
                        nxt = skipped if skipped > now else skipped + job.interval
                    heapq.heappush(heap, (nxt, seq, job))
                # one wake per due time; sleep(0) when the next is already due (a yield, no timer)
                await asyncio.sleep(max(0.0, heap[0][0] - self.clock()) if heap else 0.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _missed(self, n: int) -> None:
        self.stats.missed += n
        if self.on_missed is not None and n:
            self.on_missed(n)

    def behind(self) -> float:
        """How late the most overdue job is, in seconds (0 when on schedule)."""
        if not self._heap:
            return 0.0
        return max(0.0, self.clock() - self._heap[0][0])

    def _start(self, job: Job, due: float, now: float) -> None:
        if job.running:
            self._missed(1)
            log.warning("%s: previous run still going when the next was due; run skipped", job.name)
            return
        self.stats.runs += 1
        lag = max(0.0, now - due)  # started early (up to job.early) counts as on time
        self.stats.lags.append(lag)
        if self.on_run is not None:
            self.on_run(lag)
        self.stats.last_progress = now
        job.running = True
        task = asyncio.ensure_future(self._guarded(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, job: Job) -> None:
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the pipeline must not stop the schedule
            log.exception("%s: run failed (a firstwatch bug)", job.name)
        finally:
            job.running = False
