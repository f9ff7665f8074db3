"""Write what the alert book decides into the store, and bring it back after a restart.

Every change (pending, firing, changed, resolved, flapping, a member of a group going down) is a
timeline entry; firing opens an incident row, changed updates its severity, resolved closes it;
the alert state that changed is saved in the same transaction. After a restart, ``restore``
puts pending ``for:`` timers and firing incidents back (pending ones only when the agent was
down for less than ``outage_tolerance``, as Prometheus does), and resolves incidents whose rule or
target no longer exists in the config, so none is forgotten.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from agent.alerts import AlertBook, Change, Key, _flapping
from agent.config import CheckSpec
from agent.events import Event, fingerprint
from agent.outbox import Outbox
from agent.store import Store

log = logging.getLogger("firstwatch.recorder")


def _key_str(key: Key) -> str:
    return json.dumps(list(key))


class Recorder:
    def __init__(self, store: Store, book: AlertBook, outbox: Outbox | None = None) -> None:
        self.store = store
        self.book = book
        self.outbox = outbox

    def record(self, changes: list[Change]) -> None:
        """Apply ``changes``, their events (into the outbox) and the book's dirty alert state in
        one transaction: an event is durable before any sink sees it."""
        if not changes and not self.book.dirty:
            return
        with self.store.transaction():
            for c in changes:
                if c.event is not None and self.outbox is not None:
                    self.outbox.enqueue(c.event)
                self.store.add_entry(
                    c.kind,
                    c.text,
                    when=c.time,
                    incident=c.incident,
                    fingerprint=c.fingerprint,
                    check=c.check,
                    target=c.target,
                    severity=c.severity,
                )
                if c.opened is not None:
                    self.store.open_incident(c.opened)
                elif c.kind == "changed" and c.incident and c.severity:
                    alert = self.book.alerts.get((c.check, c.target, c.rule))
                    top = alert.max_severity if alert and alert.max_severity else c.severity
                    self.store.set_severity(c.incident, c.severity, top)
                elif c.kind == "resolved" and c.incident:
                    self.store.resolve_incident(c.incident, c.time)
            for key in self.book.dirty:
                self.store.save_alert(_key_str(key), self.book.snapshot(key))
            self.book.dirty.clear()
            self.store.set_meta("last_alive", repr(time.time()))

    def delivered(self, sink: str, event: Event) -> None:
        if event.incident is None:
            return
        self.store.add_entry(
            "delivered",
            f"{event.kind} event sent to {sink}",
            incident=event.incident,
            fingerprint=event.fingerprint,
            check=event.check,
            target=event.target,
            severity=event.severity,
        )

    def agent_event(self, event: Event, only: str | None = None) -> None:
        """Record and queue one of the agent's own events (to sink ``only``, if given)."""
        with self.store.transaction():
            if only is None:  # heartbeats are not news for the timeline
                self.store.add_entry("agent", event.summary, when=event.time, severity=event.severity)
            if self.outbox is not None:
                self.outbox.enqueue(event, only=only)

    def remind(self, now: float, resync: list[str] | None = None) -> int:
        """Queue the reminders that are due (sinks with ``repeat``), or, with ``resync``, one
        reminder per open incident for those sinks; returns how many."""
        if self.outbox is None:
            return 0
        if resync is not None:
            due = [r for name in resync for r in self.outbox.resync(name, now)]
        else:
            due = self.outbox.reminders_due(now)
        if due:
            with self.store.transaction():
                for sink, event in due:
                    self.outbox.enqueue(event, only=sink)
                    self.store.add_entry(
                        "reminder", f"reminder queued for {sink}", when=now, incident=event.incident,
                        check=event.check, target=event.target, severity=event.severity,
                    )  # fmt: skip
        return len(due)

    def heartbeat(self) -> None:
        self.store.set_meta("last_alive", repr(time.time()))

    def restore(
        self,
        specs: list[CheckSpec],
        tolerance: float,
        now: float | None = None,
        mine: Callable[[str], bool] = lambda name: True,
    ) -> list[Change]:
        """Load saved alert state for the checks of ``specs`` that are ``mine`` (this agent's
        shard); returns resolutions for incidents whose check, target or rule left the config.
        State of other shards' checks (agents sharing a state directory) is left alone."""
        now = time.time() if now is None else now
        last = self.store.meta("last_alive")
        gap = now - float(last) if last else float("inf")
        known: dict[Key, CheckSpec] = {}
        for spec in specs:
            targets = list(spec.config.targets or []) or [spec.build().targets()[0]]
            for rule in spec.rules:
                for t in [*targets, "*"] if spec.config.impact else targets:
                    known[(spec.config.name, t, rule.text)] = spec
        orphans: list[Change] = []
        restored = dropped = 0
        for raw_key, data in self.store.load_alerts().items():
            check, target, rule = json.loads(raw_key)
            key: Key = (check, target, rule)
            found = known.get(key)
            if found is not None and not mine(check):
                continue
            phase = data["state"]["phase"]
            if found is None:
                if data.get("incident"):
                    orphans.append(self._orphan(key, data, now))
                self.store.save_alert(raw_key, None)
                continue
            if phase == "pending" and gap > tolerance:
                dropped += 1
                self.store.save_alert(raw_key, None)
                continue
            self.book.restore(key, data, _flapping(found.config.flapping))
            restored += 1
        if restored or dropped or orphans:
            log.info(
                "restored %d alert states (agent was down %s); %d pending timers dropped; %d orphans resolved",
                restored,
                f"{gap:.0f}s" if gap != float("inf") else "?",
                dropped,
                len(orphans),
            )
        return orphans  # the caller records and publishes them

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
