"""The agent's memory: one SQLite database under ``agent.state_dir`` (``firstwatch.db``).

It holds the incident timeline (machine changes, deliveries and human notes), the incidents
themselves (severity, acknowledgment, first error), and the alert state that must survive a
restart (pending ``for:`` timers, firing incidents). The daemon writes it; ``firstwatch note``,
``ack``, ``timeline`` and ``report`` open it directly: local authority is the file's permission,
no network port can change state. WAL mode lets the CLI read and write while the daemon runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    incident TEXT,
    fingerprint TEXT,
    check_name TEXT,
    target TEXT,
    severity TEXT,
    text TEXT NOT NULL,
    author TEXT
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident);
CREATE INDEX IF NOT EXISTS timeline_time ON timeline (time);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    max_severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    first_error TEXT,
    started_at REAL NOT NULL,
    fired_at REAL NOT NULL,
    acked_at REAL,
    acked_by TEXT,
    resolved_at REAL
);
CREATE TABLE IF NOT EXISTS alert_state (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    incident TEXT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    not_before REAL NOT NULL,
    retry_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sink, state, seq);
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident, sink, kind);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    seq: int
    time: float
    kind: str
    incident: str | None
    fingerprint: str | None
    check: str | None
    target: str | None
    severity: str | None
    text: str
    author: str | None

    def to_dict(self) -> dict[str, Any]:
        from agent.events import iso_time

        return {
            "time": iso_time(self.time),
            "kind": self.kind,
            "incident": self.incident,
            "check": self.check,
            "target": self.target,
            "severity": self.severity,
            "text": self.text,
            "author": self.author,
        }


class StoreError(Exception):
    """A problem with the state database, with a message fit for users."""


class Store:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "firstwatch.db")
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- timeline -------------------------------------------------------------------------

    def add_entry(
        self,
        kind: str,
        text: str,
        *,
        when: float | None = None,
        incident: str | None = None,
        fingerprint: str | None = None,
        check: str | None = None,
        target: str | None = None,
        severity: str | None = None,
        author: str | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO timeline (time, kind, incident, fingerprint, check_name, target, severity, text, author)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (when or time.time(), kind, incident, fingerprint, check, target, severity, text, author),
        )

    def entries(
        self, *, since: float | None = None, check: str | None = None, incident: str | None = None
    ) -> list[Entry]:
        sql = "SELECT seq, time, kind, incident, fingerprint, check_name, target, severity, text, author FROM timeline"
        where: list[str] = []
        args: dict[str, object] = {}
        if since is not None:
            where.append("time >= :since")
            args["since"] = since
        if check is not None:
            where.append("check_name = :check")
            args["check"] = check
        if incident is not None:
            args["inc"] = incident
            # the incident's own entries, plus the un-numbered ones that led to it (pending runs,
            # group members going down) of its check and target (any member, for a group)
            where.append(
                "(incident = :inc OR (incident IS NULL AND EXISTS (SELECT 1 FROM incidents i WHERE i.id = :inc"
                " AND i.check_name = timeline.check_name AND (i.target = timeline.target OR i.target LIKE '% targets')"
                " AND timeline.time >= i.started_at - 0.001 AND timeline.time <= COALESCE(i.resolved_at, 1e18))))"
            )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, seq"
        return [Entry(*row) for row in self.db.execute(sql, args)]

    # --- incidents ------------------------------------------------------------------------

    def open_incident(self, row: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO incidents (id, fingerprint, check_name, target, rule, severity, max_severity,"
            " summary, first_error, started_at, fired_at) VALUES (:id, :fingerprint, :check, :target, :rule,"
            " :severity, :severity, :summary, :first_error, :started_at, :fired_at)",
            row,
        )

    def set_severity(self, incident: str, severity: str, max_severity: str) -> None:
        self.db.execute(
            "UPDATE incidents SET severity = ?, max_severity = ? WHERE id = ?", (severity, max_severity, incident)
        )

    def resolve_incident(self, incident: str, when: float) -> None:
        self.db.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?", (when, incident))

    def incident(self, ref: str) -> dict[str, Any]:
        """The incident whose id is ``ref`` or starts with it; StoreError if none or ambiguous."""
        rows = self.db.execute("SELECT * FROM incidents WHERE id LIKE ? ESCAPE '\\'", (_like_prefix(ref),)).fetchall()
        cols = [d[0] for d in self.db.execute("SELECT * FROM incidents LIMIT 0").description]
        if not rows:
            recent = [r[0] for r in self.db.execute("SELECT id FROM incidents ORDER BY fired_at DESC LIMIT 5")]
            hint = f" (recent: {', '.join(recent)})" if recent else " (no incidents recorded yet)"
            raise StoreError(f"no incident {ref!r}{hint}")
        if len(rows) > 1:
            raise StoreError(f"incident {ref!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")
        return dict(zip(cols, rows[0], strict=True))

    def incidents(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT * FROM incidents" + (" WHERE resolved_at IS NULL" if open_only else "") + " ORDER BY fired_at"
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur]

    def ack(self, incident: str, by: str, when: float | None = None) -> bool:
        """Acknowledge; False if it was already acknowledged (the first ack stands)."""
        when = when or time.time()
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
                (when, by, incident),
            )
            if cur.rowcount == 0:
                return False
            self.add_entry("ack", f"acknowledged by {by}", when=when, incident=incident, author=by)
        return True

    def acked(self, incident: str) -> bool:
        row = self.db.execute("SELECT acked_at FROM incidents WHERE id = ?", (incident,)).fetchone()
        return bool(row and row[0] is not None)

    # --- alert state (restart safety) -------------------------------------------------------

    def save_alert(self, key: str, data: dict[str, Any] | None) -> None:
        if data is None:
            self.db.execute("DELETE FROM alert_state WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO alert_state (key, data) VALUES (?, ?)", (key, json.dumps(data)))

    def load_alerts(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, data FROM alert_state")}

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None


def _like_prefix(ref: str) -> str:
    return ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
