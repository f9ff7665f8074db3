"""Run history: buckets, the p95 estimate, roll-up over simulated weeks, and the store."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.incidents import history as h
from agent.incidents import history_store as hs
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
    mine = [(b.start, b.runs) for b in acc.all_pending() if (b.check, b.target) == ("web", "a")]
    assert mine == [(T0, 1), (T0 + 60, 1)]


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


def test_rollup_ages_hours_into_days_kept_for_the_retention() -> None:
    raw = _simulate(12 * 24 * 60, 300, 2)
    rolled = rollup(raw, T0 + 12 * DAY, 90 * DAY)
    by_width: dict[int, list[Bucket]] = {}
    for b in rolled:
        by_width.setdefault(b.width, []).append(b)
    assert [b.start for b in by_width[DAY]] == [T0 + i * DAY for i in range(4)]  # older than 8 days
    assert all(b.runs == 288 for b in by_width[DAY])
    assert min(b.start for b in by_width[HOUR]) >= T0 + 4 * DAY - HOUR
    assert sum(b.runs for b in rolled) == sum(b.runs for b in raw)
    assert next(b.start for b in rollup(rolled, T0 + 93 * DAY, 90 * DAY) if b.width == DAY) == T0 + 3 * DAY


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
    hours = rollup(raw, T0 + 5 * DAY, 30 * DAY)
    assert [b.runs for b in series_of(hours, "web", "a", T0, T0 + 2 * HOUR, 15 * MINUTE)] == [60, 0, 0, 0] * 2
    days = rollup(raw, T0 + 10 * DAY, 30 * DAY)
    assert [(b.width, b.runs) for b in days] == [(DAY, 120)]
    assert [b.runs for b in series_of(days, "web", "a", T0, T0 + 2 * HOUR, HOUR)] == [120, 0]
    assert series_of(raw, "web", "a", T0 + 10 * DAY, T0 + 11 * DAY, HOUR) == [
        Bucket("web", "a", T0 + 10 * DAY + i * HOUR, HOUR, 0, 0, 0.0, 0.0, (0,) * h.BINS) for i in range(24)
    ]


def _write(store: Store, buckets: list[Bucket], ids: hs.SeriesIds) -> None:
    write, after = hs.write_buckets(buckets, ids)
    with store.transaction():
        write(store)
    after()


def test_store_round_trip_restart_and_partial_buckets_merge(tmp_path: Path) -> None:
    acc = Accumulator()
    _runs(acc, [(0, 0.01, True), (10, 0.3, False), (70, 0.02, True)])
    _runs(acc, [(5, 2.0, True)], target="b")
    store = Store(str(tmp_path))
    _write(store, acc.flush(T0 + 65, partial=True), hs.SeriesIds())
    store.close()
    _runs(acc, [(20, 0.05, True)])  # after the restart, the same minute again: added to the stored row
    store = Store(str(tmp_path))
    _write(store, acc.flush(T0 + 200), hs.SeriesIds())
    got = hs.load(store, "web", "a", T0, T0 + 120)
    assert [(b.start, b.runs, b.good) for b in got] == [(T0, 3, 2), (T0 + 60, 1, 1)]
    assert got[0].duration_max == 0.3 and sum(got[0].hist) == 3 and got[0].hist[bin_of(0.3)] == 1
    whole = totals_of(got, T0, T0 + 120)
    assert (whole.runs, whole.good) == (4, 3) and math.isclose(whole.duration_sum, 0.38)
    assert [b.runs for b in hs.load(store, "web", "b", T0, T0 + 120)] == [1]
    assert sorted((b.target, b.runs) for b in hs.load(store, "web", None, T0, T0 + 120)) == [
        ("a", 1),
        ("a", 3),
        ("b", 1),
    ]
    assert hs.load(store, "nope", None, T0, T0 + 120) == []
    store.close()


def test_a_rolled_back_write_leaves_no_series_id_behind(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    ids = hs.SeriesIds()
    acc = Accumulator()
    _runs(acc, [(0, 0.01, True)], target="x")
    write, after = hs.write_buckets(acc.flush(T0, partial=True), ids)
    try:
        with store.transaction():
            write(store)
            raise OSError("disk full")  # the commit fails: the writer retries the same write later
    except OSError:
        pass
    assert ids.ids == {}  # not remembered: the row it named is gone
    _runs(acc, [(0, 0.01, True)], target="y")
    _write(store, acc.flush(T0, partial=True), ids)  # another series takes the id first
    with store.transaction():
        write(store)
    after()
    assert {k: hs.load(store, "web", k[1], T0, T0 + 60)[0].runs for k in ids.ids} == {("web", "x"): 1, ("web", "y"): 1}
    store.close()


def test_rollup_in_the_store_matches_the_pure_rollup(tmp_path: Path) -> None:
    raw = _simulate(10 * 24 * 60, 60, 3) + _simulate(60, 300, 4)
    store = Store(str(tmp_path))
    with store.transaction():
        hs.upsert(store, raw)
    now = T0 + 10 * DAY
    steps = 0
    for at, keep in ((now - DAY, 8 * DAY), (now, 8 * DAY)):
        while True:
            with store.transaction():
                if not hs.rollup_step(store, at, keep):
                    break
            steps += 1
    assert steps > 3  # in chunks: one period per transaction
    stored = hs.load(store, "web", "a", 0, now + DAY)
    assert stored == rollup(rollup(raw, now - DAY, 8 * DAY), now, 8 * DAY)
    assert store.db.execute("SELECT count(*) FROM history_buckets").fetchone()[0] == len(stored)
    with store.transaction():  # nothing more is due: a further step changes nothing
        assert not hs.rollup_step(store, now, 8 * DAY)
    store.close()


def test_check_summaries_sum_every_target(tmp_path: Path) -> None:
    acc = Accumulator()
    for i in range(0, 2 * 3600, 60):
        acc.add("web", "a", T0 + i, i % 600 != 0, 0.1 if i < 3600 else 0.9)
        acc.add("web", "b", T0 + i, True, 0.2)
        acc.add("db", "x", T0 + i, False, 0.01)
    store = Store(str(tmp_path))
    _write(store, acc.flush(T0 + DAY, partial=True), hs.SeriesIds())
    now = T0 + 2 * HOUR
    sums = hs.read_all(store, hs.CheckSums(now, (HOUR, DAY), (T0 - DAY) // DAY, T0, HOUR, 2))
    totals = {c: sums.counts(c) for c in ("web", "db")}
    assert totals["web"][0] == hs.RunCounts(120, 114) and totals["web"][1] == hs.RunCounts(240, 228)
    assert totals["db"][1].uptime == 0.0 and totals["web"][1].uptime == 228 / 240
    assert sums.days == {"web": {T0 // DAY: hs.RunCounts(240, 228)}, "db": {T0 // DAY: hs.RunCounts(120, 0)}}
    lat = sums.latency["web"]
    assert [(s.start, s.width) for s in lat] == [(T0, HOUR), (T0 + HOUR, HOUR)]
    assert (lat[0].runs, lat[0].good, lat[1].runs) == (120, 114, 120)
    first = lat[0].p95()
    assert first is not None and 0.1 <= first <= 0.2 * 1.7 and lat[1].duration_max == 0.9
    before = hs.read_all(store, hs.CheckSums(T0 - 1, (HOUR,), (T0 - DAY) // DAY, T0 - DAY, HOUR, 24))
    assert before.latency == {} and before.counts("web") == (hs.RunCounts(0, 0),)  # no runs then: the caller shows none
    monkey_chunks = hs.chunks(store, T0, now)
    assert {w for w, _, _ in monkey_chunks} == {60} and all(a < b for _, a, b in monkey_chunks)  # widths with rows
    store.close()
