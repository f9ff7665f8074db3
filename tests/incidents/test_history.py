"""Run history: buckets, the p95 estimate, roll-up over simulated weeks, and the store."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.incidents import history as h
from agent.incidents.history import DAY, HOUR, MINUTE, Accumulator, Bucket, bin_of, rollup, series_of, totals_of
from agent.incidents.store import Store

T0 = 1_700_000_000 // DAY * DAY  # midnight, so every tier's boundaries line up with it


def _runs(acc: Accumulator, spans: list[tuple[int, float, bool]], check: str = "web", target: str = "a") -> None:
    for t, d, ok in spans:
        acc.add(check, target, T0 + t, ok, d)


def test_runs_are_summed_into_minute_buckets_and_flushed_when_finished() -> None:
    acc = Accumulator()
    _runs(acc, [(0, 0.010, True), (30, 0.200, False), (59, 0.020, True)])
    assert acc.flush(T0 + 59) == []  # the first minute is still open
    _runs(acc, [(60, 0.5, True)])
    [b] = acc.flush(T0 + 60)
    assert (b.start, b.width, b.runs, b.good) == (T0, MINUTE, 3, 2)
    assert math.isclose(b.duration_sum, 0.23) and b.duration_max == 0.2
    assert sum(b.hist) == 3 and b.hist[bin_of(0.2)] == 1
    [partial] = acc.flush(T0 + 61, partial=True)
    assert (partial.start, partial.runs) == (T0 + 60, 1)
    assert acc.flush(T0 + 1000, partial=True) == []


def test_pending_shows_what_is_not_flushed() -> None:
    acc = Accumulator()
    _runs(acc, [(0, 0.01, True), (61, 0.01, False)])
    _runs(acc, [(0, 0.01, True)], target="b")
    assert [(b.start, b.runs) for b in acc.pending("web", "a")] == [(T0, 1), (T0 + 60, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0001, max_value=120.0), min_size=1, max_size=300))
def test_p95_is_within_one_bin_of_the_true_p95(durations: list[float]) -> None:
    acc = Accumulator()
    for d in durations:
        acc.add("web", "a", T0, True, d)
    [b] = acc.flush(T0 + 60)
    true = sorted(durations)[math.ceil(0.95 * len(durations)) - 1]
    est = b.p95()
    assert est is not None and est >= true
    assert abs(bin_of(est) - bin_of(true)) <= 1


def test_p95_of_nothing_is_none() -> None:
    assert totals_of([], 0, 1).p95 is None


def _simulate(minutes: int, every: int, seed: int) -> list[Bucket]:
    """Runs every ``every`` seconds for ``minutes``, flushed as minute buckets."""
    acc = Accumulator()
    for i in range(0, minutes * 60, every):
        acc.add("web", "a", T0 + i, (i // every + seed) % 7 != 0, 0.001 * (1 + (i * 7919 + seed) % 5000))
    return acc.flush(T0 + minutes * 60 + 60, partial=True)


def _runs_in(buckets: list[Bucket], since: float, until: float) -> int:
    return totals_of(buckets, since, until).runs


@settings(max_examples=40, deadline=None)
@given(
    days=st.integers(min_value=1, max_value=21),
    every=st.sampled_from([60, 300, 900, 1800]),
    seed=st.integers(0, 100),
    since_h=st.integers(0, 21 * 24),
    span_h=st.integers(1, 21 * 24),
    extra=st.integers(0, 3599),
)
def test_rollup_preserves_totals_drops_the_old_and_stays_bounded(
    days: int, every: int, seed: int, since_h: int, span_h: int, extra: int
) -> None:
    raw = _simulate(days * 24 * 60, every, seed)
    retention = 7 * DAY
    now = T0 + days * DAY + 120
    # roll up every 10 minutes of the last day, as the daemon does, and once after
    rolled: list[Bucket] = raw
    for step in range(0, DAY, 6 * 3600):
        rolled = rollup(rolled, now - DAY + step, retention)
    rolled = rollup(rolled, now, retention)
    oldest = now - retention
    assert all(b.start + b.width > oldest for b in rolled), "nothing older than retention remains"
    kept = [b for b in raw if b.start + b.width > oldest // HOUR * HOUR]
    # hour-aligned ranges inside retention: exactly the same runs, good runs and duration sum
    since = max(T0 + since_h * HOUR, (oldest // HOUR + 1) * HOUR)
    until = since + span_h * HOUR
    before, after = totals_of(kept, since, until), totals_of(rolled, since, until)
    assert (after.runs, after.good) == (before.runs, before.good)
    assert math.isclose(after.duration_sum, before.duration_sum, rel_tol=1e-9, abs_tol=1e-9)
    assert after.duration_max == before.duration_max
    # any range: at least what it held, at most what its hour-aligned widening held
    a, b = since + extra, until + extra
    assert _runs_in(kept, a, b) <= _runs_in(rolled, a, b) <= _runs_in(kept, a // HOUR * HOUR, -(-b // HOUR) * HOUR)
    # bounded: 6 h of minutes, 2 days of quarters, retention of hours (plus partial edges)
    assert len(rolled) <= 360 + 192 + 7 * 24 + 6
    assert sum(x.runs for x in rolled) <= sum(x.runs for x in raw)


def test_rollup_ages_minutes_into_quarters_into_hours() -> None:
    raw = _simulate(3 * 24 * 60, 60, 0)
    rolled = rollup(raw, T0 + 3 * DAY, 30 * DAY)
    widths = {b.width: [x.start for x in rolled if x.width == b.width] for b in rolled}
    assert min(widths[60]) >= T0 + 3 * DAY - 6 * HOUR - 60
    assert min(widths[900]) >= T0 + DAY - 900 and max(widths[900]) < T0 + 3 * DAY - 6 * HOUR
    assert max(widths[3600]) < T0 + DAY
    assert len(rolled) == 360 + 4 * 42 + 24


def test_series_gives_every_step_and_counts_wide_buckets_where_they_start() -> None:
    raw = _simulate(120, 60, 1)
    s = series_of(raw, "web", "a", T0 + 30, T0 + 2 * HOUR, 15 * MINUTE)
    assert [b.start for b in s] == [T0 + i * 900 for i in range(8)]
    assert [b.runs for b in s] == [15] * 8
    hours = rollup(raw, T0 + 10 * DAY, 30 * DAY)
    assert [b.runs for b in series_of(hours, "web", "a", T0, T0 + 2 * HOUR, 15 * MINUTE)] == [60, 0, 0, 0] * 2
    assert series_of(raw, "web", "a", T0 + 10 * DAY, T0 + 11 * DAY, HOUR) == [
        Bucket("web", "a", T0 + 10 * DAY + i * HOUR, HOUR, 0, 0, 0.0, 0.0, (0,) * h.BINS) for i in range(24)
    ]


def test_store_round_trip_restart_and_partial_buckets_merge(tmp_path: Path) -> None:
    acc = Accumulator()
    _runs(acc, [(0, 0.01, True), (10, 0.3, False), (70, 0.02, True)])
    _runs(acc, [(5, 2.0, True)], target="b")
    store = Store(str(tmp_path))
    with store.transaction():
        h.write_buckets(acc.flush(T0 + 65, partial=True))(store)
    store.close()
    _runs(acc, [(20, 0.05, True)])  # after the restart, the same minute again: added to the stored row
    store = Store(str(tmp_path))
    with store.transaction():
        h.write_buckets(acc.flush(T0 + 200))(store)
    got = h.load(store, "web", "a", T0, T0 + 120)
    assert [(b.start, b.runs, b.good) for b in got] == [(T0, 3, 2), (T0 + 60, 1, 1)]
    assert got[0].duration_max == 0.3 and sum(got[0].hist) == 3 and got[0].hist[bin_of(0.3)] == 1
    whole = totals_of(got, T0, T0 + 120)
    assert (whole.runs, whole.good) == (4, 3) and math.isclose(whole.duration_sum, 0.38)
    assert [b.runs for b in h.load(store, "web", "b", T0, T0 + 120)] == [1]
    store.close()


def test_rollup_in_the_store_matches_the_pure_rollup(tmp_path: Path) -> None:
    raw = _simulate(4 * 24 * 60, 60, 3) + _simulate(60, 300, 4)
    store = Store(str(tmp_path))
    with store.transaction():
        h.upsert(store, raw)
    now = T0 + 4 * DAY
    with store.transaction():
        h.rollup_write(now - DAY, 2 * DAY)(store)
    with store.transaction():
        assert h.rollup_store(store, now, 2 * DAY) > 0
    stored = h.load(store, "web", "a", 0, now + DAY)
    assert stored == rollup(rollup(raw, now - DAY, 2 * DAY), now, 2 * DAY)
    assert store.db.execute("SELECT count(*) FROM history").fetchone()[0] == len(stored)
    with store.transaction():  # nothing more is due: a second pass changes nothing
        assert h.rollup_store(store, now, 2 * DAY) == 0
    store.close()
