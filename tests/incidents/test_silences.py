"""Silences and change markers in the state database (``agent.incidents.silences``), on a real
SQLite file: what ``firstwatch silence`` and ``annotate`` write, and what the daemon polls."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.errors import StoreError
from agent.incidents.silences import (
    add_change,
    add_silence,
    expire_silence,
    find_silence,
    silences,
)
from agent.incidents.store import Store

NOW = 1_796_220_000.0  # 2026-12-02T14:00:00Z
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


@pytest.fixture
def ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids the next silences get, in order (drawn at random otherwise)."""
    queue: list[str] = []
    monkeypatch.setattr("agent.incidents.silences.secrets.token_hex", lambda n: queue.pop(0))
    return queue


def silence(store: Store, checks: set[str] | None = None, labels: dict[str, str] | None = None, **kw: float) -> str:
    made = add_silence(
        store,
        checks=frozenset(checks) if checks is not None else None,
        labels=labels,
        starts=kw.get("starts", NOW),
        ends=kw.get("ends", NOW + 2 * HOUR),
        reason="deploy 1.5.0",
        by="sam",
        now=kw.get("now", NOW),
    )
    return made.id


def test_a_silence_is_kept_as_made_with_a_timeline_entry_naming_its_one_check(store: Store) -> None:
    made = add_silence(
        store, checks=frozenset({"shop-web"}), labels=None, starts=NOW, ends=NOW + 2 * HOUR,
        reason="deploy 1.5.0", by="sam", now=NOW,
    )  # fmt: skip
    assert len(made.id) == 8 and int(made.id, 16) >= 0
    assert silences(store, NOW + 60) == [made]
    got = find_silence(store, made.id)
    assert (got.checks, got.labels, got.starts, got.ends, got.reason, got.by, got.created) == (
        frozenset({"shop-web"}), None, NOW, NOW + 2 * HOUR, "deploy 1.5.0", "sam", NOW,
    )  # fmt: skip
    (entry,) = store.entries(check="shop-web")  # `firstwatch timeline --check shop-web` shows it
    assert (entry.kind, entry.time, entry.author, entry.incident) == ("silence", NOW, "sam", None)
    assert entry.text == f"silence {made.id} by sam until 2026-12-02T16:00:00.000Z: deploy 1.5.0 (check shop-web)"


def test_a_silence_of_several_checks_or_of_labels_names_no_one_check(store: Store, ids: list[str]) -> None:
    ids += ["aaaa0001", "aaaa0002", "aaaa0003"]
    silence(store, checks={"shop-web", "api"})
    silence(store, labels={"team": "web", "env": "prod"})
    silence(store, checks={"api"}, labels={"env": "prod"})
    texts = [(e.check, e.text.split(": ", 1)[1]) for e in store.entries()]
    assert texts == [
        (None, "deploy 1.5.0 (checks api, shop-web)"),
        (None, "deploy 1.5.0 (labels env=prod, team=web)"),
        ("api", "deploy 1.5.0 (check api; label env=prod)"),
    ]
    by_id = {s.id: s for s in silences(store, NOW)}
    assert by_id["aaaa0002"].labels == {"env": "prod", "team": "web"} and by_id["aaaa0002"].checks is None
    assert by_id["aaaa0003"].matches("api", {"env": "prod"}) and not by_id["aaaa0003"].matches("api", {})


def test_silences_are_the_ones_not_ended_scheduled_too_by_start(store: Store, ids: list[str]) -> None:
    ids += ["0000000a", "0000000b", "0000000c", "0000000d"]
    silence(store, {"a"}, starts=NOW + HOUR, ends=NOW + 3 * HOUR)  # scheduled
    silence(store, {"b"}, starts=NOW - HOUR, ends=NOW + HOUR, now=NOW - HOUR)  # active
    silence(store, {"c"}, starts=NOW - 2 * HOUR, ends=NOW, now=NOW - 2 * HOUR)  # ran out just now
    silence(store, {"d"}, starts=NOW - 3 * HOUR, ends=NOW + 5 * HOUR, now=NOW - 3 * HOUR)  # active
    found = silences(store, NOW)
    assert [s.id for s in found] == ["0000000d", "0000000b", "0000000a"]
    assert [s.active(NOW) for s in found] == [True, True, False]
    scheduled = store.entries(check="a")[0].text
    assert scheduled == (
        "silence 0000000a by sam from 2026-12-02T15:00:00.000Z until 2026-12-02T17:00:00.000Z: deploy 1.5.0 (check a)"
    )


def test_a_silence_that_selects_nothing_or_ends_before_it_starts_is_refused_and_nothing_kept(store: Store) -> None:
    with pytest.raises(ValueError, match="checks or labels"):
        add_silence(store, checks=None, labels={}, starts=NOW, ends=NOW + HOUR, reason="x", by="sam", now=NOW)
    with pytest.raises(ValueError, match="at least one check"):
        add_silence(store, checks=frozenset(), labels=None, starts=NOW, ends=NOW + HOUR, reason="x", by="sam", now=NOW)
    with pytest.raises(ValueError, match="end after it starts"):
        add_silence(store, checks=frozenset({"a"}), labels=None, starts=NOW, ends=NOW, reason="x", by="sam", now=NOW)
    with pytest.raises(ValueError, match="reason"):
        add_silence(store, checks=frozenset({"a"}), labels=None, starts=NOW, ends=NOW + 1, reason=" ", by="s", now=NOW)
    assert silences(store, 0) == [] and store.entries() == []


def test_the_silence_and_its_entry_are_written_together_or_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "add_entry", full_disk)
    with pytest.raises(sqlite3.OperationalError):
        silence(store, {"shop-web"})
    assert silences(store, NOW) == []


def test_an_id_already_taken_is_drawn_again(store: Store, ids: list[str]) -> None:
    ids += ["3f2a9c01", "3f2a9c01", "77aa0b12"]
    assert silence(store, {"a"}) == "3f2a9c01"
    assert silence(store, {"b"}) == "77aa0b12"


def test_expiring_ends_it_now_by_a_unique_prefix_with_a_timeline_entry(store: Store, ids: list[str]) -> None:
    ids += ["3f2a9c01", "3f77b0aa"]
    silence(store, {"shop-web"})
    silence(store, {"api"})
    ended = expire_silence(store, "3F2A", "maria", NOW + HOUR)  # ids are hex: any case
    assert (ended.id, ended.ends, ended.starts) == ("3f2a9c01", NOW + HOUR, NOW)
    assert find_silence(store, "3f2a9c01") == ended
    assert [s.id for s in silences(store, NOW + HOUR)] == ["3f77b0aa"]
    last = store.entries(check="shop-web")[-1]
    assert (last.kind, last.time, last.author) == ("silence", NOW + HOUR, "maria")
    assert last.text == "silence 3f2a9c01 expired by maria: deploy 1.5.0 (check shop-web)"
    with pytest.raises(StoreError, match=r"3f2a9c01 has already ended: it was expired at 2026-12-02T15:00:00\.000Z"):
        expire_silence(store, "3f2a", "maria", NOW + 2 * HOUR)
    assert len(store.entries(check="shop-web")) == 2  # a refused expiry writes nothing


def test_one_that_ran_out_cannot_be_expired_and_a_scheduled_one_is_cancelled(store: Store, ids: list[str]) -> None:
    ids += ["0000000a", "0000000b"]
    silence(store, {"a"}, ends=NOW + HOUR)
    silence(store, {"b"}, starts=NOW + HOUR, ends=NOW + 2 * HOUR)
    with pytest.raises(StoreError, match=r"0000000a has already ended: it ran out at 2026-12-02T15:00:00\.000Z"):
        expire_silence(store, "0000000a", "sam", NOW + HOUR)
    cancelled = expire_silence(store, "0000000b", "sam", NOW + 60)
    assert [s.id for s in silences(store, NOW + 60)] == ["0000000a"] and not cancelled.active(NOW + HOUR + 1)
    assert (
        store.entries(check="b")[-1].text == "silence 0000000b expired by sam before it started: deploy 1.5.0 (check b)"
    )


def test_a_reference_naming_none_or_several_says_which_there_are(store: Store, ids: list[str]) -> None:
    with pytest.raises(StoreError, match=r"no silence 'abc' \(no silences recorded yet\)"):
        find_silence(store, "abc")
    ids += ["3f2a9c01", "3f77b0aa"]
    silence(store, {"a"})
    silence(store, {"b"})
    with pytest.raises(StoreError, match=r"silence '3f' is ambiguous: 3f2a9c01, 3f77b0aa"):
        expire_silence(store, "3f", "sam", NOW)
    with pytest.raises(StoreError, match=r"no silence 'abc' \(recent: 3f77b0aa, 3f2a9c01\)"):
        expire_silence(store, "abc", "sam", NOW)
    for ref in ("", "  "):  # names none, even with only one silence to pick
        with pytest.raises(StoreError, match="give a silence id"):
            find_silence(store, ref)
    assert [s.ends for s in silences(store, NOW)] == [NOW + 2 * HOUR] * 2


def test_a_change_marker_is_one_entry_per_check_or_one_without(store: Store) -> None:
    assert add_change(store, "deploy shop 1.5.0", "sam", ["shop-web", "api", "shop-web"], NOW) == 2
    assert add_change(store, "config push", "ben", [], NOW + 60) == 1
    got = [(e.kind, e.time, e.check, e.author, e.text, e.incident) for e in store.entries()]
    assert got == [
        ("change", NOW, "shop-web", "sam", "deploy shop 1.5.0", None),
        ("change", NOW, "api", "sam", "deploy shop 1.5.0", None),
        ("change", NOW + 60, None, "ben", "config push", None),
    ]
    assert [e.text for e in store.entries(check="api")] == ["deploy shop 1.5.0"]


def test_a_database_from_before_silences_gains_the_table(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    Store(state).close()
    db = sqlite3.connect(str(tmp_path / "state" / "firstwatch.db"))
    db.execute("DROP TABLE silences")
    db.commit()
    db.close()
    store = Store(state)
    silence(store, {"a"})
    assert len(silences(store, NOW)) == 1


READER = """
import json, sys, time
from agent.incidents.silences import silences
from agent.incidents.store import Store
t0 = time.monotonic()
found = silences(Store(sys.argv[1], busy_timeout=5.0), float(sys.argv[2]))
print(json.dumps({"ids": [s.id for s in found], "took": time.monotonic() - t0}))
"""


def test_another_process_reads_the_silences_while_a_write_is_held(tmp_path: Path, ids: list[str]) -> None:
    """The daemon polls while ``firstwatch silence add`` (or its own writer) holds a write: it
    reads the committed silences at once, not the one being written, and does not wait."""
    state = str(tmp_path / "state")
    store = Store(state)
    ids += ["0000000a"]
    silence(store, {"a"})
    writer = Store(state)
    writer.db.execute("BEGIN IMMEDIATE")
    writer.db.execute(
        'INSERT INTO silences (id, checks, starts, ends, reason, "by", created) VALUES (?, ?, ?, ?, ?, ?, ?)',
        ("0000000b", '["b"]', NOW, NOW + HOUR, "half written", "ben", NOW),
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", READER, state, str(NOW)], capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        writer.db.execute("ROLLBACK")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ids"] == ["0000000a"] and out["took"] < 2.5
