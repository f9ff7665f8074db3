"""The scheduler spreads runs, runs every job on time, and never overlaps a job with itself."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agent.engine.scheduler import Job, Scheduler


async def nothing() -> None:
    return None


async def test_first_runs_come_soon_and_are_spread_not_bursted() -> None:
    jobs = [Job(f"check-{i} https://10.0.0.{i % 250}/", 60.0, nothing) for i in range(1000)]
    s = Scheduler(jobs, clock=lambda: 0.0, first_window=5.0)
    s.plan(100.0)
    firsts = sorted(due for due, _, _ in s._heap)
    assert firsts[0] >= 100.0 and firsts[-1] < 105.0
    per_100ms = Counter(int((d - 100.0) * 10) for d in firsts)
    assert max(per_100ms.values()) <= 60  # even spread: 20 per 100 ms on average, never a burst
    # steady state: each job's slots are spread over the whole interval
    slots = sorted(s._next_slot(j, 100.0 + 60.0) - 160.0 for j in jobs)
    per_second = Counter(int(x) for x in slots)
    assert len(per_second) == 60 and max(per_second.values()) <= 40


def test_next_slot_gap_after_the_first_run_is_between_half_and_one_and_a_half_intervals() -> None:
    for i in range(200):
        job = Job(f"job-{i}", 30.0, nothing)
        s = Scheduler([job], clock=lambda: 0.0, first_window=5.0)
        s.plan(0.0)
        first = s._heap[0][0]
        nxt = s._next_slot(job, first + job.interval / 2)
        assert 15.0 <= nxt - first <= 45.0
        assert s._next_slot(job, nxt + 15.0) - nxt == 30.0


async def test_jobs_run_on_schedule_and_never_overlap_themselves() -> None:
    running: Counter[str] = Counter()
    overlaps: list[str] = []
    runs: Counter[str] = Counter()

    def make(name: str, work: float) -> Job:
        async def run() -> None:
            running[name] += 1
            if running[name] > 1:
                overlaps.append(name)
            runs[name] += 1
            await asyncio.sleep(work)
            running[name] -= 1

        return Job(name, 0.1, run)

    s = Scheduler([make("fast", 0.01), make("slow", 0.25)], first_window=0.05)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(1.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert overlaps == []
    assert 9 <= runs["fast"] <= 12
    assert runs["slow"] <= 5 and s.stats.missed >= 4  # skipped while its previous run was still going
    lags = sorted(s.stats.lags)
    assert lags[int(len(lags) * 0.9)] < 0.05


async def test_a_failing_job_does_not_stop_the_others() -> None:
    ran: Counter[str] = Counter()

    async def boom() -> None:
        ran["boom"] += 1
        raise RuntimeError("bug")

    async def fine() -> None:
        ran["fine"] += 1

    s = Scheduler([Job("boom", 0.05, boom), Job("fine", 0.05, fine)], first_window=0.01)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ran["boom"] >= 4 and ran["fine"] >= 4


def test_on_uvloop_a_run_costs_one_wake_not_a_spin_until_the_millisecond_turns() -> None:
    """uvloop's clock and timers tick in whole milliseconds: a wake a fraction of a millisecond
    before a job's due time must start it, not sleep 0 ms again and again (which cost 5x the CPU
    per run on uvloop before the scheduler allowed for it)."""
    uvloop = pytest.importorskip("uvloop")  # in the test extra; CI installs it
    wakes = 0

    async def main() -> Scheduler:
        nonlocal wakes
        loop = asyncio.get_running_loop()

        def clock() -> float:
            nonlocal wakes
            wakes += 1
            return loop.time()

        jobs = [Job(f"job-{i}", 0.1, nothing) for i in range(20)]
        s = Scheduler(jobs, clock=clock, first_window=0.05)
        task = asyncio.create_task(s.run())
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return s

    s = uvloop.run(main())
    assert s.stats.runs >= 150  # 20 jobs every 100 ms for about a second
    assert wakes <= 2 * s.stats.runs + 10, (wakes, s.stats.runs)
    assert min(s.stats.lags) >= 0.0  # a run started a little early counts as on time


async def test_one_wake_starts_every_job_due_within_its_early_margin_and_none_sooner() -> None:
    """200 jobs a second: a wake starts the jobs due in the next 25 ms together (so they share the
    loop's turns), and no run starts more than its margin before its slot."""
    loop = asyncio.get_running_loop()
    starts: dict[str, list[float]] = {}
    wakes = 0

    def clock() -> float:
        nonlocal wakes
        wakes += 1
        return loop.time()

    def make(name: str) -> Job:
        async def run() -> None:
            starts.setdefault(name, []).append(loop.time())

        return Job(name, 1.0, run)

    jobs = [make(f"https://shop.example/{i}") for i in range(200)]
    assert {job.early for job in jobs} == {0.025}
    assert Job("fast", 0.1, nothing).early == 0.005 and Job("fastest", 0.01, nothing).early == 0.001
    s = Scheduler(jobs, clock=clock, first_window=0.2)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(2.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert s.stats.runs >= 400 and s.stats.missed == 0
    assert wakes <= s.stats.runs / 2, (wakes, s.stats.runs)  # about five jobs a wake, not one
    early_by = []  # how long before its slot each steady run started (negative: after it)
    for job in jobs:
        base = s._anchor + job.phase * job.interval  # the job's slots: base + k * interval
        for t in starts[job.name][1:]:  # the first run is placed in the first window instead
            slot = base + round((t - base) / job.interval) * job.interval
            early_by.append(slot - t)
    assert len(early_by) >= 200
    assert max(early_by) <= 0.025 + 1e-6  # never sooner than the margin, however busy the machine
    assert sum(e > 0.001 for e in early_by) >= len(early_by) / 4  # and runs do start early to share wakes
