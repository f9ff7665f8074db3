"""``type: browser``: load a page in a real headless Chromium, run a few steps, measure what a user sees.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    url      the http:// or https:// page to load (until its ``load`` event); ``targets:`` is the
             list form
    steps    optional actions run in order once the page has loaded, each a mapping with one action:
               {click: SELECTOR}               click the first element matching SELECTOR
               {fill: SELECTOR, value: TEXT}   type TEXT into an input (never shown in errors)
               {wait_for: SELECTOR}            wait until an element matching SELECTOR is visible
               {expect_text: TEXT}             wait until TEXT is in the page's visible text
                                               (case-sensitive)
             SELECTOR is a Playwright selector: CSS (``#email``, ``.cart-count``) or
             ``text=Add to cart``. Each step waits as long as the check's ``timeout`` leaves,
             less a reserve (a quarter of it, at most 3s) to take the screenshot

The agent's ``agent.browser`` keys: ``executable`` (the Chromium to run; default the first of
chromium, chromium-browser, google-chrome on PATH; nothing is ever downloaded) and
``concurrency`` (pages at once, default 2). One Chromium is shared by every browser check, each
run in a fresh browser context (no cookie, cache or storage kept between runs). Browser checks
need ``pip install 'firstwatch[browser]'`` (Playwright) and ``apt-get install -y chromium``; a
config with a browser check fails validation, at that check, on a machine without them.

Values (page-load values are read when the ``load`` event has fired, before the steps; the
counts cover the whole run):

    duration         s      the page load and every step
    ttfb             s      time to first byte of the main document (Navigation Timing
                            responseStart)
    fcp              s      first contentful paint
    lcp              s      largest contentful paint (its latest candidate at load); absent if none
    cls              1      cumulative layout shift at load (shifts after recent input excluded)
    requests         1      requests the page made (the document, its resources, scripts' fetches)
    failed_requests  1      requests that failed (network error) or got an HTTP status >= 400
    console_errors   1      console messages of type error, and uncaught script exceptions
    transfer_bytes   bytes  bytes over the network for the document and its resources at load
                            (Resource Timing transferSize; cross-origin resources without
                            Timing-Allow-Origin count 0)

Failures: ``http_status`` (the main document answered 4xx or 5xx: ``HTTP 503 from
https://shop.example.com/``), ``refused``, ``dns``, ``tls``, ``reset``, ``connection`` (the
navigation failed: ``net::ERR_...``), ``timeout`` (the page did not load in time), ``expect`` (a
step failed: ``step 2 click "text=Add to cart": timed out after 4.5s``, ``step 4 expect_text "1
item": not on the page after 4.5s``), ``agent`` (the browser crashed, was killed or hangs: no
verdict on the site, a ``probe_unavailable`` agent problem instead; it is restarted on the next
run and counted in ``firstwatch.browser.restarts``). A failing run saves a full-page PNG
screenshot under the agent's artifacts directory and names it in the result (``artifact``).

Example::

    - name: shop-browser
      type: browser
      url: https://shop.example.com/
      interval: 5m
      timeout: 60s
      steps:
        - {click: "text=Add to cart"}
        - {fill: "#email", value: "probe@example.com"}
        - {wait_for: ".cart-count"}
        - {expect_text: "1 item"}
      alerts:
        - {when: down, for: 10m, severity: major}
        - {when: lcp > 2.5s, for: 30m, severity: minor}
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.http import HttpUrl

ACTIONS = ("click", "fill", "wait_for", "expect_text")


class Step(BaseModel):
    """One action of ``steps:``; exactly one of the action keys is set (``value`` goes with ``fill``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    click: str | None = None
    fill: str | None = None
    value: str | None = None
    wait_for: str | None = None
    expect_text: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(actions) != 1:
            found = f"this one has {' and '.join(actions)}" if actions else "this one has none"
            raise ValueError(f"a step is one action of {', '.join(ACTIONS)} ({found})")
        if self.fill is not None and self.value is None:
            raise ValueError("fill needs a value: {fill: SELECTOR, value: TEXT}")
        if self.value is not None and self.fill is None:
            raise ValueError("value goes with fill: {fill: SELECTOR, value: TEXT}")
        for action in actions:
            if not str(getattr(self, action)).strip():
                raise ValueError(f"{action} needs a non-empty selector or text")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    @property
    def argument(self) -> str:
        """The selector (or, for expect_text, the text) the step acts on."""
        return str(getattr(self, self.action))


class BrowserConfig(CheckConfig):
    url: HttpUrl | None = None
    targets: list[HttpUrl] | None = None
    steps: list[Step] = []


class BrowserCheck(BaseCheck):
    TYPE: ClassVar[str] = "browser"
    TARGET_KEY: ClassVar[str | None] = "url"
    Config: ClassVar[type[CheckConfig]] = BrowserConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "the page load and every step"),
        ValueSpec("ttfb", "s", "time to first byte of the main document"),
        ValueSpec("fcp", "s", "first contentful paint"),
        ValueSpec("lcp", "s", "largest contentful paint at load"),
        ValueSpec("cls", "1", "cumulative layout shift at load"),
        ValueSpec("requests", "1", "requests the page made"),
        ValueSpec("failed_requests", "1", "requests that failed or got an HTTP status >= 400"),
        ValueSpec("console_errors", "1", "console errors and uncaught script exceptions"),
        ValueSpec("transfer_bytes", "bytes", "bytes transferred for the document and its resources at load"),
    )

    def __init__(self, config: CheckConfig) -> None:
        assert isinstance(config, BrowserConfig)
        super().__init__(config)
        self._cfg = config
        # Playwright is imported here, when the check is built, not when a config loads
        from checks.browser_probe import BrowserProbe

        self._impl = BrowserProbe(config)

    def __repr__(self) -> str:  # fill values may be secrets
        return f"<BrowserCheck {self._cfg.name!r}>"

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        return await self._impl.probe(target, ctx)
