"""Run history: every check's runs summed into time buckets, coarser as they age, bounded.

A :class:`Bucket` is one (check, target)'s runs in ``[start, start + width)``: how many, how many
good, the duration sum and maximum, and a fixed log-spaced latency histogram (:data:`EDGES`: 24
bins, the first up to 1 ms, the last past 60 s) from which :meth:`Bucket.p95` is estimated (the
upper edge of the bin holding the 95th percentile by nearest rank, at most the maximum: never
below the true value, at most one bin above it).

The :class:`Accumulator` takes each run (a dict lookup and a few additions) into an open 1-minute
bucket per (check, target); :meth:`Accumulator.flush` hands back the finished ones (all of them on
stop, ``partial=True``: the store adds a partial bucket to the one already stored with the same
key, so a restart loses nothing). :func:`rollup` ages buckets through :data:`TIERS`: 1-minute
buckets are kept 6 hours, then merged into 15-minute buckets kept 2 days, then into hour buckets
kept 8 days, then into day buckets (UTC days) kept ``retention`` (90 days by default, for the
status page's 90-day bar; the longest SLO window when that is longer); anything wholly older than
``retention`` is dropped. So one target holds at most about 360 + 192 + 192 + retention-in-days
rows (834 for 90 days), whatever its interval.

Queries (:func:`totals_of`, :func:`series_of`) count a bucket when it overlaps the range
``[since, until)``, and then in full: a bucket partly outside the range is not split, so a range
that does not fall on bucket boundaries may count up to one bucket's width more at each end
(the width of the bucket there: 1 minute for recent times, up to a day for older ones).

Everything here is pure (time is passed in); :mod:`agent.incidents.history_store` keeps the
buckets in the state database.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
DAY = 86400
DEFAULT_RETENTION = 90 * DAY  # the status page's 90-day bar

# upper edges of the histogram's bins, 1 ms to 60 s log-spaced; a duration d falls in bin
# bisect_left(EDGES, d): bin 0 is d <= 1 ms, bin 23 is d > 60 s
EDGES: tuple[float, ...] = tuple(0.001 * 60000 ** (i / 22) for i in range(23))
BINS = len(EDGES) + 1


@dataclass(frozen=True, slots=True)
class Tier:
    """Buckets ``width`` seconds wide are kept ``keep`` seconds (counted from their end), then
    merged into the next tier's."""

    width: int
    keep: int


# the last tier (day buckets, aligned to UTC days) is kept for the retention passed to rollup
TIERS: tuple[Tier, ...] = (Tier(MINUTE, 6 * HOUR), Tier(15 * MINUTE, 2 * DAY), Tier(HOUR, 8 * DAY))
LAST_WIDTH = DAY


@dataclass(frozen=True, slots=True)
class Bucket:
    """One (check, target)'s runs in ``[start, start + width)`` (seconds since the epoch)."""

    check: str
    target: str
    start: int
    width: int
    runs: int
    good: int
    duration_sum: float
    duration_max: float
    hist: tuple[int, ...]  # BINS counts

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.check, self.target, self.start, self.width)

    def p95(self) -> float | None:
        return p95(self.hist, self.duration_max)

    def merged(self, other: Bucket, start: int | None = None, width: int | None = None) -> Bucket:
        """This bucket and ``other`` summed (as the bucket at ``start``/``width``, if given)."""
        hist = tuple(a + b for a, b in zip(self.hist, other.hist, strict=True))
        return Bucket(
            self.check, self.target, self.start if start is None else start, self.width if width is None else width,
            self.runs + other.runs, self.good + other.good, self.duration_sum + other.duration_sum,
            max(self.duration_max, other.duration_max), hist,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Totals:
    """Runs over a range: how many, how many good, duration sum and max, the p95 estimate."""

    runs: int
    good: int
    duration_sum: float
    duration_max: float
    p95: float | None  # None without runs


def p95(hist: Iterable[int], duration_max: float) -> float | None:
    """The 95th percentile (nearest rank) estimated from a histogram: the upper edge of its bin,
    at most ``duration_max`` (the last bin has no upper edge: its estimate is the maximum)."""
    counts = list(hist)
    n = sum(counts)
    if n == 0:
        return None
    rank = math.ceil(0.95 * n)
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return min(EDGES[i], duration_max) if i < len(EDGES) else duration_max
    return duration_max  # not reached


def bin_of(duration: float) -> int:
    return bisect_left(EDGES, duration)


class _Open:
    """The open bucket of one (check, target): mutable, so a run costs no allocation."""

    __slots__ = ("counts", "dmax", "dsum", "good", "runs", "start")

    def __init__(self, start: int) -> None:
        self.counts = [0] * BINS
        self.reset(start)

    def reset(self, start: int) -> None:
        """Empty, for the bucket at ``start``: the object and its list live as long as the target
        (one per target for the agent's life, not one per minute for the garbage collector)."""
        self.start = start
        self.runs = 0
        self.good = 0
        self.dsum = 0.0
        self.dmax = 0.0
        for i in range(BINS):
            self.counts[i] = 0

    def bucket(self, check: str, target: str, width: int) -> Bucket:
        return Bucket(check, target, self.start, width, self.runs, self.good, self.dsum, self.dmax, tuple(self.counts))


class Accumulator:
    """Runs into 1-minute (``width``) buckets per (check, target), in memory until flushed."""

    def __init__(self, width: int = MINUTE) -> None:
        self.width = width
        self._open: dict[tuple[str, str], _Open] = {}
        self._done: list[Bucket] = []

    def add(self, check: str, target: str, wall_time: float, ok: bool, duration: float) -> None:
        """One run, started at ``wall_time``, ``ok`` or not, taking ``duration`` seconds."""
        key = (check, target)
        start = int(wall_time // self.width) * self.width
        cur = self._open.get(key)
        if cur is None:
            cur = self._open[key] = _Open(start)
        elif cur.start != start:
            if cur.runs:
                self._done.append(cur.bucket(check, target, self.width))
            cur.reset(start)
        cur.runs += 1
        if ok:
            cur.good += 1
        cur.dsum += duration
        if duration > cur.dmax:
            cur.dmax = duration
        cur.counts[bisect_left(EDGES, duration)] += 1

    def flush(self, now: float, partial: bool = False) -> list[Bucket]:
        """The buckets finished by ``now`` (and, with ``partial``, the open ones too), taken out."""
        done, self._done = self._done, []
        for (check, target), cur in list(self._open.items()):
            if cur.runs and (partial or cur.start + self.width <= now):
                done.append(cur.bucket(check, target, self.width))
                cur.reset(cur.start)  # taken: a later run of the same minute starts it again
        return done

    def all_pending(self) -> list[Bucket]:
        """Every run not flushed yet, as buckets (finished ones first)."""
        out = list(self._done)
        out.extend(cur.bucket(c, t, self.width) for (c, t), cur in self._open.items() if cur.runs)
        return out


def rollup(buckets: Iterable[Bucket], now: float, retention: float = DEFAULT_RETENTION) -> list[Bucket]:
    """Age ``buckets``: each tier's buckets that ended more than its ``keep`` before ``now`` are
    merged into the next tier's (aligned to its width), and what ended more than ``retention``
    before ``now`` is dropped. Buckets with the same key are summed. Sorted by key."""
    out: dict[tuple[str, str, int, int], Bucket] = {}
    for b in buckets:
        _add(out, b)
    widths = [t.width for t in TIERS] + [LAST_WIDTH]
    for tier, coarser in zip(TIERS, widths[1:], strict=True):
        cutoff = now - tier.keep
        for key, b in list(out.items()):
            if b.width == tier.width and b.start + b.width <= cutoff:
                del out[key]
                start = b.start // coarser * coarser
                _add(out, Bucket(b.check, b.target, start, coarser, 0, 0, 0.0, 0.0, (0,) * BINS).merged(b))
    oldest = now - retention
    return sorted((b for b in out.values() if b.start + b.width > oldest), key=lambda b: b.key)


def _add(into: dict[tuple[str, str, int, int], Bucket], b: Bucket) -> None:
    have = into.get(b.key)
    into[b.key] = b if have is None else have.merged(b)


def overlaps(b: Bucket, since: float, until: float) -> bool:
    return b.start < until and b.start + b.width > since


def totals_of(buckets: Iterable[Bucket], since: float, until: float) -> Totals:
    """The sum of the buckets overlapping ``[since, until)`` (each counted in full)."""
    runs = good = 0
    dsum = dmax = 0.0
    hist = [0] * BINS
    for b in buckets:
        if not overlaps(b, since, until):
            continue
        runs += b.runs
        good += b.good
        dsum += b.duration_sum
        dmax = max(dmax, b.duration_max)
        for i, c in enumerate(b.hist):
            hist[i] += c
    return Totals(runs, good, dsum, dmax, p95(hist, dmax))


def series_of(
    buckets: Iterable[Bucket], check: str, target: str, since: float, until: float, width: int
) -> list[Bucket]:
    """Buckets of ``width`` seconds (aligned to it) from the one holding ``since`` up to ``until``,
    one per step even when empty. A stored bucket overlapping the range counts in the step
    holding its start (or the first step, if it starts before it): wider stored buckets are not
    spread over several steps."""
    first = int(since // width) * width
    steps = max(0, math.ceil((until - first) / width))
    empty = (0,) * BINS
    out = [Bucket(check, target, first + i * width, width, 0, 0, 0.0, 0.0, empty) for i in range(steps)]
    for b in buckets:
        if not out or not overlaps(b, since, until):
            continue
        i = min(steps - 1, max(0, (b.start - first) // width))
        out[i] = out[i].merged(b)
    return out


# --- the stored form of a histogram (agent.incidents.history_store) -----------------------------


def encode_hist(hist: tuple[int, ...]) -> str:
    """Sparse: ``bin:count`` for the bins that are not empty (one run is 3 or 4 characters)."""
    return ",".join(f"{i}:{c}" for i, c in enumerate(hist) if c)


def decode_hist(text: str) -> tuple[int, ...]:
    counts = [0] * BINS
    for part in text.split(",") if text else ():
        i, _, c = part.partition(":")
        counts[int(i)] += int(c)
    return tuple(counts)
