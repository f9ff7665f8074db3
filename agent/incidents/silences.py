"""Silences and change markers in the state database: what ``firstwatch silence`` and
``firstwatch annotate`` write, and what the daemon polls.

A silence is a row of the ``silences`` table (its schema is with the others in
``agent.incidents.store``), read back as :class:`agent.alerting.quiet.Silence`. Making one and
expiring one each also write a timeline entry of kind ``silence``, in the same transaction, so
the timeline says who silenced what, until when and why. Rows are never deleted: expiring ends a
silence now (``ends`` becomes that time, ``expired_at`` says it was ended by hand, not by running
out), so the table is also the silences' history. Ids are :data:`ID_HEX` hex digits and may be
abbreviated to any unique prefix, as incident ids may.

A change marker (a deploy, a config push, a failover) is only a timeline entry, of kind
``change``: one per check it names, or one with no check.

Every function takes the open :class:`~agent.incidents.store.Store`; the ones that write open
their own transaction (the CLI calls them; the daemon only reads, with :func:`silences`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from agent.alerting.quiet import Silence
from agent.core.errors import StoreError
from agent.core.events import iso_time

if TYPE_CHECKING:
    import sqlite3

    from agent.incidents.store import Store

ID_HEX = 8  # 4 random bytes: ample for the silences one agent ever has, short enough to type
_COLUMNS = 'id, checks, labels, starts, ends, reason, "by", created'


def describe_selector(checks: frozenset[str] | None, labels: Mapping[str, str] | None) -> str:
    """``check shop-web``, ``checks api, shop-web``, ``labels env=prod, team=web``, or both
    joined by ``; ``."""
    parts = []
    if checks:
        parts.append(("check " if len(checks) == 1 else "checks ") + ", ".join(sorted(checks)))
    if labels:
        parts.append(
            ("label " if len(labels) == 1 else "labels ") + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        )
    return "; ".join(parts)


def add_silence(
    store: Store,
    *,
    checks: frozenset[str] | None,
    labels: Mapping[str, str] | None,
    starts: float,
    ends: float,
    reason: str,
    by: str,
    now: float,
) -> Silence:
    """Record a silence (``created`` is ``now``) and its timeline entry, in one transaction.

    ``checks`` and ``labels`` are the selector (``Silence.matches``): at least one must select
    something. The entry names its check when exactly one check is named. Raises ValueError for
    a silence that would select nothing, end before it starts, or give no reason."""
    if checks is not None and not checks:
        raise ValueError("a silence's checks, when given, must name at least one check")
    if checks is None and not labels:
        raise ValueError("a silence must name checks or labels: one naming neither would select nothing")
    if ends <= starts:
        raise ValueError(f"a silence must end after it starts ({iso_time(ends)} is not after {iso_time(starts)})")
    if not reason.strip():
        raise ValueError("a silence needs a reason")
    names = json.dumps(sorted(checks)) if checks is not None else None
    pairs = dict(sorted(labels.items())) if labels else None
    with store.transaction() as db:
        sid = _new_id(db)
        db.execute(
            f"INSERT INTO silences ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, names, json.dumps(pairs) if pairs else None, starts, ends, reason, by, now),
        )
        silence = Silence(sid, checks, pairs, starts, ends, reason, by, now)
        when = f" from {iso_time(starts)}" if starts > now else ""
        text = f"silence {sid} by {by}{when} until {iso_time(ends)}: {reason} ({describe_selector(checks, pairs)})"
        store.add_entry("silence", text, when=now, check=_only(checks), author=by)
    return silence


def expire_silence(store: Store, ref: str, by: str, now: float) -> Silence:
    """End the silence ``ref`` (its id or a unique prefix) at ``now``, with a timeline entry;
    returns it as it is now. A scheduled one (not started yet) is thereby cancelled. StoreError if
    there is no such silence, ``ref`` is ambiguous, or the silence has already ended."""
    with store.transaction() as db:
        silence, expired_at = _find(db, ref)
        if silence.ends <= now:
            how = "was expired" if expired_at is not None else "ran out"
            raise StoreError(f"silence {silence.id} has already ended: it {how} at {iso_time(silence.ends)}")
        db.execute("UPDATE silences SET ends = ?, expired_at = ? WHERE id = ?", (now, now, silence.id))
        early = " before it started" if silence.starts > now else ""
        what = describe_selector(silence.checks, silence.labels)
        text = f"silence {silence.id} expired by {by}{early}: {silence.reason} ({what})"
        store.add_entry("silence", text, when=now, check=_only(silence.checks), author=by)
    return replace(silence, ends=now)


def find_silence(store: Store, ref: str) -> Silence:
    """The silence whose id is ``ref`` or starts with it, ended or not; StoreError if none or
    ambiguous (an empty ``ref`` names none)."""
    return _find(store.db, ref)[0]


def silences(store: Store, now: float) -> list[Silence]:
    """Every silence that has not ended by ``now``: the active ones and the scheduled ones, by
    start (what the daemon polls, and what ``firstwatch silence list`` shows)."""
    cur = store.db.execute(f"SELECT {_COLUMNS} FROM silences WHERE ends > ? ORDER BY starts, created, rowid", (now,))
    return [_silence(row) for row in cur]


def add_change(store: Store, text: str, by: str, checks: Iterable[str], when: float) -> int:
    """Record a change marker: a ``change`` timeline entry by ``by`` for each of ``checks``, or one
    with no check when there are none. Returns how many entries were written."""
    names: list[str | None] = [*dict.fromkeys(checks)] or [None]
    with store.transaction():
        for check in names:
            store.add_entry("change", text, when=when, check=check, author=by)
    return len(names)


def _new_id(db: sqlite3.Connection) -> str:
    while True:  # a collision among 4 billion ids is rare; drawing again is the whole cure
        sid = secrets.token_hex(ID_HEX // 2)
        if db.execute("SELECT 1 FROM silences WHERE id = ?", (sid,)).fetchone() is None:
            return sid


def _only(checks: frozenset[str] | None) -> str | None:
    return next(iter(checks)) if checks is not None and len(checks) == 1 else None


def _find(db: sqlite3.Connection, ref: str) -> tuple[Silence, float | None]:
    """The silence ``ref`` names and its ``expired_at``."""
    ref = ref.strip().lower()
    if not ref:
        raise StoreError("give a silence id (or a unique prefix of one): see `firstwatch silence list`")
    rows = db.execute(
        f"SELECT {_COLUMNS}, expired_at FROM silences WHERE substr(id, 1, ?) = ? ORDER BY created, rowid",
        (len(ref), ref),
    ).fetchall()
    if not rows:
        recent = [r[0] for r in db.execute("SELECT id FROM silences ORDER BY created DESC, rowid DESC LIMIT 5")]
        hint = f" (recent: {', '.join(recent)})" if recent else " (no silences recorded yet)"
        raise StoreError(f"no silence {ref!r}{hint}")
    if len(rows) > 1:
        raise StoreError(f"silence {ref!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")
    return _silence(rows[0][:-1]), rows[0][-1]


def _silence(row: tuple[object, ...]) -> Silence:
    sid, checks, labels, starts, ends, reason, by, created = row
    names = json.loads(str(checks)) if checks is not None else None
    pairs = json.loads(str(labels)) if labels is not None else None
    if not (names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names))):
        raise StoreError(f"silence {sid}: its checks are not a list of names: {checks!r}")
    if not (pairs is None or (isinstance(pairs, dict) and all(isinstance(v, str) for v in pairs.values()))):
        raise StoreError(f"silence {sid}: its labels are not names and values: {labels!r}")
    assert isinstance(starts, float | int) and isinstance(ends, float | int) and isinstance(created, float | int)
    return Silence(
        id=str(sid),
        checks=frozenset(names) if names is not None else None,
        labels=pairs,
        starts=float(starts),
        ends=float(ends),
        reason=str(reason),
        by=str(by),
        created=float(created),
    )
