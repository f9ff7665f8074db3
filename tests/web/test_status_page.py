"""The status page: escaped, ordered by severity, and readable in a real browser (headless Chromium).

Set FIRSTWATCH_SCREENSHOT=/tmp/firstwatch-status.png to keep the story-1 screenshot for a look.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import struct
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest

from agent.core.events import iso_time
from agent.web import page as status_page
from agent.web.api import start_http
from agent.web.text import render_text
from tests.conftest import require_binary

NOW = 1_795_487_700.0  # 2026-11-24T02:35:00Z
HOSTILE = '<script>alert("x")</script>'


def story_snapshot(now: float) -> dict[str, Any]:
    """Story 1 (2 AM, the shop is down), acked by maria, with a note; other checks fine."""

    def t(ago: float) -> str:
        return iso_time(now - ago)

    def member(
        target: str, up: bool | None, error: str | None = None, firing: list[Any] | None = None, **values: float
    ) -> dict[str, Any]:
        return {
            "target": target,
            "up": up,
            "last_run": t(4) if up is not None else None,
            "duration_s": values.get("duration"),
            "error": error,
            "values": values,
            "firing": firing or [],
        }

    down = [{"rule": "down for 1m", "severity": "critical"}]
    return {
        "agent": {
            "name": "mon-01",
            "version": "0.1.0",
            "started_at": t(3 * 86400 + 7200),
            "uptime_s": 3 * 86400 + 7200,
            "labels": {"env": "prod"},
        },
        "refresh_s": 10,
        "summary": {"checks": 5, "targets": 10, "up": 6, "down": 3, "open_incidents": 2, "worst": "critical"},
        "incidents": [
            {
                "id": "9b1e77c0a2f3",
                "summary": "shop-tls: days_left (11) < 14",
                "severity": "medium",
                "check": "shop-tls",
                "target": "shop.example.com:443",
                "started_at": t(86400),
                "fired_at": t(86400),
                "acked_by": None,
                "acked_at": None,
                "timeline": [
                    {"time": t(86400), "kind": "firing", "text": "shop-tls: days_left (11) < 14", "author": None}
                ],
            },
            {
                "id": "3f9c2a7b1d04",
                "summary": "shop-web: down for 1m on 3 of 3 members (impact: critical)",
                "severity": "critical",
                "check": "shop-web",
                "target": "3 of 3 members",
                "started_at": t(660),
                "fired_at": t(600),
                "acked_by": "maria",
                "acked_at": t(240),
                "timeline": [
                    {
                        "time": t(660),
                        "kind": "run",
                        "text": "first failing run: HTTP 503 from 10.0.0.2:443",
                        "author": None,
                    },
                    {
                        "time": t(600),
                        "kind": "firing",
                        "text": "shop-web: down for 1m on 3 of 3 members",
                        "author": None,
                    },
                    {"time": t(599), "kind": "delivered", "text": "sent to pager (pagerduty), slack", "author": None},
                    {"time": t(240), "kind": "ack", "text": "acknowledged", "author": "maria"},
                    {
                        "time": t(90),
                        "kind": "note",
                        "text": "rolled back shop 1.4.2 -> 1.4.1 on web-01..03",
                        "author": "maria",
                    },
                ],
            },
        ],
        "checks": [
            {
                "name": "api",
                "type": "tcp",
                "interval_s": 30,
                "members": [member(f"10.0.1.{i}:443", True, duration=0.002 + i / 1000) for i in range(1, 5)],
            },
            {
                "name": "shop-web",
                "type": "http",
                "interval_s": 30,
                "members": [
                    member(
                        f"https://10.0.0.{i}:443/",
                        False,
                        f"HTTP 503 from 10.0.0.{i}:443",
                        down,
                        duration=0.041,
                        status=503,
                    )
                    for i in range(1, 4)
                ],
            },
            {
                "name": "shop-tls",
                "type": "tls",
                "interval_s": 3600,
                "members": [
                    member(
                        "shop.example.com:443",
                        True,
                        None,
                        [{"rule": "days_left < 14", "severity": "medium"}],
                        duration=0.09,
                        days_left=11,
                    )
                ],
            },
            {
                "name": "host",
                "type": "host",
                "interval_s": 30,
                "members": [member("", True, cpu=0.23, memory=0.41, load1=0.7)],
            },
            {"name": "dns-shop", "type": "dns", "interval_s": 60, "members": [member("shop.example.com A", None)]},
        ],
    }


def test_everything_user_controlled_is_escaped() -> None:
    snap = story_snapshot(NOW)
    inc = snap["incidents"][1]
    inc.update(summary=HOSTILE, check=HOSTILE, target=HOSTILE, acked_by=HOSTILE, id=HOSTILE)
    inc["timeline"].append({"time": HOSTILE, "kind": HOSTILE, "text": HOSTILE, "author": HOSTILE})
    m = snap["checks"][1]["members"][0]
    m.update(target=HOSTILE, error=HOSTILE, last_run=HOSTILE, firing=[{"rule": HOSTILE, "severity": HOSTILE}])
    m["values"] = {HOSTILE: 1.0}
    snap["checks"][1].update(name=HOSTILE, type=HOSTILE)
    snap["agent"].update(name=HOSTILE, version=HOSTILE, labels={HOSTILE: HOSTILE})
    snap["summary"]["worst"] = HOSTILE
    html = status_page.render(snap, now=NOW)
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;") >= 15
    assert 'class="kind k-scriptalertxscript"' in html  # a kind never reaches a class name unfiltered


def test_incidents_critical_first_then_oldest() -> None:
    snap = story_snapshot(NOW)
    snap["incidents"].append({**snap["incidents"][1], "id": "older-critical", "started_at": iso_time(NOW - 7200)})
    snap["incidents"].append({**snap["incidents"][0], "id": "a-minor", "severity": "minor"})
    snap["incidents"].append({**snap["incidents"][0], "id": "a-major", "severity": "major"})
    html = status_page.render(snap, now=NOW)
    ids = ["older-critical", "3f9c2a7b1d04", "a-major", "9b1e77c0a2f3", "a-minor"]
    positions = [html.index(f'id <span class="mono">{i}</span>') for i in ids]
    assert positions == sorted(positions)


def test_headline_critical_vs_all_clear() -> None:
    html = status_page.render(story_snapshot(NOW), now=NOW)
    assert '<header class="headline sev-critical"><div class="state">CRITICAL</div>' in html
    assert "2 open incidents (1 critical, 1 medium) · 3 of 10 targets down · 5 checks" in html
    assert '<meta http-equiv="refresh" content="10">' in html
    assert "2026-11-24T02:24:00Z" in html and "(11m ago)" in html  # UTC ISO, and how long ago
    # Failing checks come first, then the ones without a result, then the fine ones.
    assert html.index("Failing (2)") < html.index("shop-web <small>") < html.index("No result yet (1)")
    assert html.index("No result yet (1)") < html.index("OK (2)")

    calm = {
        "agent": {"name": "mon-01"},
        "checks": [{"name": "api", "type": "tcp", "members": [{"target": "10.0.1.1:443", "up": True}]}],
    }
    html = status_page.render(calm, now=NOW)
    assert '<header class="headline sev-ok"><div class="state">ALL CLEAR</div>' in html
    assert "0 open incidents · all 1 targets up · 1 check" in html
    assert "No open incidents." in html
    assert f'content="{status_page.DEFAULT_REFRESH_S}"' in html


def test_tolerates_missing_and_odd_fields() -> None:
    for snap in (
        {},
        {"checks": None, "incidents": "x", "refresh_s": "soon"},
        {"checks": [{"members": [{}]}], "incidents": [{"timeline": [{}]}], "summary": {"worst": None}},
    ):
        html = status_page.render(snap)
        assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
        assert render_text(snap)


def test_text_view_for_firstwatch_status() -> None:
    text = render_text(story_snapshot(NOW))
    lines = text.splitlines()
    assert (
        lines[0]
        == "CRITICAL: 2 open incidents (1 critical, 1 medium) · 3 of 10 targets down · 5 checks  (agent mon-01)"
    )
    assert re.search(r"^critical +3f9c2a7b1d04 +2026-11-24T02:24:00Z +maria +shop-web: down", text, re.M)
    assert re.search(r"^shop-web +https://10\.0\.0\.2:443/ +DOWN .*critical: down for 1m; HTTP 503 from", text, re.M)
    assert text.index("3f9c2a7b1d04") < text.index("9b1e77c0a2f3")


class Story:
    async def snapshot(self) -> dict[str, Any]:
        return story_snapshot(time.time())

    def healthy(self) -> tuple[bool, str]:
        return True, ""

    def metrics(self) -> tuple[bytes, str] | None:
        return None


def png_pixel(data: bytes, x: int, y: int) -> tuple[int, ...]:
    """The (R, G, B) at (x, y) of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        ihdr = body if kind == b"IHDR" else ihdr
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, _, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw, stride, prev = zlib.decompress(idat), width * bpp, bytearray(width * bpp)
    for row in range(y + 1):
        ftype, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
    return tuple(prev[x * bpp : x * bpp + 3])


async def run_chromium(chromium: str, tmp: Path, *args: str) -> tuple[int, str, str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
    ]
    proc = await asyncio.create_subprocess_exec(
        chromium,
        *flags,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp)},
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        os.killpg(proc.pid, 9)
        await proc.wait()
        pytest.fail("chromium did not finish within 60 s")
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def test_story1_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = require_binary("chromium", "chromium")
    server = await start_http("127.0.0.1:0", Story())
    url = f"http://127.0.0.1:{server.port}/"
    try:
        shot = tmp_path / "page.png"
        rc, _, err = await run_chromium(chromium, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", url)
        assert rc == 0 and shot.exists(), err[-2000:]
        rc, dom, err = await run_chromium(chromium, tmp_path, "--dump-dom", url)
        assert rc == 0, err[-2000:]
    finally:
        await server.close()

    data = shot.read_bytes()
    assert len(data) > 30_000  # a rendered page, not a blank one
    if os.environ.get("FIRSTWATCH_SCREENSHOT"):
        shutil.copy(shot, os.environ["FIRSTWATCH_SCREENSHOT"])
    # The headline is red: the style block ran under the page's strict Content-Security-Policy.
    r, g, b = png_pixel(data, 600, 30)
    assert r > 180 and g < 110 and b < 110, (r, g, b)

    for text in (
        "CRITICAL",
        "shop-web: down for 1m on 3 of 3 members",
        "acked by maria",
        "rolled back shop 1.4.2 -&gt; 1.4.1 on web-01..03",
        "HTTP 503 from 10.0.0.2:443",
        "not acknowledged",
        "Failing (2)",
        "OK (2)",
        "agent <b>mon-01</b>",
    ):
        assert text in dom, text
    assert dom.index("3f9c2a7b1d04") < dom.index("9b1e77c0a2f3")  # the critical incident on top


def test_values_in_one_human_format_per_unit() -> None:
    snap = story_snapshot(NOW)
    check = snap["checks"][1]
    check["type"] = "http"
    check["members"][0]["values"] = {"connect": 0.0112265, "status": 200.0, "body_bytes": 1_234_567.0}
    check["members"].append(
        {
            "target": "check_app",
            "up": True,
            "values": {"perf.time": 0.25, "perf.hit": 93.5, "perf.size": 2.5e9, "perf.n": 0.123456},
            "units": {"perf.time": "s", "perf.hit": "%", "perf.size": "bytes", "perf.n": "1"},
        }
    )
    html = status_page.render(snap, now=NOW)
    assert "connect=11ms, status=200, body_bytes=1.23MB" in html
    assert "perf.time=250ms, perf.hit=93.5%, perf.size=2.5GB, perf.n=0.123" in html
    assert "0.0112265" not in html and "0.01123" not in html


async def test_the_daemon_log_and_page_use_the_same_formats(tmp_path: Path) -> None:
    plugin = tmp_path / "app.sh"
    plugin.write_text("#!/bin/sh\necho 'APP OK | latency=250ms cache=512KB hit=93.5% n=0.0112265'\n")
    plugin.chmod(0o755)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f'agent: {{state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0"}}\n'
        f'checks:\n  - {{name: app, type: command, command: ["{plugin}"], interval: 0.5s}}\n'
        f'sinks:\n  - {{type: file, path: "{tmp_path / "e.jsonl"}"}}\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        while not any(": up: " in line for line in lines):
            lines.append((await asyncio.wait_for(proc.stderr.readline(), 10)).decode())
        url = next(line.split("status endpoint on ")[1].strip() for line in lines if "status endpoint on" in line)
        page = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://{url}/", timeout=5).read().decode())
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.communicate()
    up = next(line for line in lines if ": up: " in line)
    assert f"app {plugin}: up: exit_code 0, perf.latency 250ms, perf.cache 512KB, perf.hit 93.5%, perf.n 0.0112" in up
    assert "exit_code=0" in page and "0.0112265" not in page and "perf.n=0.0112" in page


def test_quiet_checks_held_rules_runbooks_and_affected_checks_are_shown() -> None:
    snap = story_snapshot(NOW)
    incident = snap["incidents"][1]
    incident["runbook"] = "https://wiki.example.com/rb/shop-down"
    incident["affected"] = ["checkout", "search"]
    snap["incidents"][0]["runbook"] = "javascript:alert(1)"  # shown, never a link
    web = next(c for c in snap["checks"] if c["name"] == "shop-web")
    web["depends_on"] = ["db"]
    web["quiet"] = {"kind": "silence", "name": "3f2a9c01", "until": iso_time(NOW + 900), "reason": HOSTILE, "by": "sam"}
    web["members"][0]["held"] = [{"rule": "duration > 2s", "why": "depends on db"}]
    tls = next(c for c in snap["checks"] if c["name"] == "shop-tls")
    tls["quiet"] = {"kind": "maintenance", "name": "sunday-patching", "until": iso_time(NOW + 3600), "reason": ""}
    html = status_page.render(snap, now=NOW)
    assert '<a href="https://wiki.example.com/rb/shop-down" rel="noopener noreferrer">runbook</a>' in html
    assert 'href="javascript' not in html and "javascript:alert(1)" in html
    assert "also failing because of it: checkout, search" in html
    assert "silenced by sam until" in html and HOSTILE not in html
    assert "in maintenance window sunday-patching until" in html
    assert "not paged:" in html and "depends on db" in html
    text = render_text(snap)
    quiet = text.split("QUIET CHECK", 1)[1]
    assert "shop-web" in quiet and "silenced by sam until" in quiet and "(silence 3f2a9c01)" in quiet
    assert "shop-tls" in quiet and "in maintenance window sunday-patching" in quiet
    assert "not paged (depends on db): duration > 2s" in text
