"""Run history at scale: write, roll-up, read and disk cost of 10,000 targets in the real store.

    .venv/bin/python bench/history_cost.py                          # 10,000 targets, 90 days fast-forwarded, 7.5 h
    .venv/bin/python bench/history_cost.py --days 0 --hours 7       # an empty store: minute rows only at first
    .venv/bin/python bench/history_cost.py --targets 1000 --hours 2 --json /tmp/h.json

Simulates what the daemon does (``agent.engine.history_recorder``) without probing. ``--days D``
first fast-forwards: it writes, directly and without timing, the coarser rows a store holds after
D days at the simulation's start (day rows back to the retention, hour rows for 8 days,
15-minute rows for 2 days; no minute rows), so the roll-ups of every tier and the reads run on a
table of steady-state size. Then, every simulated minute, each target gets one run (a 60 s
interval, at its own phase in the minute) into the ``Accumulator``, the finished 1-minute
buckets are flushed as the writer does it (``write, after = history_store.write_buckets(...)``;
``with store.transaction(): write(store)``; ``after()``), and every 10 simulated minutes the
roll-up runs as the recorder's roll-up task does: ``rollup_step`` in a loop, each call its own
transaction, each timed. Time is simulated; the costs are the real SQLite ones on a temp dir
(WAL, ``synchronous=NORMAL``).

Prints the per-run ``add`` cost, the flush time p50/p99/max, the roll-up chunk times by kind
(1 min -> 15 min, 15 min -> 1 h, 1 h -> 1 day, retention) and chunks per roll-up, before and
after the minute rows age out (6 h), the database thread's busy share from history (flush +
roll-up seconds per simulated minute), the rows per width and bytes per row (``dbstat``, else the
file size), the steady-state size (360 + 192 + 192 + 90 rows per target at 90 days), and at the
end the status page's read (``history_store.read_chunk`` over every chunk, as the recorder's
``views()`` makes it, each chunk timed) and the SLO seed's
(``load_many`` of 10 series over 28 days).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.engine import history_recorder
from agent.incidents import history_store as hs
from agent.incidents.history import BINS, DAY, HOUR, LAST_WIDTH, MINUTE, TIERS, Accumulator, bin_of, encode_hist
from agent.incidents.store import Store

RETENTION = 90 * DAY
STEADY_ROWS = 360 + 192 + 192 + 90  # per target at 90 days: minute, 15-minute, hour, day rows
FACTORS = (1.0, 1.3, 1.7, 2.5)  # a target's duration varies by minute: 2-4 histogram bins per coarse row


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def sizes(store: Store) -> dict[str, int]:
    try:
        rows = store.db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        return {str(name): int(size) for name, size in rows}
    except Exception:
        return {}


def base_duration(i: int) -> float:
    return 0.02 + (i % 50) * 0.004


def coarse_hist(i: int, runs: int) -> str:
    """A coarse row's histogram: the target's runs spread over its duration factors."""
    counts = [0] * BINS
    for k, f in enumerate(FACTORS):
        counts[bin_of(base_duration(i) * f)] += runs // len(FACTORS) + (1 if k < runs % len(FACTORS) else 0)
    return encode_hist(tuple(counts))


def fast_forward(store: Store, n: int, t0: int, days: float) -> dict[str, int]:
    """The coarser rows a store holds at ``t0`` after ``days`` of one run per target per minute
    (series ids 1..n, created here as the first flush would have)."""
    with store.transaction():
        store.db.executemany(
            "INSERT INTO history_series (id, check_name, target) VALUES (?, ?, ?)",
            ((i + 1, *names_of(i, n)) for i in range(n)),
        )
    oldest = max(t0 - days * DAY, t0 - RETENTION + 1)
    q_end = t0  # 15-minute rows up to the start (the simulation's minute rows come after it)
    q_first = (t0 - TIERS[1].keep) // TIERS[1].width * TIERS[1].width  # 2 days of them
    h_first = (t0 - TIERS[2].keep) // HOUR * HOUR  # 8 days of hour rows before those
    plan: list[tuple[int, int, int]] = []  # (width, start, runs per row)
    day = int(oldest // DAY * DAY)
    while day < h_first:
        span = min(day + DAY, h_first) - max(day, int(oldest))
        plan.append((LAST_WIDTH, day, span // MINUTE))
        day += DAY
    plan += [(HOUR, s, 60) for s in range(max(h_first, int(oldest) // HOUR * HOUR), q_first, HOUR)]
    plan += [(900, s, 15) for s in range(max(q_first, int(oldest) // 900 * 900), q_end, 900)]
    plan.sort()
    hists: dict[tuple[int, int], str] = {}
    written = 0
    for width, start, runs in plan:
        rows = []
        for i in range(n):
            h = hists.get((i % 50, runs))
            if h is None:
                h = hists[(i % 50, runs)] = coarse_hist(i, runs)
            d = base_duration(i)
            bad = runs // 97 if i % 97 else runs // 2
            rows.append((width, start, i + 1, runs, runs - bad, d * 1.6 * runs, d * FACTORS[-1], h))
        with store.transaction():
            store.db.executemany(
                "INSERT INTO history_buckets (width, start, series, runs, good, duration_sum, duration_max, hist)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        written += len(rows)
    return {"rows": written}


def on_thread(fn: Callable[[], object], probe: bool) -> tuple[object, float, list[float]]:
    """``fn()`` and its time; with ``probe``, run on a thread (as the database thread runs it)
    while an asyncio loop on this thread sleeps 5 ms at a time: how late each wake-up was."""
    if not probe:
        t = time.perf_counter()
        return fn(), time.perf_counter() - t, []

    async def run() -> tuple[object, float, list[float]]:
        loop = asyncio.get_running_loop()
        box: dict[str, object] = {}

        def timed() -> None:
            t = time.perf_counter()
            box["r"] = fn()
            box["s"] = time.perf_counter() - t

        fut = loop.run_in_executor(None, timed)
        lags = []
        while not fut.done():
            t = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - t - 0.005)
        await fut
        return box["r"], float(box["s"]), lags  # type: ignore[arg-type]

    return asyncio.run(run())


def names_of(i: int, n: int, checks: int = 100) -> tuple[str, str]:
    per = max(1, n // checks)
    return f"check-{i // per}", f"https://host-{i}.example.test/health"


def kind_of(store: Store, now: float, retention: float) -> str:
    """What the next ``rollup_step`` will do (the same tests, read-only, untimed)."""
    widths = [t.width for t in TIERS] + [LAST_WIDTH]
    labels = {MINUTE: "1m", 900: "15m", HOUR: "1h", DAY: "1d"}
    for tier, coarser in zip(TIERS, widths[1:], strict=True):
        latest = now - tier.keep - tier.width
        row = store.db.execute(
            "SELECT min(start) FROM history_buckets WHERE width = ? AND start <= ?", (tier.width, latest)
        ).fetchone()
        if row[0] is not None:
            return f"{labels[tier.width]}->{labels[coarser]}"
    return "retention"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=7.5)
    ap.add_argument("--days", type=float, default=90, help="fast-forward: coarser rows of this many days first")
    ap.add_argument("--checks", type=int, default=100, help="the targets are spread over this many checks")
    ap.add_argument("--start-hour", type=float, default=22, help="UTC hour of the start (22: a day ends at 2 h)")
    ap.add_argument("--reads", type=int, default=2, help="repeats of each read at the end")
    ap.add_argument("--loop-probe", action="store_true", help="run the reads on a thread; time an event loop's lag")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fwbench-history-")
    out: dict[str, object] = {"targets": args.targets, "hours": args.hours, "days": args.days}
    try:
        store = Store(tmp)
        n = args.targets
        names = [names_of(i, n, args.checks) for i in range(n)]
        checks = sorted({c for c, _ in names})
        t0 = int(1_700_000_000 // DAY * DAY + args.start_hour * HOUR)
        if args.days:
            t = time.perf_counter()
            ff = fast_forward(store, n, t0, args.days)
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            print(f"fast-forward: {ff['rows']:,} coarser rows written in {time.perf_counter() - t:.0f} s (untimed)")
        acc = Accumulator()
        ids = hs.SeriesIds()
        flushes: list[tuple[float, float, int]] = []  # (simulated hour, seconds, rows)
        chunks: list[tuple[float, str, float]] = []  # (simulated hour, kind, seconds)
        rollups: list[tuple[float, int, float]] = []  # (simulated hour, chunks, seconds)
        add_s = 0.0
        minutes = int(args.hours * 60)
        wall = time.perf_counter()
        for m in range(minutes + 1):
            now = t0 + m * MINUTE
            hour = m / 60
            if m:  # the finished minute's buckets, as the recorder's flush every 60 s
                buckets = acc.flush(now)
                t = time.perf_counter()
                write, after = hs.write_buckets(buckets, ids)
                with store.transaction():
                    write(store)
                after()
                flushes.append((hour, time.perf_counter() - t, len(buckets)))
            if m and m % 10 == 0:  # the roll-up task every 600 s: one transaction per chunk
                took, count = 0.0, 0
                while True:
                    kind = kind_of(store, now, RETENTION)
                    t = time.perf_counter()
                    with store.transaction():
                        more = hs.rollup_step(store, now, RETENTION)
                    s = time.perf_counter() - t
                    took += s
                    if not more:
                        break
                    count += 1
                    chunks.append((hour, kind, s))
                rollups.append((hour, count, took))
            if m < minutes:
                factor = FACTORS[m % len(FACTORS)]
                t = time.perf_counter()
                for i, (check, target) in enumerate(names):
                    acc.add(check, target, now + (i % 60), i % 97 != 0, base_duration(i) * factor)
                add_s += time.perf_counter() - t
        sim_wall = time.perf_counter() - wall
        now = t0 + minutes * MINUTE
        runs = minutes * n
        print(f"targets {n}, {args.checks} checks, simulated {args.hours:g} h from {args.days:g} days, {runs:,} runs")
        print(f"simulation wall time {sim_wall:.0f} s")
        print(f"per-run add: {add_s / runs * 1e6:.2f} us")
        first, rest = flushes[0], flushes[1:]
        fl = [s for _, s, _ in rest]
        print(f"flush: first (series ids resolved) {first[1] * 1e3:.0f} ms for {first[2]:,} rows")
        print(
            f"flush: {len(fl)} more, rows p50 {pct([r for *_, r in rest], 0.5):.0f},"
            f" time p50 {pct(fl, 0.5) * 1e3:.1f} ms, p99 {pct(fl, 0.99) * 1e3:.1f} ms, max {max(fl) * 1e3:.1f} ms"
        )
        out["add_us"] = add_s / runs * 1e6
        out["flushes"] = flushes
        out["chunks"] = chunks
        out["rollups"] = rollups
        aged_at = TIERS[0].keep / HOUR + 1 / 60  # the first minute rows age out after 6 h + 1 min
        for label, lo, hi in (("before minutes age out", 0.0, aged_at), ("after", aged_at, 1e9)):
            mine = [(k, s) for h, k, s in chunks if lo <= h < hi]
            ro = [(c, s) for h, c, s in rollups if lo <= h < hi]
            if not ro:
                continue
            print(
                f"roll-ups {label}: {len(ro)}, chunks per roll-up p50 {pct([c for c, _ in ro], 0.5):.0f}"
                f" max {max(c for c, _ in ro)}, roll-up total p50 {pct([s for _, s in ro], 0.5) * 1e3:.0f} ms"
                f" max {max(s for _, s in ro) * 1e3:.0f} ms"
            )
            for kind in sorted({k for k, _ in mine}):
                ks = [s for k, s in mine if k == kind]
                print(f"  chunk {kind}: {len(ks)}, p50 {pct(ks, 0.5) * 1e3:.0f} ms, max {max(ks) * 1e3:.0f} ms")
        # the database thread's busy share from history, per simulated minute, once minutes age out
        late = [h for h, _, _ in flushes if h >= aged_at]
        if late:
            span_min = len(late)
            busy = sum(s for h, s, _ in flushes if h >= aged_at) + sum(s for h, _, s in rollups if h >= aged_at)
            print(
                f"database thread from history after 6 h: {busy / span_min:.2f} s per minute"
                f" = {busy / span_min / 60 * 100:.2f} % (flush + roll-up)"
            )
            out["busy_share"] = busy / span_min / 60
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        by_width = dict(store.db.execute("SELECT width, count(*) FROM history_buckets GROUP BY width").fetchall())
        total_rows = sum(by_width.values())
        space = sizes(store)
        table = space.get("history_buckets", 0)
        series = space.get("history_series", 0) + space.get("sqlite_autoindex_history_series_1", 0)
        file_bytes = os.path.getsize(os.path.join(tmp, "firstwatch.db"))
        per_row = table / total_rows if space else file_bytes / total_rows
        print(f"rows by width: {by_width} = {total_rows:,} ({total_rows / n:.0f} per target)")
        print(
            f"bytes: history_buckets {table:,}, history_series + index {series:,}, file {file_bytes:,};"
            f" {per_row:.1f} bytes/row (history_buckets, dbstat)"
        )
        print(
            f"steady state (90 days): {STEADY_ROWS} rows/target = {STEADY_ROWS * per_row / 1024:.1f} KiB/target,"
            f" {STEADY_ROWS * per_row * n / 2**20:.0f} MiB for {n:,} targets"
            f" (+ {series / 2**20:.1f} MiB of series names)"
        )
        out.update(by_width={str(k): v for k, v in by_width.items()}, bytes_per_row=per_row, file=file_bytes)
        # the reads: the status page (every check) and the SLO seed (10 series, 28 days)
        view_s, view_lags, chunk_s = [], [], []
        step = int(now // history_recorder.LATENCY_STEP) + 1
        first_day = int(now // DAY) - history_recorder.DAYS_SHOWN + 1

        def read_views() -> dict[str, object]:
            """What the recorder's views() does on the database thread, a chunk per call."""
            sums = hs.CheckSums(
                now, history_recorder.SPANS, first_day, (step - 96) * history_recorder.LATENCY_STEP,
                history_recorder.LATENCY_STEP, 96,
            )  # fmt: skip
            for width, a, b in hs.chunks(store, sums.since, now + 1):
                t = time.perf_counter()
                hs.read_chunk(store, sums, width, a, b)
                chunk_s.append(time.perf_counter() - t)
            incidents = store.incidents(since=first_day * DAY)
            return dict(history_recorder._views(sums, incidents, [], now, checks))

        for _ in range(args.reads):
            views, s, lags = on_thread(read_views, args.loop_probe)
            view_s.append(s)
            view_lags += lags
        assert isinstance(views, dict) and len(views) == len(checks)
        parts = {
            "chunks": len(chunk_s) // max(1, args.reads),
            "chunk_p50_s": pct(chunk_s, 0.5),
            "chunk_max_s": max(chunk_s),
        }
        print(
            f"status page views() over {len(checks)} checks, {total_rows:,} rows: "
            + ", ".join(f"{s:.2f}" for s in view_s)
            + f" s in {parts['chunks']} chunks (one database call each): p50 {parts['chunk_p50_s']:.3f} s,"
            f" max {parts['chunk_max_s']:.3f} s"
        )
        load_s, load_lags = [], []
        for k in range(args.reads):
            keys = [names[(k * 997 + j * 1013) % n] for j in range(10)]
            found, s, lags = on_thread(
                lambda keys=keys: hs.load_many(store, keys, now - 28 * DAY, now), args.loop_probe
            )
            load_s.append(s)
            load_lags += lags
        got = sum(len(v) for v in found.values())  # type: ignore[union-attr]
        print(f"load_many of 10 series over 28 days ({got} buckets): " + ", ".join(f"{s:.2f}" for s in load_s) + " s")
        idle = on_thread(lambda: time.sleep(2), args.loop_probe)[2]  # the probe's floor: a thread that waits
        for label, lags in (("a sleeping thread", idle), ("views()", view_lags), ("load_many", load_lags)):
            if lags:
                print(
                    f"event loop beside {label} on a thread: {len(lags)} wake-ups of 5 ms late by p50"
                    f" {pct(lags, 0.5) * 1e3:.1f} ms, p99 {pct(lags, 0.99) * 1e3:.1f} ms, max {max(lags) * 1e3:.1f} ms"
                )
        out.update(views_s=view_s, views_parts=parts, load_many_s=load_s, view_lags=view_lags, load_lags=load_lags)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
