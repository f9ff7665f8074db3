"""The status page with history, SLOs and severity bands, in a real headless Chromium (Playwright)
at phone (390 x 844) and desktop (1280 x 800) widths, in light and dark mode, served by the real
endpoint under its real Content-Security-Policy: what a reader at 2 AM relies on. The screenshots
are saved in pytest's tmp_path (their paths printed: ``pytest -s`` to see them)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.web.api import start_http
from tests.conftest import needs_browser
from tests.web.test_status_page_history import history_snapshot

# what a reader must be able to read: the headline, the SLO overspent, an uptime, the latency now, the bands
KEY_TEXT = ("CRITICAL", "overspent by 12.2%", "99.95%", "newest 950ms", "minor 5m → critical 5m")
VIEWS = [(390, 844, "light"), (390, 844, "dark"), (1280, 800, "light"), (1280, 800, "dark")]

# everything measured in the page at once: overflow, each picture's box, its container's, the fills
MEASURE = """() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const fill = (sel) => { const el = document.querySelector(sel); return el ? getComputedStyle(el).fill : null; };
  return {
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
    background: getComputedStyle(document.body).backgroundColor,
    text: getComputedStyle(document.body).color,
    pictures: [...document.querySelectorAll('svg[role="img"]')].map((svg) => ({
      cls: svg.getAttribute("class"), box: box(svg), parent: box(svg.closest("article")),
    })),
    fills: {up: fill("rect.d-up"), blips: fill("rect.d-blips"), none: fill("rect.d-none"),
            critical: fill("rect.d-critical"), minor: fill("rect.b-minor")},
    stroke: getComputedStyle(document.querySelector("svg.spark path.line")).stroke,
  };
}"""


class Source:
    async def snapshot(self) -> dict[str, Any]:
        return history_snapshot(time.time())

    def healthy(self) -> tuple[bool, str]:
        return True, ""

    def metrics(self) -> tuple[bytes, str] | None:
        return None


def rgb(css: str) -> tuple[int, ...]:
    """``rgb(17, 20, 24)`` -> (17, 20, 24)."""
    assert css.startswith("rgb"), css
    return tuple(int(float(x)) for x in css[css.index("(") + 1 : -1].split(",")[:3])


def luminance(css: str) -> float:
    r, g, b = rgb(css)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


async def test_the_page_at_phone_and_desktop_width_in_light_and_dark(tmp_path: Path) -> None:
    chromium = needs_browser()
    from playwright.async_api import async_playwright

    server = await start_http("127.0.0.1:0", Source())
    url = f"http://127.0.0.1:{server.port}/"
    seen: dict[tuple[int, int, str], dict[str, Any]] = {}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"] if os.geteuid() == 0 else [], headless=True
            )
            try:
                for width, height, scheme in VIEWS:
                    phone = width < 500
                    context = await browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme=scheme,  # type: ignore[arg-type]
                        is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1,
                    )  # fmt: skip
                    page = await context.new_page()
                    errors: list[str] = []
                    page.on("console", lambda m, e=errors: e.append(m.text) if m.type in ("error", "warning") else None)
                    page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
                    response = await page.goto(url)
                    assert response is not None and response.ok
                    measured: dict[str, Any] = await page.evaluate(MEASURE)
                    visible = {text: await page.get_by_text(text).first.is_visible() for text in KEY_TEXT}
                    shot = tmp_path / f"status-{width}x{height}-{scheme}.png"
                    await page.screenshot(path=str(shot), full_page=True)
                    print(f"screenshot: {shot}")
                    seen[(width, height, scheme)] = {**measured, "errors": errors, "visible": visible}
                    await context.close()
            finally:
                await browser.close()
    finally:
        await server.close()

    for (width, _, scheme), m in seen.items():
        where = f"{width}px {scheme}"
        assert m["errors"] == [], f"{where}: console errors (a CSP violation?): {m['errors']}"
        assert m["innerWidth"] == width and m["scrollWidth"] <= m["innerWidth"], f"{where}: scrolls sideways: {m}"
        assert all(m["visible"].values()), f"{where}: not visible: {m['visible']}"
        classes = sorted(p["cls"] for p in m["pictures"])
        assert classes == ["bands", "days", "days", "spark"], f"{where}: {classes}"  # shop-web's and api's days
        for p in m["pictures"]:
            left, _, w, h = p["box"]
            p_left, _, p_w, _ = p["parent"]
            assert w > 0 and h >= 12, f"{where}: {p['cls']} is {w}x{h}"
            assert left >= p_left and left + w <= p_left + p_w + 0.5, f"{where}: {p['cls']} sticks out of its card"
            if p["cls"] in ("days", "spark"):  # the whole card's width on a phone, half of it side by side
                share = 0.85 if width < 500 else 0.4
                assert w >= share * p_w, f"{where}: {p['cls']} is only {w}px of its card's {p_w}px"
        # the style block applied (the CSP let it): every state has its own colour, none left black
        fills = m["fills"]
        assert len(set(fills.values())) == len(fills) and "rgb(0, 0, 0)" not in fills.values(), f"{where}: {fills}"
        r, g, b = rgb(fills["up"])
        assert g > r and g > b, f"{where}: an up day is not green: {fills['up']}"
        r, g, b = rgb(fills["critical"])
        assert r > g and r > b, f"{where}: a critical day is not red: {fills['critical']}"
        assert m["stroke"] not in ("none", "rgb(0, 0, 0)"), f"{where}: the sparkline has no colour"
    for width, height, _ in VIEWS[::2]:
        light, dark = seen[(width, height, "light")], seen[(width, height, "dark")]
        assert luminance(light["background"]) > 200 and luminance(dark["background"]) < 50, (light, dark)
        assert luminance(light["text"]) < 60 and luminance(dark["text"]) > 200, (light, dark)
