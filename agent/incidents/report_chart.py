"""The post-mortem's picture: an incident's check around the incident, from its run history
(:mod:`agent.incidents.history`), as one SVG file beside the Markdown (``firstwatch report -o``).

The chart spans from an hour before the first failing run (:data:`BEFORE`) to a little after the
recovery (:data:`AFTER`; an open incident: up to now). Per step of time it draws the share of
failed runs (``1 - good / runs``) as a bar against the right axis (0 to 100%) and the p95 run
duration as a line against the left axis; a step without runs leaves a gap in the line. The
incident itself, first failing run to recovery, is shaded. The steps are as narrow as the stored
buckets allow (1 minute for recent history, up to a day for older) and at most
:data:`MAX_STEPS` of them.

It reads the targets that failed (the incident's own, or a group's failing members): their runs
are summed per step. The file is standalone (its size in pixels, colours as attributes, a white
background, so it reads the same in any viewer) and says its numbers in words (its ``<title>``),
which the report repeats under the link. Nothing here writes files: :func:`build` returns text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.core import svg
from agent.core.units import format_duration
from agent.incidents.history import HOUR, MINUTE, Bucket, series_of
from agent.incidents.history_store import load_many
from agent.incidents.model import Incident
from agent.incidents.store import Store

BEFORE = HOUR  # the chart starts this long before the first failing run
AFTER = 10 * MINUTE  # and ends this long after the recovery (or now, if sooner)
WIDTHS = (MINUTE, 5 * MINUTE, 15 * MINUTE, HOUR, 4 * HOUR, 24 * HOUR)  # a step's width: the first that fits
MAX_STEPS = 120

W, H = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, W - 60, 44, H - 58  # the plot area
INK, DIM, GRID = "#12171c", "#55606b", "#d3d9df"
LINE, BARS, SHADE = "#1f6fd1", "#d4530a", "#d92d35"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif"


@dataclass(frozen=True, slots=True)
class Chart:
    """The chart's SVG text and what it shows, in words."""

    svg: str
    words: str


def span(incident: Incident, now: float) -> tuple[float, float]:
    """The chart's time range: :data:`BEFORE` the first failing run to :data:`AFTER` the
    recovery, never past ``now``."""
    end = incident.resolved_at + AFTER if incident.resolved_at is not None else now
    return incident.started_at - BEFORE, max(min(end, now), incident.started_at)


def read(store: Store, incident: Incident, targets: Iterable[str], since: float, until: float) -> list[Bucket]:
    """The stored buckets of the incident's check for each of ``targets`` over the range."""
    keys = [(incident.check, target) for target in dict.fromkeys(targets)]
    found = load_many(store, keys, since, until)  # one scan of the range for all of them
    return [b for key in keys for b in found.get(key, [])]


def step_width(buckets: Iterable[Bucket], since: float, until: float) -> int:
    """The narrowest of :data:`WIDTHS` no narrower than any stored bucket, with at most
    :data:`MAX_STEPS` steps (a wider stored bucket would fall into one step and leave gaps)."""
    widest = max((b.width for b in buckets), default=MINUTE)
    for width in WIDTHS:
        if width >= widest and (until - since) / width <= MAX_STEPS:
            return width
    return WIDTHS[-1]


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def build(incident: Incident, buckets: list[Bucket], since: float, until: float, now: float) -> Chart | None:
    """The chart of ``buckets`` over ``[since, until)``; None when none of them has a run."""
    if not any(b.runs for b in buckets):
        return None
    width = step_width(buckets, since, until)
    steps = series_of(buckets, incident.check, incident.target, since, until, width)
    x0, x1 = steps[0].start, steps[-1].start + width

    def x(ts: float) -> float:
        return LEFT + (min(max(ts, x0), x1) - x0) / (x1 - x0) * (RIGHT - LEFT)

    p95s = [b.p95() if b.runs else None for b in steps]
    known = [v for v in p95s if v is not None]
    top = max(known) * 1.1 or 1.0
    rates = [1 - b.good / b.runs if b.runs else None for b in steps]
    end = incident.resolved_at if incident.resolved_at is not None else now
    body = [svg.rect(0, 0, W, H, fill="#ffffff")]
    body += [svg.path(f"M{LEFT} {y} H{RIGHT}", stroke=GRID, width=1) for y in (TOP, (TOP + BOTTOM) / 2, BOTTOM)]
    body.append(svg.rect(x(incident.started_at), TOP, x(end) - x(incident.started_at), BOTTOM - TOP, fill=SHADE,
                         opacity=0.12, title="the incident: first failing run to recovery"))  # fmt: skip
    step_px = (RIGHT - LEFT) / len(steps)
    for b, rate in zip(steps, rates, strict=True):
        if rate:
            h = rate * (BOTTOM - TOP)
            body.append(svg.rect(x(b.start) + 0.5, BOTTOM - h, max(1.0, step_px - 1), h, fill=BARS, opacity=0.75,
                                 title=f"{_clock(b.start)}: {b.runs - b.good} of {b.runs} runs failed"))  # fmt: skip
    points = [
        None if v is None else (x(b.start + width / 2), BOTTOM - v / top * (BOTTOM - TOP))
        for b, v in zip(steps, p95s, strict=True)
    ]
    body.append(svg.path(svg.path_d(points), stroke=LINE, width=2.5))
    body += [
        svg.text(LEFT - 6, TOP + 4, format_duration(top), anchor="end", fill=DIM),
        svg.text(LEFT - 6, BOTTOM + 4, "0", anchor="end", fill=DIM),
        svg.text(RIGHT + 6, TOP + 4, "100%", fill=DIM),
        svg.text(RIGHT + 6, BOTTOM + 4, "0%", fill=DIM),
        svg.text(LEFT, BOTTOM + 18, _clock(x0), fill=DIM),
        svg.text(RIGHT, BOTTOM + 18, f"{_clock(x1)} UTC", anchor="end", fill=DIM),
        svg.text(x(incident.started_at), TOP - 6, "incident", fill=SHADE),
        svg.text(LEFT, 24, f"{incident.check}: p95 latency and failed runs", fill=INK, size=15),
    ]
    legend_y = H - 16
    body += [
        svg.path(f"M{LEFT} {legend_y - 4} h18", stroke=LINE, width=2.5),
        svg.text(LEFT + 24, legend_y, f"p95 run duration (left, 0 to {format_duration(top)})", fill=INK),
        svg.rect(LEFT + 300, legend_y - 10, 12, 12, fill=BARS, opacity=0.75),
        svg.text(LEFT + 318, legend_y, f"failed runs per {format_duration(width)} (right)", fill=INK),
    ]
    words = _words(incident, steps, p95s, rates, x0, x1, now)
    picture = f'<g font-family="{FONT}">{"".join(body)}</g>'
    return Chart(svg.svg(W, H, words, picture, sized=True), words)


def _words(incident: Incident, steps: list[Bucket], p95s: list[float | None], rates: list[float | None],
           x0: float, x1: float, now: float) -> str:  # fmt: skip
    """What the chart shows, in one sentence."""
    day = datetime.fromtimestamp(x0, UTC).strftime("%Y-%m-%d")
    peak_i = max((i for i, v in enumerate(p95s) if v is not None), key=lambda i: p95s[i] or 0.0)
    worst_i = max((i for i, r in enumerate(rates) if r is not None), key=lambda i: rates[i] or 0.0)
    peak, worst = p95s[peak_i] or 0.0, rates[worst_i] or 0.0
    runs = sum(b.runs for b in steps)
    failed = runs - sum(b.good for b in steps)
    began = _clock(incident.started_at)
    ended = f"{began} to {_clock(incident.resolved_at)}" if incident.resolved_at is not None else f"from {began}, open"
    said = (
        f"{incident.check}, {day} {_clock(x0)} to {_clock(x1)} UTC: {failed} of {runs} runs failed;"
        f" p95 run duration peaked at {format_duration(peak)} ({_clock(steps[peak_i].start)}),"
        f" failed runs at {round(worst * 100)}% ({_clock(steps[worst_i].start)});"
        f" the incident ({ended}) is shaded"
    )
    empty = sum(1 for b in steps if not b.runs)
    return said + (f"; no runs in {empty} of {len(steps)} steps" if empty else "")


def section(file_name: str, chart: Chart | None, since: float, until: float, check: str) -> list[str]:
    """The Markdown lines of the report's "Latency and failures" section: the chart's link (to
    ``file_name``, beside the report) and its words; without history, one line saying so."""
    if chart is None:
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M")
        return [f"(no run history of {check} from {when} to {_clock(until)} UTC: no chart)"]
    target = file_name.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return [f"![latency and failure rate]({target})", "", chart.words]
