"""Write what the alert book decides into the store, and bring it back after a restart.

Every change (pending, firing, changed, resolved, flapping, a member of a group going down) is a
timeline entry; firing opens an incident row, changed updates its severity, resolved closes it;
the alert state that changed is saved in the same transaction. After a restart, ``restore``
puts pending ``for:`` timers and firing incidents back (pending ones only when the agent was
down for less than ``outage_tolerance``, as Prometheus does), and resolves incidents whose rule or
target no longer exists in the config, so none is forgotten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.alerting.book import AlertBook, Change, Key
from agent.config.load import CheckSpec
from agent.core.events import Event, fingerprint
from agent.delivery.outbox import Outbox
from agent.incidents.store import Store
from agent.incidents.writer import Write

log = logging.getLogger("firstwatch.recorder")


def _key_str(key: Key) -> str:
    return json.dumps(list(key))


class Recorder:
    def __init__(self, store: Store, book: AlertBook, outbox: Outbox | None = None) -> None:
        self.store = store
        self.book = book
        self.outbox = outbox

    def persist(self, changes: list[Change]) -> Write | None:
        """The write that stores ``changes``, their events (into the outbox) and the book's dirty
        alert state, in one transaction: an event is durable before any sink sees it. The alert
        state is copied now, so the write can be retried later (``agent.incidents.writer``) and
        still store what was decided when."""
        if not changes and not self.book.dirty:
            return None
        saved = {_key_str(key): self.book.snapshot(key) for key in self.book.dirty}
        self.book.dirty.clear()
        changes = list(changes)

        def write(store: Store) -> None:
            for c in changes:
                if c.event is not None and self.outbox is not None:
                    self.outbox.enqueue(c.event)
                store.add_entry(
                    c.kind, c.text, when=c.time, incident=c.incident, fingerprint=c.fingerprint, check=c.check,
                    target=c.target, severity=c.severity,
                )  # fmt: skip
                if c.opened is not None:
                    store.open_incident(
                        c.opened.id, fingerprint=c.fingerprint, check=c.check, target=c.target, rule=c.rule,
                        severity=c.opened.severity, summary=c.text, first_error=c.opened.first_error,
                        started_at=c.opened.started_at, fired_at=c.time, runbook=c.opened.runbook,
                    )  # fmt: skip
                elif c.kind == "changed" and c.incident and c.severity:
                    store.set_severity(c.incident, c.severity, c.max_severity or c.severity, c.headline)
                elif c.kind == "resolved" and c.incident:
                    store.resolve_incident(c.incident, c.time)
            for key, data in saved.items():
                store.save_alert(key, data)
            store.set_meta("last_alive", repr(time.time()))

        return write

    def record(self, changes: list[Change]) -> None:
        """:meth:`persist` and commit now, on this thread (tests, one-shot tools)."""
        write = self.persist(changes)
        if write is not None:
            with self.store.transaction():
                write(self.store)

    def delivered(self, sink: str, event: Event) -> Write | None:
        """The timeline entry saying ``event`` reached ``sink``."""
        if event.incident is None:
            return None

        def write(store: Store) -> None:
            store.add_entry(
                "delivered", f"{event.kind} event sent to {sink}", incident=event.incident,
                fingerprint=event.fingerprint, check=event.check, target=event.target, severity=event.severity,
            )  # fmt: skip

        return write

    def agent_event(self, event: Event, only: str | None = None, skip: frozenset[str] = frozenset()) -> Write:
        """The write that records and queues one of the agent's own events (to sink ``only``, if
        given; not to the sinks in ``skip``, which already had it straight)."""

        def write(store: Store) -> None:
            if only is None:  # heartbeats are not news for the timeline
                store.add_entry(
                    "agent", event.summary, when=event.time, severity=event.severity, fingerprint=event.fingerprint
                )
            if self.outbox is not None:
                self.outbox.enqueue(event, only=only, skip=skip)

        return write

    def remind(self, now: float, resync: list[str] | None = None) -> int:
        """Queue the reminders that are due (sinks with ``repeat``), or, with ``resync``, one
        reminder per open incident for those sinks; returns how many. Call inside a transaction
        (it is a write: see :meth:`remind_write`) or alone."""
        if self.outbox is None:
            return 0
        if resync is not None:
            due = [r for name in resync for r in self.outbox.resync(name, now)]
        else:
            due = self.outbox.reminders_due(now)
        if due:
            with self.store.transaction() if not self.store.db.in_transaction else contextlib.nullcontext():
                for sink, event in due:
                    self.outbox.enqueue(event, only=sink)
                    self.store.add_entry(
                        "reminder", f"reminder queued for {sink}", when=now, incident=event.incident,
                        check=event.check, target=event.target, severity=event.severity,
                    )  # fmt: skip
        return len(due)

    def remind_write(self, now: float, resync: list[str] | None, counted: list[int]) -> Write:
        """:meth:`remind` as a journal write; how many were queued is appended to ``counted``."""

        def write(store: Store) -> None:
            counted.append(self.remind(now, resync))

        return write

    def restore(
        self,
        specs: list[CheckSpec],
        saved: dict[str, dict[str, Any]],
        gap: float,
        tolerance: float,
        now: float | None = None,
        mine: Callable[[str], bool] = lambda name: True,
    ) -> tuple[list[Change], list[str]]:
        """Put back the ``saved`` alert state (from the store after a restart, ``gap`` seconds
        after the agent was last alive, or from the previous runtime on a reload, gap 0) for the
        checks of ``specs`` that are ``mine`` (this agent's shard). Returns resolutions for
        incidents whose check, target or rule left the config, and the saved keys to delete.
        State of other shards' checks (agents sharing a state directory) is left alone."""
        now = time.time() if now is None else now
        known: dict[Key, CheckSpec] = {}
        for spec in specs:
            targets = list(spec.config.targets or []) or [spec.build().targets()[0]]
            for rule in spec.rules:
                for t in [*targets, "*"] if spec.policy.impact else targets:
                    known[(spec.config.name, t, rule.text)] = spec
        orphans: list[Change] = []
        forget: list[str] = []
        restored = dropped = 0
        for raw_key, data in saved.items():
            check, target, rule = json.loads(raw_key)
            key: Key = (check, target, rule)
            found = known.get(key)
            if found is not None and not mine(check):
                continue
            phase = data["state"]["phase"]
            if found is None:
                if data.get("incident"):
                    orphans.append(self._orphan(key, data, now))
                forget.append(raw_key)
                continue
            if phase == "pending" and gap > tolerance:
                dropped += 1
                forget.append(raw_key)
                continue
            self.book.restore(key, data, found.policy.flap_config())
            restored += 1
        if gap > 0 and (restored or dropped or orphans):
            log.info(
                "restored %d alert states (agent was down %s); %d pending timers dropped; %d orphans resolved",
                restored,
                f"{gap:.0f}s" if gap != float("inf") else "?",
                dropped,
                len(orphans),
            )
        return orphans, forget  # the caller records and publishes them

    def saved_state(self, now: float | None = None) -> tuple[dict[str, dict[str, Any]], float]:
        """What the store holds for a restart: the saved alert state, and how long ago the agent
        was last alive (infinite when unknown). Runs on the database thread."""
        now = time.time() if now is None else now
        last = self.store.meta("last_alive")
        gap = now - float(last) if last else float("inf")
        return self.store.load_alerts(), max(0.0, gap)

    def forget_write(self, keys: list[str]) -> Write:
        def write(store: Store) -> None:
            for key in keys:
                store.save_alert(key, None)

        return write

    def _orphan(self, key: Key, data: dict[str, object], now: float) -> Change:
        check, target, rule = key
        fp = fingerprint(self.book.agent_name, check, target, rule)
        incident = str(data["incident"])
        text = f"{check}: resolved: {rule} is no longer in the config"
        severity = str(data.get("severity") or "minor")
        event = Event(
            kind="resolved",
            severity=severity,
            summary=text,
            agent=self.book.agent_name,
            time=now,
            incident=incident,
            fingerprint=fp,
            check=check,
            target=target,
            rule=rule,
            labels=dict(self.book.labels),
        )
        return Change("resolved", now, check, target, rule, fp, text, incident, severity, event)
