"""The status page's history, SLO and severity-band pictures as HTML: the numbers in words, the
inline SVG well-formed and classed, everything escaped, nothing shown for an older agent's
document without history. (How they look in a real browser: test_status_page_screens.py.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from agent.core.events import iso_time
from agent.core.svg import XMLNS
from agent.web import page as status_page
from agent.web.view import fmt_percent
from tests.web.test_status_page import HOSTILE, NOW, story_snapshot

NS = {"s": XMLNS}


def day_states() -> list[str]:
    """90 days, oldest first: two before the agent ran, mostly up, some blips, a minor and a major
    day, and today's critical incident."""
    states = ["none", "none"] + ["up"] * 87 + ["critical"]
    for i in (12, 13, 40, 71):
        states[i] = "blips"
    states[30], states[55] = "minor", "major"
    return states


def history_snapshot(now: float) -> dict[str, Any]:
    """Story 1 with history: shop-web has 90 days of mixed states, a 24 h latency series with a
    gap and a spike, and an overspent SLO; its open critical incident went minor -> critical."""
    snap = story_snapshot(now)
    today = datetime.fromtimestamp(now, UTC).date().toordinal()
    days = [
        {
            "day": datetime.fromordinal(today - 89 + i).strftime("%Y-%m-%d"),
            "runs": 0 if s == "none" else 2880,
            "ok": 0 if s == "none" else 2880 if s == "up" else 2851,
            "state": s,
        }
        for i, s in enumerate(day_states())
    ]
    start = int(now // 900) * 900 - 95 * 900
    p95: list[float | None] = [0.040 + (i % 7) / 1000 for i in range(96)]
    p95[60:63] = [None, None, None]  # the agent was stopped for 45 minutes
    p95[-2:] = [1.21, 0.95]  # the incident
    web = next(c for c in snap["checks"] if c["name"] == "shop-web")
    web["history"] = {
        "uptime": {"24h": 0.9862, "7d": 0.99951, "30d": 0.998877},
        "days": days,
        "latency": [
            {"start": iso_time(start + i * 900), "width_s": 900, "p95_s": v, "max_s": v and v * 1.5}
            for i, v in enumerate(p95)
        ],
    }
    web["slo"] = [
        {
            "check": "shop-web", "target": "https://10.0.0.1:443/", "objective": 0.999, "window_s": 30 * 86400.0,
            "latency_s": 0.8, "runs": 86400, "good": 86303, "sli": 86303 / 86400,
            "budget_remaining": 1 - (1 - 86303 / 86400) / 0.001, "burn_rates": {"5m": 1000.0, "1h": 14.95},
            "firing": [{"rule": "burn > 14.4x over 1h and 5m", "severity": "critical"}],
        }
    ]  # fmt: skip
    api = next(c for c in snap["checks"] if c["name"] == "api")
    api["history"] = {"uptime": {"24h": 1.0, "7d": 1.0, "30d": None}, "days": days[-3:], "latency": []}
    api["slo"] = [
        {
            "check": "api", "target": "10.0.1.1:443", "objective": 0.995, "window_s": 7 * 86400.0, "latency_s": None,
            "runs": 20160, "good": 20150, "sli": 20150 / 20160, "budget_remaining": 1 - (10 / 20160) / 0.005,
            "burn_rates": {"5m": 0.0, "1h": None}, "firing": [],
        }
    ]  # fmt: skip
    snap["slos"] = web["slo"] + api["slo"]
    critical = next(i for i in snap["incidents"] if i["severity"] == "critical")
    critical["bands"] = [
        {"start": iso_time(now - 600), "end": iso_time(now - 300), "severity": "minor"},
        {"start": iso_time(now - 300), "end": None, "severity": "critical"},
    ]
    return snap


def svgs(html: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML on its own (so each is well-formed)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, re.S)]


def test_uptime_days_latency_and_the_slo_are_shown_in_numbers_and_pictures() -> None:
    html = status_page.render(history_snapshot(NOW), now=NOW)
    web = html[html.index("shop-web <small>") : html.index("shop-tls <small>")]
    uptime = re.sub(r"<[^>]+>", "", re.search(r'<div class="uptime">.*?</div>', web, re.S).group())  # type: ignore[union-attr]
    assert uptime == "uptime 24 h 98.6% 7 d 99.95% 30 d 99.88%"
    pictures = {p.get("class"): p for p in svgs(web)}
    days = pictures["days"]
    assert [r.get("class") for r in days.findall("s:rect", NS)] == [f"d-{s}" for s in day_states()]
    assert days.get("aria-label") == (
        "last 90 days: 90 days: 81 all runs ok, 4 with failed runs, 2 without runs, 1 with a minor incident,"
        " 1 with a major incident, 1 with a critical incident"
    )
    assert "2026-11-24: 2851 of 2880 runs ok, with a critical incident" in web  # the newest day's hover title
    assert "90 days ago" in web and "81 all runs ok" in web
    line = pictures["spark"]
    assert len((line.find("s:path", NS).get("d") or "").split("M")) - 1 == 2  # type: ignore[union-attr]
    assert line.get("aria-label", "").endswith("highest 1.21s, newest 950ms; no runs in 3 of 96")
    assert "newest <b>950ms</b> · peak 1.21s" in web
    slo = re.search(r'<div class="slo s-over">.*?</div></div>', web, re.S).group()  # type: ignore[union-attr]
    assert "<b>SLO 99.9%</b> over 30d" in slo and "https://10.0.0.1:443/" in slo
    assert "SLI <b>99.88%</b>, 86,303 of 86,400 runs good (ok and within 800ms)" in slo
    assert "error budget: <b>overspent by 12.2%</b>" in slo
    assert "burn rate: 5m 1000x, 1h 14.9x" in slo and "burn &gt; 14.4x over 1h and 5m" in slo
    api = html[html.index("api <small>") :]
    assert "30 d no data" in re.sub(r"<[^>]+>", "", api) and "(history since 2026-11-22)" in api
    assert "error budget: <b>90% left</b>" in api
    assert "burn rate: 5m 0x, 1h no runs" in api


def test_an_open_incident_shows_its_severity_over_time() -> None:
    html = status_page.render(history_snapshot(NOW), now=NOW)
    incident = html[html.index("shop-web: down for 1m on 3 of 3") :]
    incident = incident[: incident.index("</article>")]
    assert "severity: minor 5m → critical 5m (now)" in incident
    (strip,) = svgs(incident)
    rects = strip.findall("s:rect", NS)
    assert [(r.get("class"), r.get("x"), r.get("width")) for r in rects] == [
        ("b-minor", "0", "500"),
        ("b-critical", "500", "500"),
    ]
    assert strip.get("aria-label") == "severity over time: minor for 5m, then critical for 5m"


def test_an_older_agents_document_shows_no_history_and_odd_values_no_data() -> None:
    html = status_page.render(story_snapshot(NOW), now=NOW)
    assert "<svg" not in html and 'class="hist"' not in html
    snap = history_snapshot(NOW)
    web = next(c for c in snap["checks"] if c["name"] == "shop-web")
    web["history"] = {"uptime": {"24h": "high", "7d": None}, "days": [{"state": HOSTILE}, "x"], "latency": [{}]}
    web["slo"] = [{"target": HOSTILE, "objective": HOSTILE, "budget_remaining": None, "burn_rates": {HOSTILE: 2}}]
    snap["incidents"][1]["bands"] = [{"start": HOSTILE, "severity": HOSTILE}, {"start": iso_time(NOW), "end": 3}]
    html = status_page.render(snap, now=NOW)
    assert "<script" not in html
    assert "uptime 24 h no data 7 d no data 30 d no data" in re.sub(r"<[^>]+>", "", html)
    assert "p95 latency, last 24 hours: no data" in html and "error budget: <b>no data</b>" in html
    assert all(svgs(html))  # still well-formed


def test_percent_rounds_down_so_a_near_miss_never_reads_100() -> None:
    shown = [fmt_percent(v) for v in (1.0, 0.99999, 0.9995, 0.973, 0.0, 1.5, None)]
    assert shown == ["100%", "99.99%", "99.95%", "97.3%", "0%", "150%", "no data"]
