"""Run history in the state database: the ``history_series`` and ``history_buckets`` tables.

Each (check, target) gets an integer id in ``history_series`` once; its buckets are rows of
``history_buckets`` keyed by ``(width, start, series)`` (a clustered ``WITHOUT ROWID`` table). That
order is the point: a flush writes one row per target for the same minute, and they all land
together at the end of the table (a few pages, not one page per target), roll-up and retention
read and delete contiguous ranges, and no second index is kept. Reads for one check scan a time
range and keep its series (the status page and the SLOs read every series anyway).

Writes (:func:`write_buckets`, :func:`rollup_step`) are journal writes for
:class:`agent.incidents.writer.StoreWriter`: they may run more than once (a failed commit is
retried), so a new series id is remembered only once its transaction has committed. Reads
(:func:`load`, :func:`check_totals`, :func:`check_days`, :func:`check_latency`) run on the
database thread or in the CLI's own connection.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from agent.incidents.history import (
    BINS,
    DAY,
    DEFAULT_RETENTION,
    LAST_WIDTH,
    TIERS,
    Bucket,
    decode_hist,
    encode_hist,
)
from agent.incidents.store import Store

_COLUMNS = "width, start, series, runs, good, duration_sum, duration_max, hist"
_ADD = (
    " ON CONFLICT (width, start, series) DO UPDATE SET runs = runs + excluded.runs, good = good + excluded.good,"
    " duration_sum = duration_sum + excluded.duration_sum, duration_max = max(duration_max, excluded.duration_max),"
    " hist = fw_hist_add(hist, excluded.hist)"
)


def _hist_add(a: str | None, b: str | None) -> str:
    return encode_hist(tuple(x + y for x, y in zip(decode_hist(a or ""), decode_hist(b or ""), strict=True)))


class _HistSum:
    """SQLite aggregate: encoded histograms summed."""

    def __init__(self) -> None:
        self.counts = [0] * BINS

    def step(self, text: str | None, /) -> None:
        for part in text.split(",") if text else ():
            i, _, c = part.partition(":")
            self.counts[int(i)] += int(c)

    def finalize(self) -> str:
        return encode_hist(tuple(self.counts))


def _functions(store: Store) -> None:
    store.db.create_function("fw_hist_add", 2, _hist_add, deterministic=True)
    store.db.create_aggregate("fw_hist_sum", 1, _HistSum)  # type: ignore[arg-type]  # typeshed wants int results


class SeriesIds:
    """(check, target) -> its id in ``history_series``: looked up or created inside a write, kept
    in memory only once that write has committed (:meth:`commit`), so a retried or rolled-back
    transaction never leaves an id here that the table does not hold."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}

    def resolve(self, store: Store, keys: Iterable[tuple[str, str]], fresh: dict[tuple[str, str], int]) -> None:
        for key in keys:
            if key in self.ids or key in fresh:
                continue
            store.db.execute("INSERT OR IGNORE INTO history_series (check_name, target) VALUES (?, ?)", key)
            row = store.db.execute("SELECT id FROM history_series WHERE check_name = ? AND target = ?", key).fetchone()
            fresh[key] = int(row[0])

    def id_of(self, key: tuple[str, str], fresh: dict[tuple[str, str], int]) -> int:
        return self.ids[key] if key in self.ids else fresh[key]

    def commit(self, fresh: dict[tuple[str, str], int]) -> None:
        self.ids.update(fresh)


def upsert(store: Store, buckets: Iterable[Bucket], ids: SeriesIds | None = None) -> dict[tuple[str, str], int]:
    """Add ``buckets``: a (width, start, series) already stored gets the counts summed. Returns
    the series ids created (hand them to ``ids.commit`` once the transaction has committed)."""
    _functions(store)
    ids = ids or SeriesIds()
    todo = list(buckets)
    fresh: dict[tuple[str, str], int] = {}
    ids.resolve(store, {(b.check, b.target) for b in todo}, fresh)
    rows = [
        (b.width, b.start, ids.id_of((b.check, b.target), fresh), b.runs, b.good, b.duration_sum, b.duration_max,
         encode_hist(b.hist))
        for b in todo
    ]  # fmt: skip
    store.db.executemany(f"INSERT INTO history_buckets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?){_ADD}", rows)
    return fresh


def write_buckets(buckets: list[Bucket], ids: SeriesIds) -> tuple[Callable[[Store], None], Callable[[], None]]:
    """The journal write that stores ``buckets``, and what to run once it has committed."""
    created: list[dict[tuple[str, str], int]] = []

    def write(store: Store) -> None:
        created[:] = [upsert(store, buckets, ids)]

    def after() -> None:
        for fresh in created:
            ids.commit(fresh)

    return write, after


# --- roll-up and retention, a chunk per transaction ------------------------------------------------


def rollup_step(store: Store, now: float, retention: float = DEFAULT_RETENTION) -> bool:
    """One chunk of roll-up: the oldest period of the next tier whose rows of a finer tier have
    all aged out is merged into it (one row per series) and those rows deleted; failing that, one
    width's rows older than ``retention`` are deleted. Returns True if it did something (call
    again), False when nothing is left to do. Each call is one short transaction."""
    _functions(store)
    widths = [t.width for t in TIERS] + [LAST_WIDTH]
    for tier, coarser in zip(TIERS, widths[1:], strict=True):
        latest = now - tier.keep - tier.width  # rows starting at or before this have aged out
        row = store.db.execute(
            "SELECT min(start) FROM history_buckets WHERE width = ? AND start <= ?", (tier.width, latest)
        ).fetchone()
        if row[0] is None:
            continue
        period = int(row[0]) // coarser * coarser
        end = min(period + coarser, int(latest) + 1)  # the period's aged-out rows (all, once it is over)
        store.db.execute(
            f"INSERT INTO history_buckets ({_COLUMNS}) SELECT :c, :p, series, sum(runs), sum(good), sum(duration_sum),"
            " max(duration_max), fw_hist_sum(hist) FROM history_buckets WHERE width = :w AND start >= :p"
            f" AND start < :e GROUP BY series{_ADD}",
            {"c": coarser, "p": period, "w": tier.width, "e": end},
        )
        store.db.execute(
            "DELETE FROM history_buckets WHERE width = ? AND start >= ? AND start < ?", (tier.width, period, end)
        )
        return True
    for width in widths:
        gone = store.db.execute(
            "DELETE FROM history_buckets WHERE width = ? AND start <= ?", (width, now - retention - width)
        ).rowcount
        if gone:
            return True
    return False


# --- reads ---------------------------------------------------------------------------------------
#
# Every read goes width by width over a range of ``start``: the primary key bounds it (no scan of
# the table, no sort). Big reads are cut into chunks of about CHUNK_ROWS rows, so a caller on the
# store writer's thread can let other work in between (agent.engine.history_recorder does).

CHUNK_ROWS = 20_000
WIDTHS: tuple[int, ...] = (*(t.width for t in TIERS), LAST_WIDTH)


def series_of_checks(store: Store, checks: Collection[str] | None = None) -> dict[int, tuple[str, str]]:
    """Series id -> (check, target), for ``checks`` (all when None)."""
    rows = store.db.execute("SELECT id, check_name, target FROM history_series").fetchall()
    return {int(i): (c, t) for i, c, t in rows if checks is None or c in checks}


def chunks(store: Store, since: float, until: float) -> list[tuple[int, int, int]]:
    """``(width, start_from, start_before)`` pieces covering the buckets that overlap ``[since,
    until)``, each about :data:`CHUNK_ROWS` rows at most."""
    series = max(1, int(store.db.execute("SELECT count(*) FROM history_series").fetchone()[0]))
    out: list[tuple[int, int, int]] = []
    for width in WIDTHS:
        low, high = store.db.execute(
            "SELECT min(start), max(start) FROM history_buckets WHERE width = ?", (width,)
        ).fetchone()
        if low is None:
            continue
        first = max(int(since // width * width), int(low))  # buckets align to their width: this one holds since
        end = min(int(until), int(high) + 1)
        step = max(1, CHUNK_ROWS // series) * width
        for a in range(first, end, step):
            out.append((width, a, min(a + step, end)))
    return out


def load_many(
    store: Store, keys: Collection[tuple[str, str]], since: float, until: float
) -> dict[tuple[str, str], list[Bucket]]:
    """The stored buckets of each (check, target) in ``keys`` overlapping ``[since, until)``,
    oldest first: the key's ranges, the rows of other series never reach Python."""
    wanted = set(keys)
    names = {i: key for i, key in series_of_checks(store, {c for c, _ in wanted}).items() if key in wanted}
    out: dict[tuple[str, str], list[Bucket]] = {}
    if not names:
        return out
    marks = ",".join("?" * len(names))
    for width in WIDTHS:
        rows = store.db.execute(
            f"SELECT {_COLUMNS} FROM history_buckets WHERE width = ? AND start > ? AND start < ?"
            f" AND series IN ({marks})",
            (width, since - width, until, *names),
        )
        for w, start, series, runs, good, dsum, dmax, hist in rows:
            key = names[series]
            out.setdefault(key, []).append(Bucket(key[0], key[1], start, w, runs, good, dsum, dmax, decode_hist(hist)))
    for buckets in out.values():
        buckets.sort(key=lambda b: b.start)
    return out


def load(store: Store, check: str, target: str | None, since: float, until: float) -> list[Bucket]:
    """The stored buckets of ``check`` (one ``target``, or all of them with None) overlapping
    ``[since, until)``, oldest first."""
    names = series_of_checks(store, [check])
    keys = [key for key in names.values() if target is None or key[1] == target]
    found = load_many(store, keys, since, until)
    return sorted((b for key in keys for b in found.get(key, [])), key=lambda b: (b.start, b.target))


@dataclass(frozen=True, slots=True)
class RunCounts:
    """Runs and ok runs of one check (all its targets) over a span."""

    runs: int
    ok: int

    @property
    def uptime(self) -> float | None:
        return self.ok / self.runs if self.runs else None


@dataclass
class CheckSums:
    """Per check, summed chunk by chunk (:func:`read_chunk`): runs and ok runs over each of
    ``spans`` seconds back from ``now`` (a bucket counts when it ends inside the span, in full),
    per UTC day (day number since the epoch) from ``days_from``, and (``steps`` > 0) the runs in
    steps of ``step_width`` seconds from ``step_from`` (a bucket counts in the step holding its
    start; target ``"*"``)."""

    now: float
    spans: tuple[float, ...]
    days_from: int
    step_from: int = 0
    step_width: int = 900
    steps: int = 0
    names: dict[int, tuple[str, str]] = field(default_factory=dict)
    totals: dict[str, list[int]] = field(default_factory=dict)  # runs, ok per span
    days: dict[str, dict[int, RunCounts]] = field(default_factory=dict)
    latency: dict[str, list[Bucket]] = field(default_factory=dict)

    @property
    def since(self) -> float:
        return min(self.now - max(self.spans), self.days_from * DAY, self.step_from if self.steps else self.now)

    def counts(self, check: str) -> tuple[RunCounts, ...]:
        v = self.totals.get(check, [0] * 2 * len(self.spans))
        return tuple(RunCounts(v[2 * i], v[2 * i + 1]) for i in range(len(self.spans)))


def read_chunk(store: Store, sums: CheckSums, width: int, a: int, b: int) -> None:
    """Add the buckets of ``width`` starting in ``[a, b)`` to ``sums`` (on the database thread)."""
    _functions(store)
    if not sums.names:
        sums.names = series_of_checks(store)
    edges = [f"start + width > {sums.now - s:.0f}" for s in sums.spans]
    cases = ", ".join(
        f"sum(CASE WHEN {e} THEN runs ELSE 0 END), sum(CASE WHEN {e} THEN good ELSE 0 END)" for e in edges
    )
    rows = store.db.execute(
        f"SELECT series, start / 86400, sum(runs), sum(good), {cases} FROM history_buckets"
        " WHERE width = ? AND start >= ? AND start < ? GROUP BY series, start / 86400",
        (width, a, b),
    )
    for series, day, runs, good, *counts in rows:
        key = sums.names.get(series)
        if key is None:
            continue
        have = sums.totals.setdefault(key[0], [0] * len(counts))
        for i, c in enumerate(counts):
            have[i] += int(c)
        if day >= sums.days_from:
            days = sums.days.setdefault(key[0], {})
            was = days.get(day, RunCounts(0, 0))
            days[day] = RunCounts(was.runs + runs, was.ok + good)
    last = sums.step_from + sums.steps * sums.step_width
    if not sums.steps or b <= sums.step_from or a >= last:
        return
    f, w = sums.step_from, sums.step_width
    rows = store.db.execute(
        "SELECT series, (start - :f) / :w, sum(runs), sum(good), sum(duration_sum), max(duration_max),"
        " fw_hist_sum(hist) FROM history_buckets WHERE width = :width AND start >= :a AND start < :b"
        " GROUP BY series, (start - :f) / :w",
        {"f": f, "w": w, "width": width, "a": max(a, f), "b": min(b, last)},
    )
    empty = (0,) * BINS
    for series, step, runs, good, dsum, dmax, hist in rows:
        key = sums.names.get(series)
        if key is None or not 0 <= step < sums.steps:
            continue
        row = sums.latency.get(key[0])
        if row is None:
            row = sums.latency[key[0]] = [
                Bucket(key[0], "*", f + i * w, w, 0, 0, 0.0, 0.0, empty) for i in range(sums.steps)
            ]
        row[step] = row[step].merged(Bucket(key[0], "*", row[step].start, w, runs, good, dsum, dmax, decode_hist(hist)))


def read_all(store: Store, sums: CheckSums) -> CheckSums:
    """:func:`read_chunk` over every chunk at once (tests, the bench, small stores)."""
    for width, a, b in chunks(store, sums.since, sums.now + 1):
        read_chunk(store, sums, width, a, b)
    return sums
