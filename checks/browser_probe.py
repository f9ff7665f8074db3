"""One run of a browser check: load the page in a fresh context, read its timings, run the steps.

The options and values are documented in :mod:`checks.browser`; the shared Chromium and its
contexts are :mod:`checks.browser_pool`'s. This module imports Playwright, so it is imported when
a browser check is built, never when a config loads.

The page-load values come from the browser's own performance APIs, read with ``page.evaluate``:
Navigation Timing (``ttfb``), Paint Timing (``fcp``), and PerformanceObservers installed before
any script of the page runs (``largest-contentful-paint``, ``layout-shift``, buffered), plus
Resource Timing for ``transfer_bytes``; the counts come from Playwright's request, response,
console and page-error events. A failing run takes a full-page screenshot, saved under the
artifacts directory with a unique name (check name, UTC time, random suffix).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from agent.core.safe_text import printable
from agent.core.units import format_duration
from checks.base import Observation, ProbeContext
from checks.browser import BrowserConfig, Step
from checks.browser_pool import BrowserPool, BrowserUnavailable, first_line

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request, Response

log = logging.getLogger("firstwatch.browser")

# Runs in every document before its own scripts: observers that keep the page-load vitals.
VITALS_INIT = """(() => {
  const fw = {lcp: null, cls: 0, observers: []};
  Object.defineProperty(window, '__firstwatch', {value: fw});
  const watch = (type, take) => {
    try {
      const o = new PerformanceObserver(list => list.getEntries().forEach(take));
      o.observe({type, buffered: true});
      fw.observers.push([o, take]);
    } catch (e) {}
  };
  watch('largest-contentful-paint', e => { fw.lcp = e.startTime; });
  watch('layout-shift', e => { if (!e.hadRecentInput) fw.cls += e.value; });
})();"""
# After load: the loaded images decoded, then two frames, so the paint of the last one has
# reported its LCP candidate.
SETTLE = """() => Promise.all([...document.images].filter(i => i.complete).map(i => i.decode().catch(() => null)))
  .then(() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 0)))))"""
VITALS_READ = """() => {
  const fw = window.__firstwatch;
  if (fw) fw.observers.forEach(([o, take]) => o.takeRecords().forEach(take));
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  let bytes = nav ? nav.transferSize : 0;
  performance.getEntriesByType('resource').forEach(r => { bytes += r.transferSize || 0; });
  return {
    ttfb: nav && nav.responseStart > 0 ? nav.responseStart - nav.startTime : null,
    fcp: fcp ? fcp.startTime : null,
    lcp: fw ? fw.lcp : null,
    cls: fw ? fw.cls : null,
    transfer_bytes: bytes,
  };
}"""
HAS_TEXT = "text => !!document.body && document.body.innerText.includes(text)"
# Chromium's network errors (net::ERR_...) -> firstwatch error kinds
_NET_KINDS = (
    ("ERR_NAME_NOT_RESOLVED", "dns"),
    ("ERR_NAME_RESOLUTION_FAILED", "dns"),
    ("ERR_CONNECTION_REFUSED", "refused"),
    ("ERR_CERT_", "tls"),
    ("ERR_SSL_", "tls"),
    ("ERR_BAD_SSL_", "tls"),
    ("ERR_CONNECTION_RESET", "reset"),
    ("ERR_CONNECTION_CLOSED", "reset"),
    ("ERR_EMPTY_RESPONSE", "reset"),
    ("ERR_TIMED_OUT", "timeout"),
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_GONE = "the browser crashed or was killed (it is restarted on the next run)"


@dataclass
class Counts:
    """What the page's events counted during one run."""

    requests: int = 0
    failed_requests: int = 0
    console_errors: int = 0

    def watch(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _request(self, _: Request) -> None:
        self.requests += 1

    def _failed(self, _: Request) -> None:
        self.failed_requests += 1

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed_requests += 1

    def _console(self, message: ConsoleMessage) -> None:
        # the favicon is the browser's own request (no request event; fetched once per browser):
        # its 404 would make the count flip from run to run
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.console_errors += 1

    def _page_error(self, _: object) -> None:
        self.console_errors += 1


class Budget:
    """The run's time: what an action may wait is what the check's timeout leaves, less a
    reserve (a quarter of it, at most 3 s) for the screenshot and closing the context."""

    def __init__(self, timeout: float) -> None:
        self.reserve = min(3.0, timeout / 4)
        self.deadline = time.monotonic() + timeout - self.reserve

    def left(self) -> float:
        return max(0.05, self.deadline - time.monotonic())


@dataclass
class Failure:
    kind: str
    error: str


class BrowserProbe:
    """The probe of one browser check (built with it)."""

    def __init__(self, config: BrowserConfig) -> None:
        self.config = config

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        pool = ctx.browser()
        assert isinstance(pool, BrowserPool)
        budget = Budget(self.config.timeout)
        try:
            async with pool.context() as context:
                return await self._run(context, target, budget, pool, ctx.artifacts_dir)
        except BrowserUnavailable as exc:
            return Observation(ok=False, error_kind="agent", error=str(exc))

    async def _run(
        self, context: BrowserContext, target: str, budget: Budget, pool: BrowserPool, artifacts: str | None
    ) -> Observation:
        counts = Counts()
        values: dict[str, float] = {}
        try:
            await context.add_init_script(script=VITALS_INIT)
            context.set_default_timeout(budget.left() * 1000)
            page = await context.new_page()
        except PlaywrightError as exc:
            gone = not pool.alive()
            return Observation(ok=False, error_kind="agent", error=_GONE if gone else f"new page: {first_line(exc)}")
        counts.watch(page)
        t0 = time.perf_counter()
        failure = await self._load(page, target, budget, pool, values)
        if failure is None:
            for i, step in enumerate(self.config.steps, 1):
                failure = await self._step(page, i, step, budget, pool)
                if failure is not None:
                    break
        values["duration"] = time.perf_counter() - t0
        values.update(requests=counts.requests, failed_requests=counts.failed_requests)
        values["console_errors"] = counts.console_errors
        if failure is None:
            return Observation(ok=True, values=values)
        artifact = await self._screenshot(page, budget, pool, artifacts) if artifacts else None
        return Observation(ok=False, values=values, error_kind=failure.kind, error=failure.error, artifact=artifact)

    async def _load(
        self, page: Page, target: str, budget: Budget, pool: BrowserPool, values: dict[str, float]
    ) -> Failure | None:
        """Navigate to ``target`` until its ``load`` event; read the page-load values."""
        wait = budget.left()
        try:
            response = await page.goto(target, wait_until="load", timeout=wait * 1000)
        except PlaywrightTimeout:
            return Failure("timeout", f"page load of {target}: timed out after {format_duration(wait)}")
        except PlaywrightError as exc:
            if not pool.alive():
                return Failure("agent", f"page load of {target}: {_GONE}")
            text = first_line(exc)
            kind = next((k for code, k in _NET_KINDS if code in text), "connection")
            return Failure(kind, f"page load of {target}: {printable(text)}")
        try:
            await page.evaluate(SETTLE)
            vitals: dict[str, Any] = await page.evaluate(VITALS_READ)
        except PlaywrightError as exc:  # the page navigated away meanwhile: no vitals this run
            log.debug("browser: cannot read the page-load values of %s: %s", target, first_line(exc))
            vitals = {}
        for name in ("ttfb", "fcp", "lcp"):
            if isinstance(ms := vitals.get(name), int | float):
                values[name] = ms / 1000
        for name in ("cls", "transfer_bytes"):
            if isinstance(number := vitals.get(name), int | float):
                values[name] = float(number)
        if response is not None and response.status >= 400:
            return Failure("http_status", f"HTTP {response.status} from {response.url}")
        return None

    async def _step(self, page: Page, i: int, step: Step, budget: Budget, pool: BrowserPool) -> Failure | None:
        wait = budget.left()
        ms = wait * 1000
        name = f'step {i} {step.action} "{printable(step.argument)[:100]}"'
        try:
            if step.click is not None:
                await page.click(step.click, timeout=ms)
            elif step.fill is not None:
                await page.fill(step.fill, step.value or "", timeout=ms)
            elif step.wait_for is not None:
                await page.wait_for_selector(step.wait_for, state="visible", timeout=ms)
            else:
                await page.wait_for_function(HAS_TEXT, arg=step.expect_text, timeout=ms, polling=100)
        except PlaywrightTimeout:
            what = "not on the page" if step.expect_text is not None else "timed out"
            return Failure("expect", f"{name}: {what} after {format_duration(wait)}")
        except PlaywrightError as exc:
            if not pool.alive():
                return Failure("agent", f"{name}: {_GONE}")
            return Failure("expect", f"{name}: {printable(first_line(exc))}")
        return None

    async def _screenshot(self, page: Page, budget: Budget, pool: BrowserPool, directory: str) -> str | None:
        """A full-page PNG of the failing page under ``directory``; its file name, or None."""
        if not pool.alive():
            return None
        try:
            data = await page.screenshot(full_page=True, type="png", timeout=max(budget.reserve, 0.5) * 1000)
            return await asyncio.to_thread(save_artifact, directory, self.config.name, data)
        except (PlaywrightError, OSError) as exc:
            log.warning("check %s: cannot save a screenshot: %s", self.config.name, first_line(exc))
            return None


def save_artifact(directory: str, check: str, data: bytes, suffix: str = ".png") -> str:
    """Write ``data`` to a new file in ``directory`` named for ``check``, the UTC time and a random
    part (never overwriting, never following a link); returns the file name."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{_SAFE_NAME.sub('_', check).strip('._')[:64] or 'check'}-{stamp}-{secrets.token_hex(4)}{suffix}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(os.path.join(directory, name), flags, 0o640)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name
