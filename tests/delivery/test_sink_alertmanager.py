"""``type: alertmanager`` against real Alertmanagers (Debian's prometheus-alertmanager) on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import Event, iso_time
from agent.delivery.sinks.alertmanager import (
    AlertBook,
    AlertmanagerConfig,
    AlertmanagerSink,
    alert_labels,
    hold,
    label_name,
)
from tests.conftest import require_binary
from tests.support.peers.alertmanager import BINARY, Alertmanager, free_port, route_config

SECRET = "Basic czNjcjN0OnMzY3IzdA=="
RUNBOOK = "https://wiki.example.com/runbooks/shop-home?step=1&lang=en"
STARTED = time.time() - 120


def event(kind: str = "firing", severity: str = "critical", **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "summary": f"shop-home: down ({kind})",
        "agent": "web-01",
        "incident": "inc1",
        "fingerprint": "fp1",
        "check": "shop-home",
        "target": "https://shop.example.com/",
        "type": "http",
        "rule": "down for 1m",
        "started_at": STARTED,
        **kw,
    }
    return Event(kind=kind, severity=severity, **fields)  # type: ignore[arg-type]


def epoch(text: str) -> float:
    """Alertmanager's times (trailing zeros of the fraction trimmed: ``...:43.9Z``) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def sink(**options: Any) -> AlertmanagerSink:
    return AlertmanagerSink(AlertmanagerConfig.model_validate({"type": "alertmanager", **options}), "am")


async def until(pred: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``pred`` (run in a thread: it may do blocking HTTP) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(pred)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def alerts_of(am: Alertmanager, check: str = "shop-home") -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("check") == check]


@pytest.fixture
def alertmanagers(tmp_path: Any, request: pytest.FixtureRequest) -> Callable[..., Alertmanager]:
    """Start real Alertmanagers; every one is stopped at the end of the test."""
    binary = require_binary(BINARY, "prometheus-alertmanager")
    made: list[Alertmanager] = []

    def stop_all() -> None:
        for am in made:
            am.stop()

    request.addfinalizer(stop_all)

    def make(
        config: str | None = None, cluster: tuple[int, list[int]] | None = None, start: bool = True
    ) -> Alertmanager:
        am = Alertmanager(binary, tmp_path / f"am{len(made)}", config or route_config(), cluster)
        made.append(am)
        if start:
            am.start()
        return am

    return make


class Receiver:
    """A webhook receiver (and a fake Alertmanager whose answer the test sets)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.stall = False
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.received.append(await request.json())
        if self.stall:
            await self.release.wait()
        return web.Response(status=self.status, text='"invalid label set"' if self.status == 400 else "")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield r
    r.release.set()
    await runner.cleanup()


# --- pure: labels, endsAt, the book of alerts ---------------------------------------------------


def test_label_names_never_have_dots() -> None:
    assert [label_name(k) for k in ("env", "team.name", "k8s-ns", "9lives", "a.b-c")] == [
        "env",
        "team_name",
        "k8s_ns",
        "_9lives",
        "a_b_c",
    ]
    e = event(labels={"team.name": "web", "severity": "spoofed", "empty": ""})
    assert alert_labels(e, {"region": "eu"}) == {
        "alertname": "shop-home",
        "severity": "critical",  # the event's own fields win over labels of the same name
        "check": "shop-home",
        "target": "https://shop.example.com/",
        "agent": "web-01",
        "team_name": "web",
        "region": "eu",
    }
    host = alert_labels(event(target=None, check="host"), {})
    assert "target" not in host and host["alertname"] == "host"


def test_ends_at_is_held_ahead_while_firing_and_is_the_resolution_time_after() -> None:
    assert hold(60) == 300 and hold(120) == 480 and hold(0.3) == 300
    book = AlertBook({}, resolved_for=900)
    now = 1_800_000_000.0
    book.update(event(), now)
    (firing,) = book.wire(None, now, hold(120))
    assert firing["startsAt"] == iso_time(STARTED)
    assert firing["endsAt"] == iso_time(now + 480)
    (later,) = book.wire(None, now + 60, hold(120))  # pushed ahead at every re-send
    assert later["endsAt"] == iso_time(now + 540)
    book.update(event("resolved", time=now + 100), now + 101)
    (resolved,) = book.wire(None, now + 200, hold(120))
    assert resolved["endsAt"] == iso_time(now + 100)
    book.prune(now + 100 + 899)
    assert book.wire(None, now + 999, 480) == [resolved]  # still re-sent within resolved_for
    book.prune(now + 100 + 901)
    assert book.wire(None, now + 1001, 480) == []


def test_changed_severity_resolves_the_old_label_set_and_fires_the_new() -> None:
    book = AlertBook({}, resolved_for=900)
    now = 1_800_000_000.0
    book.update(event(severity="major"), now)
    touched = book.update(event("changed", severity="critical"), now + 10)
    sent = {a["labels"]["severity"]: a for a in book.wire(touched, now + 10, 300)}
    assert sent["major"]["endsAt"] == iso_time(now + 10)
    assert sent["critical"]["endsAt"] == iso_time(now + 310)
    book.update(event("resolved", severity="critical", time=now + 20), now + 20)
    assert {a["labels"]["severity"]: a["endsAt"] for a in book.wire(None, now + 30, 300)} == {
        "major": iso_time(now + 10),
        "critical": iso_time(now + 20),
    }


def test_two_rules_sharing_a_label_set_stay_firing_until_both_resolve() -> None:
    book = AlertBook({}, resolved_for=900)
    now = 1_800_000_000.0
    book.update(event(fingerprint="down"), now)
    book.update(event(fingerprint="slow", rule="duration > 2s"), now + 1)
    touched = book.update(event("resolved", fingerprint="slow", time=now + 2), now + 2)
    (sent,) = book.wire(touched, now + 2, 300)
    assert sent["endsAt"] == iso_time(now + 302) and sent["annotations"]["rule"] == "down for 1m"


def test_agent_trouble_fires_until_resolved_for_after_the_last_repeat() -> None:
    book = AlertBook({}, resolved_for=600)
    now = 1_800_000_000.0
    trouble = Event(kind="agent", severity="major", summary="sink pager failing", agent="web-01", time=now)
    book.update(trouble, now)
    (a,) = book.wire(None, now, 300)
    assert a["labels"] == {"alertname": "firstwatch_agent", "severity": "major", "agent": "web-01"}
    assert a["endsAt"] == iso_time(now + 600)
    book.update(Event(kind="agent", severity="major", summary="still", agent="web-01", time=now + 500), now + 500)
    (a,) = book.wire(None, now + 700, 300)
    assert a["endsAt"] == iso_time(now + 1100) and a["annotations"] == {"summary": "still"}
    book.update(Event(kind="agent", severity="minor", summary="heartbeat: ok", agent="web-01", time=now), now)
    assert {x["labels"]["alertname"] for x in book.wire(None, now, 300)} == {"firstwatch_agent", "firstwatch_heartbeat"}


def problem(kind: str, sink: str, t: float, severity: str = "major") -> Event:
    """An agent problem with an identity, as the runtime raises and resolves it."""
    summary = f"sink {sink} is failing" if kind == "agent" else f"sink {sink} recovered"
    return Event(
        kind=kind, severity=severity, summary=summary, agent="web-01", time=t, fingerprint=f"fp-{sink}",
        target=sink, type="agent", rule="sink_failing",
    )  # type: ignore[arg-type]  # fmt: skip


def test_each_agent_problem_is_its_own_alert_and_fires_until_it_clears() -> None:
    book = AlertBook({}, resolved_for=600, link="http://127.0.0.1:9464/")
    now = 1_800_000_000.0
    book.update(problem("agent", "pager", now), now)
    book.update(problem("agent", "mail", now), now)
    wire = book.wire(None, now + 3600, 300)  # an hour later, both still fire: they have not cleared
    assert sorted(a["labels"]["target"] for a in wire) == ["mail", "pager"]
    for a in wire:
        assert a["labels"]["alertname"] == "firstwatch_agent" and a["labels"]["problem"] == "sink_failing"
        assert a["endsAt"] == iso_time(now + 3600 + 300) and a["generatorURL"] == "http://127.0.0.1:9464/"
    book.update(problem("resolved", "pager", now + 3700), now + 3700)
    ends = {a["labels"]["target"]: a["endsAt"] for a in book.wire(None, now + 3700, 300)}
    assert ends == {"pager": iso_time(now + 3700), "mail": iso_time(now + 3700 + 300)}


def test_a_group_alert_names_its_failing_members() -> None:
    book = AlertBook({}, resolved_for=600)
    now = 1_800_000_000.0
    book.update(event(target="3 targets", members=["https://10.0.0.1/", "https://10.0.0.3/"]), now)
    (a,) = book.wire(None, now, 300)
    assert a["annotations"]["members"] == "https://10.0.0.1/, https://10.0.0.3/"
    assert "affected" not in a["annotations"] and "runbook_url" not in a["annotations"]  # none: absent


def test_runbook_url_and_affected_checks_are_annotations() -> None:
    book = AlertBook({}, resolved_for=600)
    now = 1_800_000_000.0
    book.update(event(runbook=RUNBOOK, affected=["shop-checkout", "search"], members=["https://10.0.0.1/"]), now)
    (a,) = book.wire(None, now, 300)
    assert a["annotations"] == {
        "summary": "shop-home: down (firing)",
        "rule": "down for 1m",
        "incident": "inc1",
        "runbook_url": RUNBOOK,  # the Prometheus convention Alertmanager templates and Grafana read
        "affected": "shop-checkout, search",
        "members": "https://10.0.0.1/",  # a group's failing members stay apart from dependent checks
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of 'url' or 'urls'"),
        ({"url": "http://a:9093", "urls": ["http://b:9093"]}, "exactly one of 'url' or 'urls'"),
        ({"urls": []}, "at least one Alertmanager"),
        ({"url": "a:9093"}, "expected http://host:port"),
        ({"url": "http://user:pw@a:9093"}, "put credentials in 'headers'"),
        ({"url": "http://a:9093", "resend": "0"}, "greater than 0"),
        ({"url": "http://a:9093", "labels": {"team.name": "x"}}, "try 'team_name'"),
        ({"url": "http://a:9093", "labels": {"severity": "x"}}, "set by firstwatch"),
    ],
)
def test_invalid_config_is_rejected_with_a_reason(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        sink(**options)
    shown = " ".join(e["msg"] for e in err.value.errors())  # what the config loader shows
    assert re.search(message, shown) and ":pw@" not in shown


# --- against real Alertmanagers ---------------------------------------------------------------


async def test_firing_event_becomes_an_active_alert(alertmanagers: Callable[..., Alertmanager]) -> None:
    am = alertmanagers()
    s = sink(url=am.url, labels={"region": "eu"}, headers={"Authorization": SECRET})
    try:
        await s.send(event(labels={"env": "prod", "team.name": "web", "k8s-ns": "shop"}, runbook=RUNBOOK))
        (alert,) = await until(lambda: alerts_of(am))
    finally:
        await s.close()
    assert alert["labels"] == {
        "alertname": "shop-home",
        "severity": "critical",
        "check": "shop-home",
        "target": "https://shop.example.com/",
        "agent": "web-01",
        "env": "prod",
        "team_name": "web",
        "k8s_ns": "shop",
        "region": "eu",
    }
    assert alert["annotations"] == {
        "summary": "shop-home: down (firing)",
        "rule": "down for 1m",
        "incident": "inc1",
        "runbook_url": RUNBOOK,
    }
    assert alert["status"]["state"] == "active"
    assert abs(epoch(alert["startsAt"]) - STARTED) < 0.001
    assert epoch(alert["endsAt"]) > time.time() + 240  # Alertmanager resolves it itself only if we stop


async def test_resolved_event_resolves_the_alert(
    alertmanagers: Callable[..., Alertmanager], receiver: Receiver
) -> None:
    am = alertmanagers(route_config(f"{receiver.url}/hook", group_interval="500ms", send_resolved=True))
    s = sink(url=am.url)
    try:
        await s.send(event(runbook=RUNBOOK, affected=["shop-checkout", "search"]))
        assert await until(lambda: alerts_of(am))
        resolved_at = time.time()
        await s.send(event("resolved", time=resolved_at))
        assert await until(lambda: not alerts_of(am))
        assert await until(lambda: any(n["status"] == "resolved" for n in receiver.received))
    finally:
        await s.close()
    first, last = receiver.received[0], receiver.received[-1]
    assert first["status"] == "firing" and first["alerts"][0]["labels"]["check"] == "shop-home"
    notes = first["commonAnnotations"]  # what a receiver's template reads: {{ .CommonAnnotations.runbook_url }}
    assert (notes["runbook_url"], notes["affected"]) == (RUNBOOK, "shop-checkout, search")
    assert last["status"] == "resolved" and abs(epoch(last["alerts"][0]["endsAt"]) - resolved_at) < 0.001


async def test_an_agent_problem_resolves_in_a_real_alertmanager(
    alertmanagers: Callable[..., Alertmanager],
) -> None:
    am = alertmanagers()
    s = sink(url=am.url)
    s.agent_url = "http://127.0.0.1:9464/"
    try:
        await s.send(problem("agent", "pager", time.time()))
        (alert,) = await until(lambda: am.alerts())
        assert alert["labels"]["problem"] == "sink_failing" and alert["labels"]["target"] == "pager"
        assert alert["generatorURL"] == "http://127.0.0.1:9464/"
        await s.send(problem("resolved", "pager", time.time()))
        assert await until(lambda: not am.alerts())
    finally:
        await s.close()


async def test_changed_severity_replaces_the_alert(alertmanagers: Callable[..., Alertmanager]) -> None:
    am = alertmanagers()
    s = sink(url=am.url)
    try:
        await s.send(event(severity="major"))
        assert await until(lambda: alerts_of(am))
        await s.send(event("changed", severity="critical"))
        severities = await until(lambda: [a["labels"]["severity"] for a in alerts_of(am)] == ["critical"])
    finally:
        await s.close()
    assert severities, alerts_of(am)


async def test_same_alert_from_two_agents_is_one_notification(
    alertmanagers: Callable[..., Alertmanager], receiver: Receiver
) -> None:
    """Story 2's fleet view: grouped by alertname, two agents' alerts page once, together.

    The alerts start now (a rule without ``for:``): Alertmanager skips group_wait for an alert whose
    startsAt is already older than group_wait, so alerts that started earlier (``for: 1m``) page
    once for the first one and again, together, after group_interval (Prometheus alerts do too)."""
    am = alertmanagers(route_config(f"{receiver.url}/hook", group_wait="300ms"))
    agents = [sink(url=am.url), sink(url=am.url)]
    now = time.time()
    try:
        await asyncio.gather(
            *(s.send(event(agent=a, started_at=now)) for s, a in zip(agents, ["web-01", "web-02"], strict=True))
        )
        assert await until(lambda: receiver.received)
        await asyncio.sleep(1.5)  # longer than group_interval: a second notification would have come
    finally:
        await asyncio.gather(*(s.close() for s in agents))
    (note,) = receiver.received
    assert note["groupLabels"] == {"alertname": "shop-home"} and note["status"] == "firing"
    assert sorted(a["labels"]["agent"] for a in note["alerts"]) == ["web-01", "web-02"]


async def test_a_cluster_notifies_once(alertmanagers: Callable[..., Alertmanager], receiver: Receiver) -> None:
    gossip = [free_port(), free_port()]
    config = route_config(f"{receiver.url}/hook")
    cluster = [alertmanagers(config, cluster=(gossip[i], [gossip[1 - i]])) for i in (0, 1)]

    def settled() -> bool:
        status = [am.get("/api/v2/status")["cluster"] for am in cluster]
        return all(c["status"] == "ready" and len(c["peers"]) == 2 for c in status)

    assert await until(settled, timeout=10), [am.get("/api/v2/status")["cluster"] for am in cluster]
    s = sink(urls=[am.url for am in cluster])
    try:
        await s.send(event())
        assert await until(lambda: all(alerts_of(am) for am in cluster))
        assert await until(lambda: receiver.received)
        await asyncio.sleep(3)  # the second member waits peer-timeout (1.5s), then sees the first one's log
    finally:
        await s.close()
    assert len(receiver.received) == 1, receiver.received


async def test_one_member_down_is_enough_all_down_is_an_error(
    alertmanagers: Callable[..., Alertmanager], caplog: pytest.LogCaptureFixture
) -> None:
    am = alertmanagers()
    down = [free_port(), free_port()]
    s = sink(urls=[am.url, f"http://127.0.0.1:{down[0]}"], headers={"Authorization": SECRET})
    caplog.set_level(logging.WARNING, "firstwatch.alertmanager")
    try:
        await s.send(event())
        assert await until(lambda: alerts_of(am))
        assert f"127.0.0.1:{down[0]} did not accept alerts: cannot connect (Connection refused)" in caplog.text
    finally:
        await s.close()
    s = sink(urls=[f"http://127.0.0.1:{p}" for p in down], headers={"Authorization": SECRET})
    try:
        with pytest.raises(DeliveryError) as err:
            await s.send(event())
    finally:
        await s.close()
    assert not isinstance(err.value, PermanentDeliveryError)
    assert str(err.value) == (
        f"no Alertmanager accepted the alerts: 127.0.0.1:{down[0]}: cannot connect (Connection refused); "
        f"127.0.0.1:{down[1]}: cannot connect (Connection refused)"
    )
    assert SECRET not in str(err.value) + caplog.text


async def test_rejected_everywhere_is_permanent_and_slow_is_retryable(receiver: Receiver) -> None:
    s = sink(url=receiver.url, headers={"Authorization": SECRET}, timeout="300ms")
    try:
        receiver.status = 400
        with pytest.raises(PermanentDeliveryError, match=r"HTTP 400 Bad Request: \"invalid label set\".*a bug in"):
            await s.send(event())
        assert receiver.headers[0]["Authorization"] == SECRET
        assert isinstance(receiver.received[0], list) and receiver.received[0][0]["labels"]["check"] == "shop-home"
        receiver.status, receiver.stall = 200, True
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="no answer within 300ms") as err:
            await s.send(event())
        assert time.monotonic() - started < 3 and not isinstance(err.value, PermanentDeliveryError)
    finally:
        await s.close()


async def test_active_alerts_are_resent_to_a_restarted_alertmanager(
    alertmanagers: Callable[..., Alertmanager],
) -> None:
    am = alertmanagers()
    s = sink(url=am.url, resend="300ms")
    try:
        await s.send(event())
        assert await until(lambda: alerts_of(am))
        await asyncio.to_thread(am.stop)
        await asyncio.to_thread(am.start)  # fresh storage: it has forgotten every alert
        back = time.monotonic()
        assert await until(lambda: alerts_of(am), timeout=2.5), "active alert not re-sent within 2.5s"
        assert time.monotonic() - back < 2.5  # resend is 300ms; the default would be minutes
    finally:
        await s.close()
