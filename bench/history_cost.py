"""Run history at scale: disk and write cost of 10,000 targets' 1-minute buckets in the real store.

    .venv/bin/python bench/history_cost.py                    # 10,000 targets, 8 simulated hours
    .venv/bin/python bench/history_cost.py --targets 1000 --hours 2

Simulates what the daemon does (``agent.engine.history_recorder``) without probing: every
simulated minute each target gets one run (a 60 s interval) into the ``Accumulator``; every
simulated 30 s the finished buckets are flushed as one write (``history.write_buckets``, one
transaction, as the store writer commits it), and every simulated 10 minutes the roll-up runs
(``history.rollup_store``, one transaction). Time is simulated, so 8 hours take a few minutes;
the costs measured are the real SQLite ones on a temp directory.

Prints the write time per flush, the roll-up time (before and after the first minute buckets age
out at 6 h), the rows per bucket width, the bytes per row of the table and its index (SQLite's
``dbstat``, else the file size), and the steady-state size per target (360 minute + 192
quarter-hour + 720 hour rows for 30 days' retention) and per target-day.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.incidents import history
from agent.incidents.history import DAY, Accumulator
from agent.incidents.store import Store


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def sizes(store: Store) -> dict[str, int]:
    try:
        rows = store.db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        return {str(name): int(size) for name, size in rows}
    except Exception:
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--checks", type=int, default=100, help="the targets are spread over this many checks")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fwbench-history-")
    try:
        store = Store(tmp)
        acc = Accumulator()
        per = max(1, args.targets // args.checks)
        names = [(f"check-{i // per}", f"https://host-{i}.example.test/health") for i in range(args.targets)]
        t0 = 1_700_000_000 // DAY * DAY
        flush_s: list[float] = []
        flush_rows: list[int] = []
        rollups: list[tuple[float, float, int]] = []  # (simulated hour, seconds, rows read)
        add_s = 0.0
        steps = int(args.hours * 120)  # 30 s steps
        for step in range(steps):
            now = t0 + step * 30
            if step % 2 == 0:  # each target runs once a minute, at its own phase in the minute
                t = time.perf_counter()
                for i, (check, target) in enumerate(names):
                    acc.add(check, target, now + (i % 60), i % 97 != 0, 0.02 + (i % 50) * 0.004)
                add_s += time.perf_counter() - t
            buckets = acc.flush(now)
            if buckets:
                t = time.perf_counter()
                with store.transaction():
                    history.write_buckets(buckets)(store)
                flush_s.append(time.perf_counter() - t)
                flush_rows.append(len(buckets))
            if step % 20 == 0 and step:
                t = time.perf_counter()
                with store.transaction():
                    read = history.rollup_store(store, now)
                rollups.append(((now - t0) / 3600, time.perf_counter() - t, read))
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        by_width = dict(store.db.execute("SELECT width, count(*) FROM history GROUP BY width").fetchall())
        total_rows = sum(by_width.values())
        space = sizes(store)
        table = space.get("history", 0)
        index = space.get("history_age", 0)
        file_bytes = os.path.getsize(os.path.join(tmp, "firstwatch.db"))
        per_row = (table + index) / total_rows if space else file_bytes / total_rows
        steady_rows = 360 + 192 + 24 * 30
        runs = steps // 2 * args.targets
        print(f"targets {args.targets}, simulated {args.hours:g} h, {runs:,} runs")
        print(f"per-run add: {add_s / runs * 1e6:.2f} us")
        print(
            f"flush (one transaction): {len(flush_s)} flushes, rows p50 {pct(flush_rows, 0.5):.0f},"
            f" time p50 {pct(flush_s, 0.5) * 1e3:.1f} ms, p99 {pct(flush_s, 0.99) * 1e3:.1f} ms,"
            f" max {max(flush_s) * 1e3:.1f} ms"
        )
        young = [s for h, s, _ in rollups if h < 6.1]
        aged = [(s, r) for h, s, r in rollups if h >= 6.2]
        print(f"rollup before minutes age out: p50 {pct(young, 0.5) * 1e3:.1f} ms")
        if aged:
            print(
                f"rollup once minutes age out (every 10 min): p50 {pct([s for s, _ in aged], 0.5) * 1e3:.0f} ms,"
                f" max {max(s for s, _ in aged) * 1e3:.0f} ms, rows read p50 {pct([r for _, r in aged], 0.5):.0f}"
            )
        print(f"rows by width: {by_width} = {total_rows:,}")
        print(
            f"bytes: table {table:,}, index {index:,}, file {file_bytes:,};"
            f" {per_row:.0f} bytes/row (table + index)"
        )
        print(
            f"steady state (30 days): {steady_rows} rows/target = {steady_rows * per_row / 1024:.0f} KiB/target,"
            f" {steady_rows * per_row * args.targets / 2**20:.0f} MiB for {args.targets} targets;"
            f" {steady_rows * per_row / 30 / 1024:.1f} KiB per target-day of retention"
        )
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
