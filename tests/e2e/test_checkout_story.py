"""Story 11 end to end, with the shipped daemon, a real headless Chromium and a local shop.

"Login works, checkout does not": ``checkout-api`` (a journey: login, token, cart, pay) fails at
step ``pay`` with HTTP 500 while the home page is green. The page says ``checkout-api: down
(step pay: HTTP 500 ...)``; the browser check of the same flow fails at "Pay now", and its
screenshot is linked from the report and served read-only by the status endpoint. The token the
journey saves appears nowhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.checks.test_check_browser import needs_browser
from tests.support.agent import firstwatch, start_daemon, wait_for_events

TOKEN = "tok-3f9c2a7b1d04-secret"
PAGE = """<!doctype html><title>shop</title><h1>Shop</h1>
<button onclick="pay()">Pay now</button><div id="out"></div>
<script>
async function pay() {
  const r = await fetch('/pay', {method: 'POST', headers: {Authorization: 'Bearer TOKEN'}});
  document.getElementById('out').textContent = r.ok ? 'Thank you for your order' : 'payment failed';
}
</script>""".replace("TOKEN", TOKEN)


@pytest.fixture
async def shop() -> AsyncIterator[str]:
    async def login(request: web.Request) -> web.Response:
        return web.json_response({"access_token": TOKEN})

    async def cart(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "no token"}, status=401)
        return web.json_response({"items": [{"sku": "A-1"}]})

    async def pay(request: web.Request) -> web.Response:
        return web.json_response({"error": "payment backend down"}, status=500)

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/cart", cart)
    app.router.add_post("/pay", pay)
    app.router.add_get("/", home)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def status(port: int, path: str = "/status") -> tuple[int, bytes, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.status, resp.read(), resp.headers.get("Content-Type", "")


async def test_login_works_checkout_does_not(tmp_path: Path, shop: str) -> None:
    chromium = needs_browser()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
agent: {{name: web-01, state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0",
         browser: {{executable: "{chromium}", concurrency: 1}}}}
checks:
  - name: shop-home
    type: http
    url: "{shop}/"
    interval: 0.5s
    timeout: 0.4s
  - name: checkout-api
    type: journey
    interval: 0.5s
    timeout: 0.4s
    steps:
      - {{name: login, method: POST, url: "{shop}/login", json: {{user: probe}}, save: {{token: json.access_token}}}}
      - {{name: cart, url: "{shop}/cart", headers: {{Authorization: "Bearer {{{{ token }}}}"}},
          expect: {{json: {{"items.0.sku": {{exists: true}}}}}}}}
      - {{name: pay, method: POST, url: "{shop}/pay", headers: {{Authorization: "Bearer {{{{ token }}}}"}}}}
    alerts: [{{when: down, severity: major}}]
  - name: shop-browser
    type: browser
    url: "{shop}/"
    interval: 10s
    timeout: 9s
    steps:
      - {{click: "text=Pay now"}}
      - {{expect_text: "Thank you for your order"}}
    alerts: [{{when: down, severity: major}}]
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
"""
    )
    events_file = tmp_path / "events.jsonl"
    daemon = await start_daemon(cfg)
    try:
        port = await daemon.port()
        evs = await wait_for_events(
            events_file,
            lambda e: {x["check"] for x in e if x["kind"] == "firing"} >= {"checkout-api", "shop-browser"},
            40,
        )
        firing = {e["check"]: e for e in evs if e["kind"] == "firing"}
        assert "shop-home" not in firing  # the home page is green
        assert re.fullmatch(
            r"checkout-api: down \(step pay: HTTP 500 from 127\.0\.0\.1:\d+\)", firing["checkout-api"]["summary"]
        )
        browser = firing["shop-browser"]
        assert 'step 2 expect_text "Thank you for your order"' in browser["summary"]

        # the screenshot: in the timeline, the report, and served read-only
        code, out, err = await firstwatch("report", "-c", str(cfg), browser["incident"], "--format", "json")
        assert code == 0, err
        (shot,) = json.loads(out)["artifacts"][:1]
        assert shot["link"] == f"artifacts/{shot['name']}" and Path(shot["path"]).is_file()
        code, markdown, _ = await firstwatch("report", "-c", str(cfg), browser["incident"])
        assert "## Screenshots" in markdown and shot["name"] in markdown
        got, body, kind = status(port, f"/{shot['link']}")
        assert (got, kind, body[:8]) == (200, "image/png", b"\x89PNG\r\n\x1a\n")
        page = status(port, "/")[1].decode()
        assert f'href="artifacts/{shot["name"]}"' in page

        # the saved token is never printed, logged or stored
        await asyncio.sleep(0.5)
        code, timeline, _ = await firstwatch("timeline", "-c", str(cfg), "--format", "json")
        assert code == 0
        stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("firstwatch.db*"))  # with the WAL
        for where in (
            events_file.read_text(),
            timeline,
            json.dumps(_status_doc(port)),
            daemon.log,
            stored.decode("latin-1"),
        ):
            assert TOKEN not in where
    finally:
        await daemon.stop()


def _status_doc(port: int) -> Any:
    return json.loads(status(port)[1])


async def test_a_browser_that_cannot_start_is_the_agents_problem_not_a_page(tmp_path: Path, shop: str) -> None:
    """Our own Chromium failing is not the site failing: no firing for the check, an ``agent``
    event (``probe_unavailable``) instead."""
    needs_browser()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
agent: {{name: web-01, state_dir: "{tmp_path / "state"}", listen: "", browser: {{executable: /bin/true}}}}
checks:
  - {{name: shop-browser, type: browser, url: "{shop}/", interval: 2s, timeout: 2s}}
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
"""
    )
    events_file = tmp_path / "events.jsonl"
    daemon = await start_daemon(cfg)
    try:
        evs = await wait_for_events(events_file, lambda e: any(x.get("rule") == "probe_unavailable" for x in e), 30)
        await asyncio.sleep(3)  # more runs fail the same way
        problem = next(e for e in evs if e.get("rule") == "probe_unavailable")
        assert problem["kind"] == "agent" and problem["target"].startswith("shop-browser ")
        assert "cannot probe" in problem["summary"]
        evs = json.loads("[" + ",".join(events_file.read_text().splitlines()) + "]")
        assert [e for e in evs if e["kind"] == "firing"] == []  # the site was never paged
        assert len([e for e in evs if e.get("rule") == "probe_unavailable"]) == 1  # raised once
    finally:
        await daemon.stop()
