"""The status page's pictures, as HTML with inline SVG (:mod:`agent.core.svg`): a check's run
history (uptime over 24 h, 7 d and 30 d; the last 90 days coloured by each day's worst state; the
p95 latency of the last 24 hours), its service level objectives (SLI, error budget left, burn
rates, burn alerts firing), and an open incident's severity over time.

No JavaScript and no ``style`` attributes: every colour comes from classes the page's one style
block defines (``d-STATE`` days, ``b-SEVERITY`` bands, ``spark``), so the page's strict
Content-Security-Policy stays as it is. Each picture's numbers are also written as text next to
it (and in its label), so a reader who cannot tell the colours apart still gets them.

Like the rest of the page, everything is read forgivingly (a peer's document may be odd): a
missing history shows nothing, a missing number ``no data``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from agent.core import svg
from agent.core.severity import SEVERITIES
from agent.core.units import format_duration, format_number
from agent.web.view import as_list, as_map, as_num, as_text, badge, esc, fmt_percent, fmt_span, parse_time, plural

DAY_STATES = ("none", "up", "blips", *SEVERITIES)
DAY_WORDS = {"none": "without runs", "up": "all runs ok", "blips": "with failed runs"} | {
    s: f"with a {s} incident" for s in SEVERITIES
}
UPTIME_WINDOWS = (("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d"))


def _day_title(day: Mapping[str, object]) -> str:
    state = as_text(day.get("state"), "none")
    runs, ok = as_num(day.get("runs")), as_num(day.get("ok"))
    counted = f"{int(ok)} of {plural(int(runs), 'run')} ok" if runs and ok is not None else "no runs"
    return f"{as_text(day.get('day'), '?')}: {counted}, {DAY_WORDS.get(state, state)}"


def _legend(states: list[str]) -> str:
    counts = Counter(states)
    return "".join(
        f'<span class="key"><span class="sw d-{s}"></span>{counts[s]} {esc(DAY_WORDS[s])}</span>'
        for s in DAY_STATES
        if counts[s]
    )


def days_html(days: list[Mapping[str, object]]) -> str:
    """The last 90 days as a bar (newest on the right), with a legend of how many days of each."""
    if not days:
        return ""
    states = [s if (s := as_text(d.get("state"))) in DAY_STATES else "none" for d in days]
    bar = svg.day_bar(states, "last 90 days", titles=[_day_title(d) for d in days], names=DAY_WORDS)
    since = f" <span>(history since {esc(days[0].get('day'), '?')})</span>" if len(days) < 90 else ""
    return (
        f'<div class="chart days-box"><div class="chart-head"><span>last 90 days{since}</span></div>{bar}'
        '<div class="axis"><span>90 days ago</span><span>today</span></div>'
        f'<div class="legend">{_legend(states)}</div></div>'
    )


def latency_html(points: list[Mapping[str, object]]) -> str:
    """The p95 latency of the last 24 hours as a sparkline, its newest value and peak in words."""
    if not points:
        return ""
    values = [as_num(p.get("p95_s")) for p in points]
    known = [v for v in values if v is not None]
    line = svg.sparkline(values, "p95 latency, last 24 hours")
    if known:
        newest = f"newest <b>{esc(format_duration(known[-1]))}</b> · peak {esc(format_duration(max(known)))}"
    else:
        newest = "no runs"
    return (
        f'<div class="chart lat-box"><div class="chart-head"><span>p95 latency, 24 h</span>'
        f'<span class="now">{newest}</span></div>{line}</div>'
    )


def uptime_html(uptime: Mapping[str, object]) -> str:
    cells = " ".join(
        f'<span class="u"><span class="ul">{label}</span> <b>{esc(fmt_percent(uptime.get(key)))}</b></span>'
        for key, label in UPTIME_WINDOWS
    )
    return f'<div class="uptime"><span class="ul">uptime</span> {cells}</div>'


def slo_html(slo: Mapping[str, object]) -> str:
    """One SLO of a member: objective, SLI, the error budget left (or overspent), burn rates."""
    objective = fmt_percent(slo.get("objective"), "?")
    window = as_num(slo.get("window_s"))
    over = f" over {fmt_span(window)}" if window else ""
    latency = as_num(slo.get("latency_s"))
    good_means = f" (ok and within {esc(format_duration(latency))})" if latency is not None else ""
    runs, good = as_num(slo.get("runs")), as_num(slo.get("good"))
    counted = f", {int(good):,} of {int(runs):,} runs good{good_means}" if runs and good is not None else ""
    budget = as_num(slo.get("budget_remaining"))
    if budget is None:
        spent, cls = "no data", "s-unknown"
    elif budget < 0:
        spent, cls = f"overspent by {fmt_percent(-budget)}", "s-over"
    else:
        spent, cls = f"{fmt_percent(budget)} left", "s-low" if budget < 0.25 else "s-ok"
    rates = as_map(slo.get("burn_rates"))
    burns = ", ".join(
        f"{esc(w)} {esc(format_number(r) + 'x') if (r := as_num(v)) is not None else 'no runs'}"
        for w, v in rates.items()
    )
    firing = "".join(
        f' <span class="rule">{badge(f.get("severity"))} <span class="mono">{esc(f.get("rule"))}</span></span>'
        for f in map(as_map, as_list(slo.get("firing")))
    )
    target = f' · <span class="mono">{esc(slo.get("target"))}</span>' if slo.get("target") else ""
    return (
        f'<div class="slo {cls}"><div><b>SLO {esc(objective)}</b>{esc(over)}{target}</div>'
        f"<div>SLI <b>{esc(fmt_percent(slo.get('sli')))}</b>{counted}</div>"
        f'<div class="budget">error budget: <b>{esc(spent)}</b></div>'
        f"{f'<div>burn rate: {burns}</div>' if burns else ''}{firing}</div>"
    )


def history_html(check: Mapping[str, object]) -> str:
    """A check's history and SLOs; nothing when the document has neither (an older agent's)."""
    history = as_map(check.get("history"))
    slos = [slo_html(as_map(s)) for s in as_list(check.get("slo"))]
    if not history and not slos:
        return ""
    parts = []
    if history:
        parts.append(uptime_html(as_map(history.get("uptime"))))
        parts.append(days_html([as_map(d) for d in as_list(history.get("days"))]))
        parts.append(latency_html([as_map(p) for p in as_list(history.get("latency"))]))
    if slos:
        parts.append(f'<div class="slos">{"".join(slos)}</div>')
    return f'<div class="hist">{"".join(parts)}</div>'


def bands_html(incident: Mapping[str, object], now: float) -> str:
    """An open incident's severity over time: a strip from its first band to now, in words too."""
    spans = []
    still = False
    for band in map(as_map, as_list(incident.get("bands"))):
        start, end = parse_time(band.get("start")), parse_time(band.get("end"))
        if start is None:
            continue
        spans.append(svg.Span(start.timestamp(), end.timestamp() if end else now, as_text(band.get("severity"), "?")))
        still = end is None
    if not spans:
        return ""
    first, last = min(s.start for s in spans), max(max(s.end for s in spans), now)
    strip = svg.band_strip(spans, first, last, "severity over time")
    words = " → ".join(f"{esc(s.state)} {esc(format_duration(max(0.0, s.end - s.start)))}" for s in spans)
    now_ = " (now)" if still else ""
    return f'<div class="chart band-box"><div class="chart-head">severity: {words}{now_}</div>{strip}</div>'
