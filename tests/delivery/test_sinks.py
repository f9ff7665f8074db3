"""Sinks deliver what they are routed, against real files and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.config.load import parse_config
from agent.core.errors import ConfigError
from agent.core.events import Event
from agent.delivery.dispatch import Dispatcher
from agent.delivery.outbox import Outbox
from agent.incidents.store import Store
from tests.support.peers.servers import serve_app


def event(kind: str = "firing", severity: str = "minor", incident: str = "inc1", **kw: Any) -> Event:
    return Event(kind=kind, severity=severity, summary=f"{kind} {severity}", agent="a", incident=incident, **kw)  # type: ignore[arg-type]


def dispatcher(built, tmp_path: Path) -> Dispatcher:  # type: ignore[no-untyped-def]
    store = Store(str(tmp_path / "state"))
    return Dispatcher(built, Outbox(store, built), backoff=0.05)


def publish(d: Dispatcher, *events: Event) -> None:
    with d.outbox.store.transaction():
        for e in events:
            d.outbox.enqueue(e)
    d.wake()


def sinks(text: str):  # type: ignore[no-untyped-def]
    cfg = parse_config("checks: []\nsinks:\n" + text, "c.yaml", env={})
    return [s.build() for s in cfg.sinks]


async def test_routing_by_severity_kind_and_check(tmp_path: Path) -> None:
    built = sinks(
        f"""
  - {{type: file, name: pager, path: "{tmp_path}/pager.jsonl", min_severity: critical}}
  - {{type: file, name: resolved, path: "{tmp_path}/resolved.jsonl", kinds: [resolved]}}
  - {{type: file, name: all, path: "{tmp_path}/all.jsonl"}}
"""
    )
    d = dispatcher(built, tmp_path)
    d.start()
    publish(
        d, event(severity="minor"), event(severity="critical"), event(kind="resolved", severity="major", incident="i2")
    )
    await d.close()
    lines = {p.stem: [json.loads(x)["summary"] for x in p.read_text().splitlines()] for p in tmp_path.glob("*.jsonl")}
    assert lines == {
        "pager": ["firing critical"],
        "resolved": ["resolved major"],
        "all": ["firing minor", "firing critical", "resolved major"],
    }
    assert d.sent == {"pager": 1, "resolved": 1, "all": 3}


async def test_file_sink_follows_logrotate(tmp_path: Path) -> None:
    (sink,) = sinks(f'  - {{type: file, path: "{tmp_path}/sub/events.jsonl"}}\n')
    await sink.send(event())
    os.rename(tmp_path / "sub/events.jsonl", tmp_path / "sub/events.jsonl.1")
    await sink.send(event(kind="resolved"))
    await sink.close()
    assert len((tmp_path / "sub/events.jsonl.1").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "sub/events.jsonl").read_text())["kind"] == "resolved"


async def test_digest_collects_minor_events_and_repeats_open_incidents(tmp_path: Path) -> None:
    path = tmp_path / "digest.md"
    (digest,) = sinks(f'  - {{type: digest, path: "{path}", every: 0.3s}}\n')
    d = dispatcher([digest], tmp_path)
    d.start()
    publish(d, event(incident="cert"), event(severity="critical", incident="page"))  # critical: not in a digest
    await asyncio.sleep(0.45)
    first = path.read_text()
    assert "1 events" in first and "firing minor" in first and "critical" not in first
    await asyncio.sleep(0.35)  # nothing new, but the incident is still open: repeated
    second = path.read_text()[len(first) :]
    assert "Still open (1)" in second and "0 events" in second
    publish(d, event(kind="resolved", incident="cert"))
    await d.close()  # the pending digest is written at shutdown
    last = path.read_text().split("## ")[-1]
    assert "resolved minor" in last and "Still open" not in last


async def test_digest_posts_json(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/digest", hook)
    runner, port = await serve_app(app, access_log=None)
    try:
        (digest,) = sinks(f'  - {{type: digest, url: "http://127.0.0.1:{port}/digest", every: 1h}}\n')
        await digest.send(event())
        await digest.close()
    finally:
        await runner.cleanup()
    (body,) = received
    assert body["title"].startswith("firstwatch digest") and body["events"][0]["summary"] == "firing minor"
    assert [o["incident"] for o in body["open"]] == ["inc1"]


def test_digest_needs_one_destination() -> None:
    with pytest.raises(ConfigError) as info:
        sinks("  - {type: digest, every: 1h}\n")
    assert str(info.value.issues[0]) == "c.yaml:3:5: sinks[0]: a digest needs exactly one of 'path' or 'url'"
