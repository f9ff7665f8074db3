"""The durable outbox: every event is committed to SQLite, once per interested sink, before any
sink sees it; each sink's row stays until it is delivered, skipped or dropped.

Routing happens here, at commit time, once: ``SinkConfig.accepts`` (severity, kinds, checks),
and ``delay`` for escalation (a firing row for a delayed sink waits until ``not_before``). The
delivery workers (``agent.delivery.dispatch``) only read rows back in order. Rows survive a crash or a
restart, so nothing acknowledged is lost; each sink's backlog is bounded (``max_pending``): past
the bound the oldest pending row is dropped, counted, and reported by the dispatcher.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, replace

from agent.core.events import Event, new_event_id
from agent.delivery.sinks.base import Sink
from agent.incidents.store import Store

ESCALATED_KINDS = ("firing", "changed", "reminder")


@dataclass(frozen=True)
class Row:
    seq: int
    sink: str
    event_id: str
    incident: str | None
    kind: str
    body: str
    created: float
    not_before: float
    retry_at: float
    attempts: int

    def event(self) -> Event:
        return Event.from_dict(json.loads(self.body))


class Outbox:
    def __init__(self, store: Store, sinks: list[Sink], max_pending: int = 10000) -> None:
        self.store = store
        self.sinks = {s.name: s for s in sinks}
        self.max_pending = max_pending
        self.owner = store.owner  # the shard that queued a row delivers it
        self.overflow: Counter[str] = Counter()  # rows dropped past the bound, per sink (read by the dispatcher)
        self.pending: Counter[str] = Counter()
        self._stale = True  # counted on first use, on the database thread, and again after a rollback

    def mark_stale(self) -> None:
        """A transaction that enqueued or finished rows was rolled back: count again."""
        self._stale = True

    def _sync(self) -> None:
        if self._stale:
            rows = self.store.db.execute(
                "SELECT sink, COUNT(*) FROM outbox WHERE state = 'pending' AND owner = ? GROUP BY sink", (self.owner,)
            ).fetchall()
            self.pending = Counter(dict(rows))
            self._stale = False

    def enqueue(self, event: Event, only: str | None = None, skip: frozenset[str] = frozenset()) -> list[str]:
        """Add ``event`` for every sink that accepts it (or just ``only``; never those in
        ``skip``); call inside a transaction. Returns the sinks it was queued for."""
        self._sync()
        queued = []
        body = event.to_json()
        for name, sink in self.sinks.items():
            if (only is not None and name != only) or name in skip:
                continue
            if not sink.config.accepts(event) and not self._follow_up(name, sink, event):
                continue
            delay = sink.config.delay or 0.0
            not_before = event.time + delay if delay and event.kind == "firing" else event.time
            if self.pending[name] >= self.max_pending:
                self._drop_oldest(name)
            self.store.db.execute(
                "INSERT INTO outbox (sink, event_id, incident, kind, body, created, not_before, retry_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, event.id, event.incident, event.kind, body, time.time(), not_before, 0.0, self.owner),
            )
            self.pending[name] += 1
            queued.append(name)
        return queued

    def _follow_up(self, name: str, sink: Sink, event: Event) -> bool:
        """A change or resolution goes to every sink that has the incident, whatever its
        severity now: the pager that was woken for a critical hears that it is over."""
        if event.kind not in ("changed", "resolved") or event.incident is None:
            return False
        if not sink.config.accepts(event, ignore_severity=True):
            return False
        return (
            self.store.db.execute(
                "SELECT 1 FROM outbox WHERE sink = ? AND incident = ? AND state != 'skipped' LIMIT 1",
                (name, event.incident),
            ).fetchone()
            is not None
        )

    def _drop_oldest(self, sink: str) -> None:
        self.store.db.execute(
            "UPDATE outbox SET state = 'dropped', last_error = 'outbox full', done_at = ? WHERE seq ="
            " (SELECT seq FROM outbox WHERE sink = ? AND owner = ? AND state = 'pending' ORDER BY seq LIMIT 1)",
            (time.time(), sink, self.owner),
        )
        self.pending[sink] -= 1
        self.overflow[sink] += 1

    def head(self, sink: str, now: float) -> Row | None:
        """The next row to deliver: the oldest pending one that is not waiting on a ``delay``."""
        row = self.store.db.execute(
            "SELECT seq, sink, event_id, incident, kind, body, created, not_before, retry_at, attempts FROM outbox"
            " WHERE sink = ? AND owner = ? AND state = 'pending' AND not_before <= ? ORDER BY seq LIMIT 1",
            (sink, self.owner, now),
        ).fetchone()
        return Row(*row) if row else None

    def next_wake(self, sink: str) -> float | None:
        row = self.store.db.execute(
            "SELECT MIN(MAX(not_before, retry_at)) FROM outbox WHERE sink = ? AND owner = ? AND state = 'pending'",
            (sink, self.owner),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def finish(self, row: Row, state: str, error: str | None = None) -> None:
        """Mark ``row`` delivered, skipped or dropped."""
        self._sync()
        self.store.db.execute(
            "UPDATE outbox SET state = ?, last_error = ?, done_at = ?, attempts = attempts + ? WHERE seq = ?",
            (state, error, time.time(), 1 if state != "skipped" else 0, row.seq),
        )
        self.pending[row.sink] -= 1

    def retry_later(self, row: Row, retry_at: float, error: str) -> None:
        self.store.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, retry_at = ?, last_error = ? WHERE seq = ?",
            (retry_at, error, row.seq),
        )

    def escalation_allowed(self, row: Row) -> bool:
        """For a sink with ``delay``: a firing goes out only for an incident still open and
        unacknowledged; a later event only if the firing went out."""
        if row.incident is None:
            return True
        if row.kind == "firing":
            inc = self.store.db.execute(
                "SELECT resolved_at, acked_at FROM incidents WHERE id = ?", (row.incident,)
            ).fetchone()
            return inc is None or (inc[0] is None and inc[1] is None)
        return self.delivered(row.sink, row.incident, "firing")

    def delivered(self, sink: str, incident: str, kind: str) -> bool:
        return (
            self.store.db.execute(
                "SELECT 1 FROM outbox WHERE sink = ? AND incident = ? AND kind = ? AND state = 'delivered' LIMIT 1",
                (sink, incident, kind),
            ).fetchone()
            is not None
        )

    def reminders_due(self, now: float) -> list[tuple[str, Event]]:
        """Reminder events for sinks with ``repeat``: one per open, unacknowledged incident whose
        last firing/changed/reminder to that sink is older than ``repeat``."""
        out = []
        for name, sink in self.sinks.items():
            if sink.config.repeat:
                out += self._reminders(name, now, sink.config.repeat, unacked_only=True)
        return out

    def resync(self, name: str, now: float) -> list[tuple[str, Event]]:
        """A reminder of every open incident sink ``name`` has, acknowledged or not (for sinks
        that keep their state in memory and lost it in a restart)."""
        return self._reminders(name, now, 0.0, unacked_only=False)

    def _reminders(self, name: str, now: float, every: float, *, unacked_only: bool) -> list[tuple[str, Event]]:
        rows = self.store.db.execute(
            "SELECT o.incident, MAX(o.created), o.body FROM outbox o JOIN incidents i ON i.id = o.incident"
            " WHERE o.sink = ? AND o.owner = ? AND o.kind IN ('firing', 'changed', 'reminder') AND o.state IN"
            " ('pending', 'delivered') AND i.resolved_at IS NULL"
            + (" AND i.acked_at IS NULL" if unacked_only else "")
            + " GROUP BY o.incident",
            (name, self.owner),
        ).fetchall()
        out = []
        for _incident, last, body in rows:
            if now - last >= every:  # bare `body` is from the MAX(created) row (SQLite)
                latest = Event.from_dict(json.loads(body))
                summary = "reminder: " + latest.summary.removeprefix("reminder: ")
                out.append((name, replace(latest, kind="reminder", id=new_event_id(), time=now, summary=summary)))
        return out

    def prune(self, older_than: float) -> int:
        cur = self.store.db.execute("DELETE FROM outbox WHERE state != 'pending' AND done_at < ?", (older_than,))
        return cur.rowcount
