"""The durable outbox and its delivery workers: order, retries, drops, escalation, reminders.

The sinks here are spies (real objects implementing the sink interface, recording what they
get and failing on command), so the dispatcher's promises are tested without a network.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import ClassVar

import pytest

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import Event
from agent.delivery.dispatch import Dispatcher
from agent.delivery.outbox import Outbox
from agent.delivery.sinks.base import BaseSink, SinkConfig
from agent.incidents.store import Store


class Spy(BaseSink):
    TYPE = "spy"
    Config: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, name: str, **routing: object) -> None:
        super().__init__(SinkConfig.model_validate({"type": "spy", **routing}), name)
        self.got: list[Event] = []
        self.down = False
        self.reject: set[str] = set()

    async def send(self, event: Event) -> None:
        if self.down:
            raise DeliveryError(f"{self.name} is down")
        if event.summary in self.reject:
            raise PermanentDeliveryError("rejected")
        self.got.append(event)


def ev(summary: str, kind: str = "firing", incident: str | None = "inc1", severity: str = "critical") -> Event:
    return Event(kind=kind, severity=severity, summary=summary, agent="a", incident=incident)  # type: ignore[arg-type]


class Harness:
    def __init__(self, tmp_path: Path, *sinks: Spy, max_pending: int = 10000) -> None:
        self.store = Store(str(tmp_path / "state"))
        self.sinks = list(sinks)
        self.outbox = Outbox(self.store, self.sinks, max_pending=max_pending)
        self.agent_events: list[tuple[str, str]] = []
        self.d = Dispatcher(
            self.sinks,
            self.outbox,
            backoff=0.02,
            max_backoff=0.1,
            on_agent_event=lambda s, t: self.agent_events.append((s, t)),
        )
        self.d.start()

    def publish(self, *events: Event) -> None:
        with self.store.transaction():
            for e in events:
                if e.kind == "firing" and e.incident:
                    self.store.open_incident(
                        e.incident, fingerprint="f", check="c", target="t", rule="down", severity=e.severity,
                        summary=e.summary, first_error=None, started_at=e.time, fired_at=e.time,
                    )  # fmt: skip
                if e.kind == "resolved" and e.incident:
                    self.store.resolve_incident(e.incident, e.time)
                self.outbox.enqueue(e)
        self.d.wake()

    async def until(self, pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)


async def test_a_sink_that_is_down_gets_everything_in_order_once_it_is_back(tmp_path: Path) -> None:
    pager, log = Spy("pager"), Spy("log")
    h = Harness(tmp_path, pager, log)
    pager.down = True
    h.publish(*(ev(f"e{i}", incident=None) for i in range(20)))
    await h.until(lambda: len(log.got) == 20)  # the other sink is not held up
    await asyncio.sleep(0.2)
    assert pager.got == []
    assert [s for s, t in h.agent_events] == ["major"]  # one agent event for the episode, not 20
    assert "sink pager is failing: pager is down" in h.agent_events[0][1]
    pager.down = False
    await h.until(lambda: len(pager.got) == 20)
    assert [e.summary for e in pager.got] == [f"e{i}" for i in range(20)]
    assert "sink pager recovered" in h.agent_events[-1][1]
    await h.d.close()


async def test_undelivered_events_survive_a_restart_with_their_ids(tmp_path: Path) -> None:
    pager = Spy("pager")
    pager.down = True
    h = Harness(tmp_path, pager)
    events = [ev(f"e{i}", incident=None) for i in range(5)]
    h.publish(*events)
    await asyncio.sleep(0.1)
    await h.d.close(timeout=0.2)
    h.store.close()
    again = Spy("pager")
    h2 = Harness(tmp_path, again)
    h2.d.wake()
    await h2.until(lambda: len(again.got) == 5)
    assert [e.id for e in again.got] == [e.id for e in events]
    await h2.d.close()


async def test_rejected_events_are_dropped_counted_and_reported(tmp_path: Path) -> None:
    pager = Spy("pager")
    pager.reject = {"bad"}
    h = Harness(tmp_path, pager)
    h.publish(ev("bad", incident=None), ev("good", incident=None))
    await h.until(lambda: len(pager.got) == 1)
    assert h.d.dropped["pager"] == 1 and "dropped events (rejected)" in h.agent_events[0][1]
    await h.d.close()


async def test_the_outbox_is_bounded_and_overflow_is_reported(tmp_path: Path) -> None:
    pager = Spy("pager")
    pager.down = True
    h = Harness(tmp_path, pager, max_pending=5)
    h.publish(*(ev(f"e{i}", incident=None) for i in range(8)))
    await asyncio.sleep(0.05)
    assert h.outbox.pending["pager"] == 5 and h.d.dropped["pager"] == 3
    assert any("outbox full" in t for _, t in h.agent_events)
    pager.down = False
    await h.until(lambda: len(pager.got) == 5)
    assert [e.summary for e in pager.got] == [f"e{i}" for i in range(3, 8)]  # the newest are kept
    await h.d.close()


async def test_a_flood_of_drops_logs_one_line_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pager = Spy("pager")
    pager.down = True
    h = Harness(tmp_path, pager, max_pending=5)
    with caplog.at_level(logging.ERROR, logger="firstwatch.dispatch"):
        for i in range(500):  # one event a publish, each pushing the oldest out
            h.publish(ev(f"e{i}", incident=None))
    assert h.d.dropped["pager"] == 495
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1 and "sink pager: 1 event(s) dropped (outbox full)" in lines[0]
    await h.d.close()


async def test_escalation_only_for_incidents_still_open_and_unacknowledged(tmp_path: Path) -> None:
    backup = Spy("backup", delay="0.3s")
    h = Harness(tmp_path, backup)
    h.publish(ev("acked later", incident="a"), ev("resolved later", incident="r"), ev("still firing", incident="s"))
    h.store.ack("a", "maria")
    h.publish(ev("resolved", kind="resolved", incident="r"))
    await asyncio.sleep(0.1)
    assert backup.got == []  # nothing before the delay
    await h.until(lambda: len(backup.got) == 1, timeout=3)
    await asyncio.sleep(0.2)
    assert [e.summary for e in backup.got] == ["still firing"]
    h.publish(ev("resolved", kind="resolved", incident="s"))
    await h.until(lambda: len(backup.got) == 2)
    assert backup.got[1].kind == "resolved"
    await h.d.close()


async def test_reminders_while_firing_and_unacknowledged(tmp_path: Path) -> None:
    from agent.alerting.book import AlertBook
    from agent.engine.recorder import Recorder

    pager = Spy("pager", repeat="0.2s")
    h = Harness(tmp_path, pager)
    recorder = Recorder(h.store, AlertBook("a", {}), h.outbox)
    h.publish(ev("down", incident="x"))
    await h.until(lambda: len(pager.got) == 1)
    for _ in range(8):
        await asyncio.sleep(0.06)
        if recorder.remind(time.time()):
            h.d.wake()
    await h.until(lambda: len(pager.got) >= 3)
    reminders = pager.got[1:]
    assert all(e.kind == "reminder" and e.summary == "reminder: down" and e.incident == "x" for e in reminders)
    assert len({e.id for e in pager.got}) == len(pager.got)
    h.store.ack("x", "maria")
    count = len(pager.got)
    for _ in range(6):
        await asyncio.sleep(0.06)
        assert recorder.remind(time.time()) == 0
    assert len(pager.got) == count  # an ack stops reminders
    await h.d.close()


async def test_the_pager_hears_the_resolution_of_what_woke_it(tmp_path: Path) -> None:
    pager = Spy("pager", min_severity="critical")
    h = Harness(tmp_path, pager)
    h.publish(ev("all down", incident="g", severity="critical"), ev("minor one", incident="m", severity="minor"))
    h.publish(ev("now 1 of 3", kind="changed", incident="g", severity="minor"))
    h.publish(ev("over", kind="resolved", incident="g", severity="minor"))
    h.publish(ev("over too", kind="resolved", incident="m", severity="minor"))
    await h.until(lambda: len(pager.got) == 3)
    await asyncio.sleep(0.1)
    assert [e.summary for e in pager.got] == ["all down", "now 1 of 3", "over"]
    await h.d.close()


async def test_a_sent_event_that_cannot_be_marked_is_not_sent_again(tmp_path: Path) -> None:
    """The disk fills between the send and the mark: the worker retries the mark, not the send."""
    pager = Spy("pager")
    h = Harness(tmp_path, pager)
    await h.d.close()
    failures = {"finish": 3}

    async def db(fn, *args):  # type: ignore[no-untyped-def]
        if fn == h.outbox.finish and failures["finish"]:
            failures["finish"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return fn(*args)

    d = Dispatcher(h.sinks, h.outbox, db=db, backoff=0.01, max_backoff=0.05)
    d.start()
    h.publish(ev("once", incident=None))
    d.wake()
    await h.until(lambda: failures["finish"] == 0 and h.outbox.pending["pager"] == 0)
    assert [e.summary for e in pager.got] == ["once"]
    await d.close()
