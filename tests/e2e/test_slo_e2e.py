"""Error budgets end to end, with windows of seconds: a check failing half of its runs fires the
fast-burn alert, ``firstwatch slo`` shows the budget falling, the status page and ``/status``
show the picture, the alert resolves when the short window calms down, and a restart keeps the
counts (seeded from the run history)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.agent import firstwatch, read_events, start_daemon, wait_for_events

FAST = "error budget burn > 3x over 6s and 1s"
SLOW = "error budget burn > 1.5x over 30s and 6s"


class Flaky:
    """A page that, when ``flaky``, fails every other request."""

    def __init__(self) -> None:
        self.flaky = False
        self.n = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.n += 1
        if self.flaky and self.n % 2:
            return web.Response(status=503, text="overloaded")
        return web.Response(text="welcome")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def shop() -> AsyncIterator[Flaky]:
    s = Flaky()
    await s.start()
    yield s
    assert s.runner is not None
    await s.runner.cleanup()


def free_port() -> int:
    """A port to listen on (``firstwatch slo`` finds the agent by the config's address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path, shop: Flaky) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
agent: {{name: slo-01, state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:{free_port()}"}}
checks:
  - name: shop-home
    type: http
    url: "http://127.0.0.1:{shop.port}/"
    interval: 0.2s
    timeout: 0.2s
    slo:
      objective: 90%          # lax enough that one slow run on a loaded machine burns nothing
      window: 1m
      alerts:
        - {{burn: 3, long: 6s, short: 1s, severity: critical}}
        - {{burn: 1.5, long: 30s, short: 6s, severity: minor}}
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
"""
    )
    return path


async def slo(cfg: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = await firstwatch("slo", "-c", str(cfg), "--format", "json")
    assert err == "", err
    doc = json.loads(out)
    assert "slos" in doc, (code, doc)
    return code, doc["slos"][0]


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


async def test_half_the_runs_failing_burns_the_budget_and_pages_once(tmp_path: Path, shop: Flaky) -> None:
    cfg = config(tmp_path, shop)
    events = tmp_path / "events.jsonl"
    daemon = await start_daemon(cfg)
    try:
        port = await daemon.port()
        await asyncio.sleep(1.5)
        code, calm = await slo(cfg)
        assert code == 0 and calm["firing"] == [] and calm["sli"] >= 0.9 and calm["budget_remaining"] >= 0.0
        assert calm["runs"] >= 4 and calm["objective"] == 0.9 and calm["window_s"] == 60.0

        shop.flaky = True
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "firing" and x["rule"] == FAST for x in e))
        (page,) = [e for e in evs if e["kind"] == "firing" and e["rule"] == FAST]
        slow = [e for e in evs if e["rule"] == SLOW]  # the slow burn may page first; the fast one covers it
        assert [e["kind"] for e in slow] in ([], ["firing", "resolved"]), slow
        if slow:
            assert slow[1]["summary"].endswith("(covered by the critical burn alert))")
        assert (page["check"], page["rule"], page["severity"]) == ("shop-home", FAST, "critical")
        left = r"(\d+% of 1m budget left|1m budget overspent by \d+%)"
        assert re.fullmatch(
            rf"shop-home: error budget burning \d+\.\dx \(6s\) and \d+\.\dx \(1s\); {left}", page["summary"]
        )
        assert page["value"] > 3

        _, first = await slo(cfg)
        await asyncio.sleep(1.0)
        code, later = await slo(cfg)
        assert later["budget_remaining"] < first["budget_remaining"] < 1.0  # falling while it burns
        assert later["burn_rates"]["6s"] > 3
        assert {"rule": FAST, "severity": "critical"} in later["firing"] and code == 2
        _, text, _ = await firstwatch("slo", "-c", str(cfg))
        assert re.search(r"shop-home .*90%.*1m .*critical burn", text), text

        doc = json.loads(get(port, "/status"))
        (check,) = doc["checks"]
        assert 0.3 < check["history"]["uptime"]["24h"] < 0.99
        assert check["history"]["days"][-1]["state"] == "critical" and check["history"]["days"][-1]["runs"] > 10
        assert any(p["p95_s"] is not None for p in check["history"]["latency"])
        assert doc["slos"] == check["slo"] and doc["slos"][0]["check"] == "shop-home"
        page_html = get(port, "/")
        assert "<svg" in page_html and "<script" not in page_html

        shop.flaky = False  # the short window calms down first: the page resolves
        evs = await wait_for_events(
            events, lambda e: any(x["kind"] == "resolved" and x["rule"] == FAST for x in e), timeout=15
        )
        (resolved,) = [e for e in evs if e["kind"] == "resolved" and e["rule"] == FAST]
        assert resolved["incident"] == page["incident"]
        assert len([e for e in read_events(events) if e["kind"] == "firing" and e["rule"] == FAST]) == 1
    finally:
        await daemon.stop()

    daemon = await start_daemon(cfg)
    try:
        await daemon.port()
        await daemon.wait_log(r"SLOs: \d+ run\(s\) of history counted")
        _, after = await slo(cfg)
        assert after["runs"] > 20 and after["good"] < after["runs"]  # the failures before the restart count
        assert after["budget_remaining"] < 1.0
    finally:
        await daemon.stop()
