"""The agent's memory: one SQLite database under ``agent.state_dir`` (``firstwatch.db``).

It holds the incident timeline (machine changes, deliveries and human notes), the incidents
themselves (severity, acknowledgment, first error), and the alert state that must survive a
restart (pending ``for:`` timers, firing incidents). The daemon writes it; ``firstwatch note``,
``ack``, ``timeline`` and ``report`` open it directly: local authority is the file's permission,
no network port can change state. WAL mode lets the CLI read and write while the daemon runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.core.errors import StoreError
from agent.incidents.model import Entry, Incident

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
-- agent.incidents.silences: checks a JSON list of names, labels a JSON object (NULL: not given)
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    checks TEXT,
    labels TEXT,
    starts REAL NOT NULL,
    ends REAL NOT NULL,
    reason TEXT NOT NULL,
    "by" TEXT NOT NULL,
    created REAL NOT NULL,
    expired_at REAL
);
CREATE INDEX IF NOT EXISTS silences_ends ON silences (ends);
-- agent.incidents.history_store: a (check, target)'s id; its runs in [start, start + width), by time
CREATE TABLE IF NOT EXISTS history_series (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL,
    UNIQUE (check_name, target)
);
CREATE TABLE IF NOT EXISTS history_buckets (
    width INTEGER NOT NULL,
    start INTEGER NOT NULL,
    series INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    good INTEGER NOT NULL,
    duration_sum REAL NOT NULL,
    duration_max REAL NOT NULL,
    hist TEXT NOT NULL,
    PRIMARY KEY (width, start, series)
) WITHOUT ROWID;
"""


DB_NAME = "firstwatch.db"

# an incident's columns in the order of :class:`Incident`'s fields
_INCIDENT = (
    "SELECT id, fingerprint, check_name, target, rule, severity, max_severity, summary, first_error, started_at,"
    " fired_at, acked_at, acked_by, resolved_at, runbook FROM incidents"
)


def is_corruption(exc: sqlite3.Error) -> bool:
    """A damaged file, as opposed to a lock, a full disk or a permission (which pass)."""
    if isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since the first schema (a database from an older version keeps working)."""
    cols = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "owner" not in cols:  # the shard that queued a row delivers it (agents may share a state dir)
        db.execute("ALTER TABLE outbox ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    if "runbook" not in {row[1] for row in db.execute("PRAGMA table_info(incidents)")}:
        db.execute("ALTER TABLE incidents ADD COLUMN runbook TEXT")
    db.execute("DROP TABLE IF EXISTS history")  # a development shape, never written by a release


def set_aside(state_dir: str, why: str) -> str:
    """Move a damaged database (and its WAL and shared-memory files) out of the way; returns the
    new name. The next open starts a fresh one; the old file is kept for forensics."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = os.path.join(state_dir, DB_NAME)
    dest = f"{base}.corrupt-{stamp}"
    n = 1
    while os.path.exists(dest):
        n += 1
        dest = f"{base}.corrupt-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(base + suffix):
            os.replace(base + suffix, dest + suffix)
    with open(dest + ".why", "w", encoding="utf-8") as f:
        f.write(why + "\n")
    return dest


def open_checked(state_dir: str, *, owner: str = "", busy_timeout: float = 10.0) -> tuple[Store, str | None]:
    """Open the daemon's database, checking it first. A corrupt file is set aside and a fresh one
    opened; returns the store and, in that case, a sentence saying what happened."""
    why: str | None
    try:
        store = Store(state_dir, owner=owner, busy_timeout=busy_timeout)
        why = store.check()
        if why is None:
            return store, None
        store.close()
    except StoreError as exc:
        if not exc.corrupt:
            raise
        why = str(exc).split(": ", 1)[-1]
    moved = set_aside(state_dir, why)
    store = Store(state_dir, owner=owner, busy_timeout=busy_timeout)
    return store, (
        f"the state database was corrupt ({why}); it was set aside as {moved} and a fresh one started:"
        " open incidents and pending timers from before are not restored"
    )


class Store:
    """The database, opened by the daemon (``owner`` is its shard, ``""`` when unsharded) or by
    the CLI. ``busy_timeout`` bounds how long one call waits for another process's lock: the
    daemon calls from its database thread (``agent.incidents.writer``) and retries, the CLI waits."""

    def __init__(self, state_dir: str, *, owner: str = "", busy_timeout: float = 10.0) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self.owner = owner
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            _migrate(self.db)
        except (OSError, sqlite3.Error) as exc:
            corrupt = isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc)
            raise StoreError(f"cannot open state database {self.path}: {exc}", corrupt=corrupt) from None

    def check(self) -> str | None:
        """None when SQLite's quick check finds the file sound, else what it found."""
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if rows == ["ok"] else "; ".join(str(r) for r in rows)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; on any failure (inside it, or at COMMIT: a full disk, a lock)
        everything is rolled back and the error raised, so a caller can retry the whole of it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (I/O errors)
                self.db.execute("ROLLBACK")
            raise

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

    def open_incident(
        self, incident: str, *, fingerprint: str, check: str, target: str, rule: str, severity: str, summary: str,
        first_error: str | None, started_at: float, fired_at: float, runbook: str | None = None,
    ) -> None:  # fmt: skip
        """Record a new incident (nothing happens if its id is already recorded); ``severity`` is
        also the worst it has reached so far."""
        what = (incident, fingerprint, check, target, rule, severity)
        self.db.execute(
            "INSERT OR IGNORE INTO incidents (id, fingerprint, check_name, target, rule, severity, max_severity,"
            " summary, first_error, started_at, fired_at, runbook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*what, severity, summary, first_error, started_at, fired_at, runbook),
        )

    def set_severity(self, incident: str, severity: str, max_severity: str, summary: str | None = None) -> None:
        """A changed incident: its severity, the worst it reached, and what it is now."""
        self.db.execute(
            "UPDATE incidents SET severity = ?, max_severity = ?, summary = COALESCE(?, summary) WHERE id = ?",
            (severity, max_severity, summary, incident),
        )

    def resolve_incident(self, incident: str, when: float) -> None:
        self.db.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?", (when, incident))

    def incident(self, ref: str) -> Incident:
        """The incident whose id is ``ref`` or starts with it; StoreError if none or ambiguous (an
        empty ``ref`` names none: it would match every incident, and pick the only one)."""
        if not ref.strip():
            raise StoreError("give an incident id (or a unique prefix of one): see `firstwatch status`")
        rows = self.db.execute(_INCIDENT + " WHERE id LIKE ? ESCAPE '\\'", (_like_prefix(ref),)).fetchall()
        if not rows:
            recent = [r[0] for r in self.db.execute("SELECT id FROM incidents ORDER BY fired_at DESC LIMIT 5")]
            hint = f" (recent: {', '.join(recent)})" if recent else " (no incidents recorded yet)"
            raise StoreError(f"no incident {ref!r}{hint}")
        if len(rows) > 1:
            raise StoreError(f"incident {ref!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")
        return Incident(*rows[0])

    def incidents(self, *, open_only: bool = False, since: float | None = None) -> list[Incident]:
        """Incidents by when they fired: all, the open ones, or (``since``) those open at or after it."""
        args: tuple[float, ...] = ()
        where = "" if not open_only and since is None else " WHERE resolved_at IS NULL"
        if since is not None and not open_only:
            where, args = " WHERE resolved_at IS NULL OR resolved_at >= ?", (since,)
        return [Incident(*row) for row in self.db.execute(_INCIDENT + where + " ORDER BY fired_at", args)]

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
            row = db.execute("SELECT check_name, target FROM incidents WHERE id = ?", (incident,)).fetchone()
            self.add_entry(
                "ack", f"acknowledged by {by}", when=when, incident=incident, check=row[0], target=row[1], author=by
            )
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


class StateLock:
    """One agent per state directory and shard: two daemons on the same outbox would deliver each
    other's events. An unsharded agent locks the directory exclusively; sharded agents share it
    and each locks its own shard. Locks are ``flock``: they end with the process, even a killed one."""

    def __init__(self, state_dir: str, shard: tuple[int, int] | None = None) -> None:
        self.state_dir = state_dir
        self.shard = shard
        self._fds: list[int] = []

    def acquire(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        what = f"this one runs shard {self.shard[0]}/{self.shard[1]}" if self.shard else "this one runs all checks"
        self._take("firstwatch.lock", exclusive=self.shard is None, what=what)
        if self.shard is not None:
            self._take(f"firstwatch-shard-{self.shard[0]}-of-{self.shard[1]}.lock", exclusive=True, what=what)
        os.ftruncate(self._fds[-1], 0)
        os.write(self._fds[-1], f"{os.getpid()}\n".encode())

    def _take(self, name: str, *, exclusive: bool, what: str) -> None:
        path = os.path.join(self.state_dir, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            self.release()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreError(
                f"another firstwatch agent{who} is already running on {self.state_dir} ({what});"
                " give each agent its own agent.state_dir, or distinct --shard K/N"
            ) from None
        self._fds.append(fd)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
