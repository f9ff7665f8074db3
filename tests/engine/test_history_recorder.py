"""The daemon's run history with a real store and writer: a locked database loses no run, a stop
writes the open minute, roll-up runs in chunks, and the status page's numbers count the runs not
flushed yet and colour a day by its worst incident."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent.engine import history_recorder
from agent.engine.history_recorder import HistoryRecorder
from agent.incidents import history_store as hs
from agent.incidents.history import DAY
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter
from checks.base import Result

T0 = 1_700_000_000 // DAY * DAY + 3600


def result(t: float, ok: bool, target: str = "a", duration: float = 0.05) -> Result:
    return Result(
        check="web", target=target, type="http", ok=ok, started_at=t, duration_s=duration, values={},
        error_kind=None if ok else "status", error=None if ok else "HTTP 503",
    )  # fmt: skip


async def test_a_locked_database_delays_history_and_loses_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path), busy_timeout=0.05)
    writer = StoreWriter(store, backoff=0.05)
    now = [T0]
    rec = HistoryRecorder(writer, clock=lambda: now[0])
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the file
    for i in range(120):  # two minutes of runs, one a second
        rec.record(result(T0 + i, i % 10 != 0))
    now[0] = T0 + 125
    assert rec.flush() == 2  # both finished minutes handed to the writer
    await asyncio.sleep(0.3)
    assert writer.waiting >= 1 and writer.trouble is not None  # cannot commit: kept in memory, retried
    for i in range(120, 600):  # eight more minutes while it lasts: held here, coarsened past the bound
        rec.record(result(T0 + i, True))
    now[0] = T0 + 605
    monkeypatch.setattr(history_recorder, "HELD_MAX", 4)
    assert rec.flush() == 0 and len(rec.pending()) <= 3  # 8 minutes -> one 15-minute bucket, and the open one
    assert sum(b.runs for b in rec.pending()) == 480
    other.execute("ROLLBACK")
    other.close()
    assert await writer.drain(5.0)
    rec.record(result(T0 + 606, False))
    rec.stop()  # the held buckets and the open minute are written too
    assert await writer.drain(5.0)
    stored = await writer.call(hs.load, store, "web", "a", T0 - 60, T0 + 700)
    assert sum(b.runs for b in stored) == 601 and sum(b.good for b in stored) == 588
    await writer.close()
    store.close()


async def test_rollup_runs_in_chunks_and_views_count_pending_runs_and_incident_days(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    writer = StoreWriter(store)
    now = [float(T0)]
    rec = HistoryRecorder(writer, clock=lambda: now[0], min_age=0.0)
    for i in range(0, 8 * 3600, 60):  # 8 hours of one run a minute, 2 targets
        rec.record(result(T0 + i, True))
        rec.record(result(T0 + i, i % 3600 != 0, target="b", duration=0.5))
    now[0] = T0 + 8 * 3600
    rec.flush()
    assert await writer.drain(5.0)
    assert await rec.rollup() >= 2  # minutes older than 6 h: one 15-minute period per transaction
    widths = {w for (w,) in store.db.execute("SELECT DISTINCT width FROM history_buckets")}
    assert widths == {60, 900}
    rec.record(result(now[0] + 1, False))  # not flushed: still counted
    with store.transaction():
        store.db.execute(
            "INSERT INTO incidents (id, fingerprint, check_name, target, rule, severity, max_severity, summary,"
            " started_at, fired_at, resolved_at)"
            " VALUES ('i1', 'f', 'web', 'a', 'down', 'minor', 'major', 's', ?, ?, ?)",
            (T0 + 60, T0 + 60, T0 + 120),
        )
    views = await rec.views(["web", "quiet"])
    web = views["web"]
    assert web["uptime"]["24h"] == (2 * 480 - 8 + 0) / (2 * 480 + 1)
    assert web["uptime"]["7d"] == web["uptime"]["24h"]
    (today,) = web["days"]
    assert today["runs"] == 961 and today["state"] == "major"  # the worst severity it reached that day
    assert len(web["latency"]) == 96
    assert [p["p95_s"] for p in web["latency"] if p["p95_s"] is not None][-1] is not None
    assert views["quiet"] == {
        "uptime": {"24h": None, "7d": None, "30d": None},
        "days": [],
        "latency": views["quiet"]["latency"],
    }
    assert all(p["p95_s"] is None for p in views["quiet"]["latency"])
    await writer.close()
    store.close()
