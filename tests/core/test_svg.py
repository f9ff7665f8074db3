"""The SVG helper (agent.core.svg): well-formed XML, the geometry the pictures promise, labels in words."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from agent.core import svg

NS = {"s": svg.XMLNS}


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{{{svg.XMLNS}}}svg"
    assert root.get("role") == "img"
    title = root.find("s:title", NS)
    assert title is not None and title.text == root.get("aria-label")
    return root


def test_ninety_days_are_ninety_rects_classed_by_state_oldest_left() -> None:
    states = ["up"] * 80 + ["blips"] * 5 + ["none"] * 2 + ["minor", "critical", "up"]
    titles = [f"day {i}" for i in range(90)]
    root = parse(svg.day_bar(states, "last 90 days", titles=titles, names={"none": "without runs"}))
    rects = root.findall("s:rect", NS)
    assert len(rects) == 90
    assert [r.get("class") for r in rects] == [f"d-{s}" for s in states]
    xs = [float(r.get("x") or "nan") for r in rects]
    assert xs == sorted(xs) and xs[0] == 0 and xs[-1] == 89 * svg.DAY_W
    assert all(float(r.get("width") or 0) == svg.DAY_W - 1 for r in rects)  # a gap between days
    assert rects[88].findtext("s:title", namespaces=NS) == "day 88"
    assert root.get("preserveAspectRatio") == "none" and root.get("viewBox") == f"0 0 {90 * svg.DAY_W} {svg.DAY_H}"
    assert root.get("aria-label") == ("last 90 days: 90 days: 81 up, 5 blips, 2 without runs, 1 minor, 1 critical")


def test_a_short_history_is_right_aligned_the_missing_days_stay_empty() -> None:
    root = parse(svg.day_bar(["up", "major", "up"], "last 90 days"))
    rects = root.findall("s:rect", NS)
    assert [float(r.get("x") or "nan") for r in rects] == [87 * svg.DAY_W, 88 * svg.DAY_W, 89 * svg.DAY_W]
    assert root.get("aria-label") == "last 90 days: 3 days: 2 up, 1 major"
    assert parse(svg.day_bar([], "last 90 days")).get("aria-label") == "last 90 days: no days"


def test_a_missing_latency_point_breaks_the_line() -> None:
    values: list[float | None] = [0.1, 0.2, None, None, 0.4, 0.3, None, 0.05]
    root = parse(svg.sparkline(values, "p95 latency, last 24 hours"))
    line, last = root.findall("s:path", NS)
    d = line.get("d") or ""
    runs = d.split("M")[1:]
    assert len(runs) == 3  # [0.1, 0.2], [0.4, 0.3], [0.05]
    assert [len(re.findall(r"-?[\d.]+ -?[\d.]+", r)) for r in runs] == [2, 2, 1]
    assert runs[2].strip().endswith("h0")  # a lone point is a dot
    ys = [float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+)", d)]
    assert min(ys) == svg.SPARK_PAD  # the highest value (0.4) at the top
    assert ys[1] < ys[0]  # 0.2 above 0.1
    xs = [float(x) for x in re.findall(r"[ML]([\d.]+) ", d)]
    assert xs[0] == 0 and xs[-1] == svg.SPARK_W  # 8 points spread over the whole width
    assert last.get("class") == "last" and (last.get("d") or "").startswith(f"M{svg.SPARK_W} ")
    assert root.get("aria-label") == (
        "p95 latency, last 24 hours: lowest 50ms, highest 400ms, newest 50ms; no runs in 3 of 8"
    )


def test_a_sparkline_without_values_says_no_data() -> None:
    root = parse(svg.sparkline([None, None], "p95 latency"))
    assert root.findall("s:path", NS) == [] and root.get("aria-label") == "p95 latency: no data"
    one = parse(svg.sparkline([0.0], "p95"))  # a single zero: a dot, not a division by zero
    assert (one.findall("s:path", NS)[0].get("d") or "").endswith("h0")


def test_bands_are_scaled_to_the_span_and_clipped() -> None:
    spans = [svg.Span(900, 1300, "minor"), svg.Span(1300, 2000, "critical"), svg.Span(2500, 2600, "major")]
    root = parse(svg.band_strip(spans, 1000, 2000, "severity"))
    rects = root.findall("s:rect", NS)
    assert [r.get("class") for r in rects] == ["b-minor", "b-critical"]  # the one after the end is left out
    assert [(float(r.get("x") or 0), float(r.get("width") or 0)) for r in rects] == [(0, 300), (300, 700)]
    assert root.get("aria-label") == "severity: minor for 5m, then critical for 11m40s"


def test_hostile_text_is_escaped_and_stays_well_formed() -> None:
    hostile = '<script>alert("x")</script>\x1b\x00&'
    for text in (
        svg.day_bar(["up", hostile], hostile, titles=[hostile, hostile]),
        svg.sparkline([1.0, None], hostile),
        svg.band_strip([svg.Span(0, 1, hostile)], 0, 1, hostile),
        svg.svg(10, 10, hostile, svg.text(1, 1, hostile) + svg.rect(0, 0, 1, 1, fill=hostile)),
    ):
        root = parse(text)  # parses: escaped, and no character XML forbids
        assert "<script" not in text
        assert hostile.replace("\x1b", "\ufffd").replace("\x00", "\ufffd") in (root.get("aria-label") or "")
        for el in root.iter():
            assert re.fullmatch(r"[a-z0-9-]*", el.get("class") or ""), el.get("class")


def test_a_standalone_picture_has_its_size_in_pixels() -> None:
    root = parse(svg.svg(720, 260, "chart", ""))
    assert root.get("width") is None
    sized = parse(svg.svg(720, 260, "chart", "", sized=True))
    assert (sized.get("width"), sized.get("height"), sized.get("viewBox")) == ("720", "260", "0 0 720 260")
