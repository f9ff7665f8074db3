"""The browser check in a real headless Chromium against a small shop on 127.0.0.1: its values, its
steps, a failing run's screenshot, the deadline, a killed or hung browser, cookies, and the config
errors of a machine without Playwright or Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.config.load import parse_config
from agent.core.errors import ConfigError
from agent.engine.probe_runner import SharedResources, run_probe
from checks import browser_pool
from checks.base import Check, Result
from checks.browser_pool import BrowserPool, BrowserSettings
from tests.conftest import needs_browser

ROOT = Path(__file__).parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SHOP = """<!doctype html>
<html><head><title>Shop</title></head><body>
<h1>The shop</h1>
<img src="/slow.png" width="400" height="300" alt="product">
<p><input id="email" placeholder="email"> <button id="add">Add to cart</button></p>
<p class="cart-count" style="display: none"></p>
<script>
  document.getElementById("add").addEventListener("click", () => {
    setTimeout(() => {  // the cart answers a moment later, as a real one would
      const cart = document.querySelector(".cart-count");
      cart.textContent = "1 item";
      cart.style.display = "block";
    }, 200);
  });
</script>
<script>window.shopTracker.start();  // a broken third-party script: an uncaught TypeError</script>
</body></html>"""

# After its load event the page's own script never yields again (a runaway script).
BUSY = """<!doctype html><html><body><h1>Busy</h1>
<script>addEventListener("load", () => setTimeout(() => { for (;;) {} }, 0));</script>
</body></html>"""


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\xc0\x30\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@dataclass
class Shop:
    """The shop's server: what it was asked, with which cookies."""

    url: str = ""
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Cookie header)
    visitors: int = 0
    loaded: asyncio.Event = field(default_factory=asyncio.Event)  # the slow image was served


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    state = Shop()
    image = png(400, 300)

    async def index(request: web.Request) -> web.Response:
        state.seen.append(("/", request.headers.get("Cookie", "")))
        state.visitors += 1
        response = web.Response(text=SHOP, content_type="text/html")
        response.set_cookie("visitor", str(state.visitors))
        return response

    async def slow_png(request: web.Request) -> web.Response:
        state.seen.append(("/slow.png", request.headers.get("Cookie", "")))
        await asyncio.sleep(0.4)  # the largest element arrives late: lcp >= 0.4s
        state.loaded.set()
        return web.Response(body=image, content_type="image/png")

    async def down(_: web.Request) -> web.Response:
        return web.Response(status=503, text="<h1>Maintenance</h1>", content_type="text/html")

    async def busy(_: web.Request) -> web.Response:
        return web.Response(text=BUSY, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/slow.png", slow_png)
    app.router.add_get("/down", down)
    app.router.add_get("/busy", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield state
    await runner.cleanup()


@pytest.fixture
async def resources(tmp_path: Path) -> AsyncIterator[SharedResources]:
    chromium = needs_browser()
    res = SharedResources("test", str(tmp_path / "artifacts"), BrowserSettings(chromium, concurrency=2))
    async with res.browser().context():  # Chromium started: the short deadlines below are the page's
        pass
    yield res
    await res.close()


def browser_check(url: str, steps: str = "", timeout: str = "10s", name: str = "shop-browser") -> Check:
    text = f"checks:\n  - {{name: {name}, type: browser, url: {json.dumps(url)}, timeout: {timeout}"
    text += f", interval: 1m{', steps: ' + steps if steps else ''}}}\n"
    return parse_config(text, "test.yaml").checks[0].build()


async def run(check: Check, res: SharedResources) -> Result:
    return await run_probe(check, check.targets()[0], res)


def pool_of(res: SharedResources) -> BrowserPool:
    return res.browser()


async def open_contexts(pool: BrowserPool) -> tuple[int, int]:
    """(contexts Playwright knows, browser contexts Chromium itself still has)."""
    assert pool.browser is not None
    cdp = await pool.browser.new_browser_cdp_session()
    try:
        found = await cdp.send("Target.getBrowserContexts")
    finally:
        await cdp.detach()
    return len(pool.browser.contexts), len(found["browserContextIds"])


STEPS = (
    '[{click: "text=Add to cart"}, {fill: "#email", value: "probe@example.com"},'
    ' {wait_for: ".cart-count"}, {expect_text: "1 item"}]'
)


async def test_the_shop_passes_its_steps_with_the_page_values(shop: Shop, resources: SharedResources) -> None:
    result = await run(browser_check(shop.url, STEPS), resources)
    assert result.ok, result.error
    v = result.values
    assert set(v) == {
        "duration", "ttfb", "fcp", "lcp", "cls", "requests", "failed_requests", "console_errors", "transfer_bytes",
    }  # fmt: skip
    assert 0 < v["ttfb"] <= v["fcp"] <= v["lcp"] < v["duration"] < 10
    assert v["lcp"] >= 0.4  # the slow image is the largest paint
    assert v["console_errors"] == 1  # the broken tracker script; the favicon's 404 is not the page's
    assert v["requests"] == 2 and v["failed_requests"] == 0  # the page and its image
    assert v["transfer_bytes"] > len(SHOP) and v["cls"] == 0
    assert result.artifact is None and not Path(resources.artifacts_dir or "").exists()  # nothing saved


async def test_a_failing_run_names_its_step_and_saves_a_screenshot(shop: Shop, resources: SharedResources) -> None:
    missing = await run(browser_check(shop.url, '[{click: "#add"}, {expect_text: "2 items"}]', "4s"), resources)
    assert not missing.ok and missing.error_kind == "expect"
    assert re.fullmatch(r'step 2 expect_text "2 items": not on the page after [\d.]+m?s', missing.error or "")
    assert missing.values["lcp"] >= 0.4 and missing.values["duration"] < 4  # measured all the same
    artifacts = Path(resources.artifacts_dir or "")
    assert missing.artifact and re.fullmatch(r"shop-browser-\d{8}T\d{6}Z-[0-9a-f]{8}\.png", missing.artifact)
    shot = (artifacts / missing.artifact).read_bytes()
    assert shot.startswith(PNG_SIGNATURE) and len(shot) > 1000

    click = await run(browser_check(shop.url, '[{click: "text=Checkout"}]', "3s"), resources)
    assert re.fullmatch(r'step 1 click "text=Checkout": timed out after [\d.]+m?s', click.error or ""), click.error
    assert click.error_kind == "expect" and click.artifact and click.artifact != missing.artifact

    down = await run(browser_check(shop.url + "down", '[{click: "#add"}]', "3s"), resources)
    assert (down.ok, down.error_kind, down.error) == (False, "http_status", f"HTTP 503 from {shop.url}down")
    assert down.artifact and (artifacts / down.artifact).read_bytes().startswith(PNG_SIGNATURE)
    assert len(list(artifacts.iterdir())) == 3


async def test_a_refused_page_load_is_a_network_failure(resources: SharedResources) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    result = await run(browser_check(url, timeout="3s"), resources)
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.error == f"page load of {url}: net::ERR_CONNECTION_REFUSED at {url}"


async def test_a_run_past_its_timeout_is_cancelled_and_its_context_closed(
    shop: Shop, resources: SharedResources
) -> None:
    check = browser_check(shop.url + "busy", timeout="2s")
    t0 = time.monotonic()
    result = await run(check, resources)
    assert (result.ok, result.error_kind, result.error) == (False, "timeout", "no answer within 2s")
    assert time.monotonic() - t0 < 2 + 5.5  # the deadline, then at most the bounded close
    assert await open_contexts(pool_of(resources)) == (0, 0)  # no leaked context, not even in Chromium
    again = await run(browser_check(shop.url), resources)  # the shared browser carries on
    assert again.ok, again.error
    assert await open_contexts(pool_of(resources)) == (0, 0)


async def test_a_killed_browser_fails_that_run_and_is_restarted_by_the_next(
    shop: Shop, resources: SharedResources
) -> None:
    waiting = browser_check(shop.url, '[{wait_for: "#never"}]', "8s")
    task = asyncio.create_task(run(waiting, resources))
    await asyncio.wait_for(shop.loaded.wait(), 20)
    await asyncio.sleep(1.0)  # in its step now, waiting for an element that never comes
    pool = pool_of(resources)
    old = pool.pid
    assert old is not None and pool.restarts == 0
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    killed = await task
    assert time.monotonic() - t0 < 3  # at once, not when the step's wait runs out
    assert (killed.ok, killed.error_kind) == (False, "agent")
    assert "the browser crashed or was killed (it is restarted on the next run)" in (killed.error or ""), killed.error
    assert killed.artifact is None  # nothing left to take a screenshot with

    after = await run(browser_check(shop.url, STEPS), resources)
    assert after.ok, after.error
    assert pool.restarts == 1 == resources.browser_restarts()
    assert pool.pid not in (None, old)


async def test_a_hung_browser_is_killed_and_restarted(shop: Shop, resources: SharedResources) -> None:
    assert (await run(browser_check(shop.url), resources)).ok
    pool = pool_of(resources)
    hung = pool.pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    try:
        with pytest.raises(Exception, match=r"did not open a context within 1s \(hung\)"):
            async with pool.context(timeout=1.0):
                pass
        result = await run(browser_check(shop.url), resources)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    assert result.ok, result.error
    assert pool.restarts == 1 and pool.pid != hung
    assert not Path(f"/proc/{hung}/cmdline").exists() or Path(f"/proc/{hung}/stat").read_text().split()[2] == "Z"


async def test_a_browser_that_never_starts_is_tried_again_and_counted(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chromium = needs_browser()
    monkeypatch.setattr(browser_pool, "LAUNCH_TIMEOUT", 2.0)
    stuck = tmp_path / "stuck-chromium"  # starts, never answers on its pipe
    stuck.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    stuck.chmod(0o755)
    res = SharedResources("test", None, BrowserSettings(str(stuck)))
    try:
        first = await run(browser_check(shop.url, timeout="5s"), res)
        assert (first.ok, first.error_kind) == (False, "agent")
        assert (first.error or "").startswith(f"cannot start the browser {stuck}: "), first.error
        assert res.browser_restarts() == 0 and res.browser().pid is None
        res.browser_settings = res.browser().settings = BrowserSettings(chromium)  # Chromium installed meanwhile
        second = await run(browser_check(shop.url, timeout="5s"), res)
        assert second.ok, second.error
        assert res.browser_restarts() == 1
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).startswith(str(stuck))]
    finally:
        await res.close()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def test_no_cookie_is_shared_between_two_runs(shop: Shop, resources: SharedResources) -> None:
    for _ in range(2):
        assert (await run(browser_check(shop.url), resources)).ok
    assert shop.seen == [("/", ""), ("/slow.png", "visitor=1"), ("/", ""), ("/slow.png", "visitor=2")]


async def test_at_most_concurrency_pages_at_once(shop: Shop, tmp_path: Path) -> None:
    chromium = needs_browser()
    res = SharedResources("test", None, BrowserSettings(chromium, concurrency=1))
    try:
        pool = res.browser()
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                if pool.browser is not None:
                    most = max(most, len(pool.browser.contexts))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(run(browser_check(shop.url), res) for _ in range(2)))
        watcher.cancel()
        assert all(r.ok for r in results) and most == 1
    finally:
        await res.close()


# --- the config -----------------------------------------------------------------------------------

BROWSER_CONFIG = """agent:
  browser: {executable: EXECUTABLE}
checks:
  - {name: db, type: tcp, target: "127.0.0.1:5432"}
  - name: shop-browser
    type: browser
    url: https://shop.example.com/
    steps:
      - {click: "text=Add to cart"}
"""


def config_errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "shop.yaml", env={})
    return [str(issue) for issue in caught.value.issues]


def test_a_missing_browser_is_a_config_error_at_the_first_browser_check() -> None:
    errors = config_errors(BROWSER_CONFIG.replace("EXECUTABLE", "/nonexistent/chromium"))
    assert (
        "shop.yaml:5:5: checks[1]: browser checks need Chromium: agent.browser.executable '/nonexistent/chromium'"
        " is not an executable file (apt-get install -y chromium, or set agent.browser.executable to its path)"
    ) in errors


def test_a_missing_playwright_package_is_a_config_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright", None)  # find_spec() then says it is not installed
    errors = config_errors(BROWSER_CONFIG.replace("EXECUTABLE", sys.executable))
    assert errors == [
        "shop.yaml:5:5: checks[1]: browser checks need the playwright package: pip install 'firstwatch[browser]'"
    ]


def test_a_config_without_browser_checks_never_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright", None)
    text = "agent:\n  browser: {executable: /nonexistent/chromium}\nchecks:\n  - {name: db, type: tcp, target: ':1'}\n"
    cfg = parse_config(text.replace("':1'", '"127.0.0.1:1"'), "tcp.yaml", env={})
    assert [c.config.type for c in cfg.checks] == ["tcp"]


def test_bad_steps_are_config_errors_at_their_line() -> None:
    text = BROWSER_CONFIG.replace("EXECUTABLE", sys.executable) + (
        '      - {tap: "#add"}\n      - {fill: "#email"}\n      - {click: "#add", expect_text: "1 item"}\n'
    )
    errors = [e for e in config_errors(text) if "playwright" not in e]
    assert errors == [
        "shop.yaml:10:10: checks[1].steps[1].tap: unknown option (valid here: click, expect_text, fill, value,"
        " wait_for)",
        "shop.yaml:11:9: checks[1].steps[2]: fill needs a value: {fill: SELECTOR, value: TEXT}",
        "shop.yaml:12:9: checks[1].steps[3]: a step is one action of click, fill, wait_for, expect_text (this one"
        " has click and expect_text)",
    ]


def test_validate_and_run_refuse_a_browser_config_on_a_machine_without_chromium(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    text = BROWSER_CONFIG.replace("EXECUTABLE", str(tmp_path / "no-chromium"))
    config.write_text(text.replace("agent:\n", f"agent:\n  state_dir: {tmp_path / 'state'}\n  listen: ''\n", 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in ("validate", "run"):
        out = subprocess.run(
            [sys.executable, "-m", "agent", command, "-c", str(config)], capture_output=True, text=True, env=env,
            timeout=60,
        )  # fmt: skip
        assert out.returncode == 78, (command, out.stderr)
        assert f"{config}:7:5: checks[1]: browser checks need Chromium" in out.stderr, (command, out.stderr)
        assert "apt-get install -y chromium" in out.stderr


def test_loading_a_browser_config_never_imports_playwright_building_it_does(tmp_path: Path) -> None:
    needs_browser()
    config = tmp_path / "config.yaml"
    config.write_text(BROWSER_CONFIG.replace("EXECUTABLE", "/usr/bin/chromium"))
    program = (
        "import sys; from agent.config.load import load_config; cfg = load_config(sys.argv[1]);"
        " loaded = 'playwright' in sys.modules; [s.build() for s in cfg.checks];"
        " print(loaded, 'playwright' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", program, str(config)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.stdout.split() == ["False", "True"]


# --- the restarts metric --------------------------------------------------------------------------


def _runtime(tmp_path: Path, text: str, telemetry: Any) -> Any:
    from agent.engine.runtime import Runtime
    from agent.incidents.store import Store
    from agent.incidents.writer import StoreWriter

    cfg = parse_config(text, "m.yaml", env={})
    store = Store(str(tmp_path / "state"))
    return Runtime(cfg, store, StoreWriter(store), telemetry=telemetry)


async def test_browser_restarts_is_exported_only_with_browser_checks(tmp_path: Path) -> None:
    chromium = needs_browser()
    from agent import __version__
    from agent.telemetry.config import TelemetryConfig
    from agent.telemetry.metrics import Telemetry

    telemetry = Telemetry(TelemetryConfig(prometheus=True), "a", {}, __version__)
    plain = _runtime(tmp_path, "checks:\n  - {name: db, type: tcp, target: '127.0.0.1:1'}\n", telemetry)
    assert b"firstwatch_browser_restarts" not in telemetry.prometheus_text()[0]

    browser = BROWSER_CONFIG.replace("EXECUTABLE", chromium)
    first = _runtime(tmp_path, browser, telemetry)
    assert first.resources.browser_settings == BrowserSettings(chromium, 2)
    text = telemetry.prometheus_text()[0].decode()
    assert "# TYPE firstwatch_browser_restarts_total counter\nfirstwatch_browser_restarts_total" in text
    assert 'firstwatch_browser_restarts_total{firstwatch_agent_name="a"} 0.0' in text
    first.resources.browser().restarts = 2  # as if Chromium had been killed twice
    assert b'firstwatch_browser_restarts_total{firstwatch_agent_name="a"} 2.0' in telemetry.prometheus_text()[0]

    second = _runtime(tmp_path, browser, telemetry)  # a reload: the total never goes back
    second.resources.browser().restarts = 1
    assert b'firstwatch_browser_restarts_total{firstwatch_agent_name="a"} 3.0' in telemetry.prometheus_text()[0]
    _runtime(tmp_path, "checks:\n  - {name: db, type: tcp, target: '127.0.0.1:1'}\n", telemetry)
    assert b'firstwatch_browser_restarts_total{firstwatch_agent_name="a"} 3.0' in telemetry.prometheus_text()[0]
    for rt in (plain, first, second):
        await rt.resources.close()
        rt.store.close()
