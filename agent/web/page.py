"""The status page (``GET /``): what is wrong right now, readable on a phone at 2 AM.

Plain server-rendered HTML5, no JavaScript; it reloads itself with ``<meta http-equiv="refresh">``.
The only style is one inline ``<style>`` block whose hash is in :data:`CONTENT_SECURITY_POLICY`,
so the page works under ``default-src 'none'`` (no scripts, no inline style attributes).

Layout, top to bottom: a headline in the color of the worst open severity with the counts; the
open incidents (critical first, then oldest first), each with its severity over time and its
timeline; the checks grouped by state (failing first), one row per member, then the check's
history and SLOs (uptime, 90 days, 24 h latency: inline SVG from :mod:`agent.web.charts`); the
agent line. Light or dark as the reader's system prefers (``prefers-color-scheme``); one column
on a phone. Every value from the snapshot is
HTML-escaped: check names, targets, error texts and notes come from users and peers. A member's
last screenshot and an incident's ``artifact`` entries link to ``artifacts/NAME`` (relative, so
the links hold behind a proxy that serves the agent under a path), for valid names only.

:func:`agent.web.text.render_text` gives the same snapshot as plain-text tables
(``firstwatch status``); both read it through ``agent.web.view``.

Both take a :class:`agent.web.snapshot.Snapshot` or any mapping (a peer's answer): every field is
read through an accessor that checks its type, so an odd or missing field shows as ``-`` or ``?``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from agent.core.severity import SEVERITIES
from agent.web.charts import bands_html, history_html
from agent.web.snapshot import artifact_name
from agent.web.view import (
    as_list,
    as_map,
    as_num,
    as_text,
    badge,
    checks_by_state,
    counts_line,
    esc,
    fmt_duration,
    fmt_span,
    fmt_value,
    headline,
    incidents_in_order,
    link,
    quiet_text,
    summary_of,
    time_html,
    value_units,
)

DEFAULT_REFRESH_S = 10
MAX_TIMELINE = 30  # the newest entries of an incident's timeline; `firstwatch timeline` has all

STYLE = """
:root{color-scheme:light dark;--bg:#f3f5f7;--panel:#fff;--line:#d3d9df;--text:#12171c;--dim:#55606b;
--critical:#d92d35;--major:#d4530a;--medium:#f5b82e;--minor:#1f6fd1;--ok:#1d8a54;--none:#6b7680;
--medium-ink:#875900;--crit-bg:#fdeeee;--err:#b3261e;--gap:#d5dbe1;--blips:#a6d9b9;--spark:#1f6fd1}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--panel:#1b2026;--line:#2e353d;--text:#eef1f4;
--dim:#a3adb8;--critical:#e5484d;--major:#f76b15;--medium:#ffc53d;--minor:#3e9bff;--ok:#30a46c;--none:#5f6b77;
--medium-ink:#ffc53d;--crit-bg:#2a1719;--err:#ffb4b4;--gap:#39414a;--blips:#8cc9a2;--spark:#6cb4ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:18px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;-webkit-text-size-adjust:100%}
main,footer{max-width:1100px;margin:0 auto;padding:0 16px}
.headline{padding:20px 16px;color:#fff}
.headline div{max-width:1100px;margin:0 auto}
.headline .state{font-size:44px;font-weight:800;letter-spacing:.02em;line-height:1.1}
.headline .counts{font-size:20px;font-weight:600;margin-top:6px}
.headline.sev-medium{color:#1a1300}
h2{font-size:26px;margin:28px 0 12px;border-bottom:1px solid var(--line);padding-bottom:6px}
h3{font-size:21px;margin:0 0 8px}
.sev-critical{background:var(--critical)}.sev-major{background:var(--major)}
.sev-medium{background:var(--medium)}.sev-minor{background:var(--minor)}
.sev-ok{background:var(--ok)}.sev-none{background:var(--none)}
.badge{display:inline-block;padding:2px 10px;border-radius:6px;font-size:15px;font-weight:800;
text-transform:uppercase;letter-spacing:.04em;color:#fff;vertical-align:middle}
.badge.sev-medium{color:#1a1300}
.incident{background:var(--panel);border:1px solid var(--line);border-left:10px solid var(--none);
border-radius:8px;padding:14px 16px;margin:0 0 16px}
.incident.bl-critical{border-color:var(--critical);background:var(--crit-bg)}
.incident.bl-major{border-left-color:var(--major)}.incident.bl-medium{border-left-color:var(--medium)}
.incident.bl-minor{border-left-color:var(--minor)}
.incident h3{font-size:23px;overflow-wrap:anywhere}
.meta{color:var(--dim);margin:4px 0 10px;font-size:16px}
.meta b{color:var(--text);font-weight:600}
.unacked{color:var(--medium-ink);font-weight:700}
.acked{color:var(--ok);font-weight:700}
.quiet{color:var(--minor);font-weight:700}.held{display:block;margin:2px 0;color:var(--minor)}
ol.timeline{list-style:none;margin:0;padding:0;border-top:1px solid var(--line);font-size:16px}
ol.timeline li{display:grid;grid-template-columns:17em 6.5em 1fr;gap:0 10px;align-items:baseline;
padding:6px 0;border-bottom:1px solid var(--line);overflow-wrap:anywhere}
ol.timeline li.more{display:block}
.kind{font-weight:700;color:var(--dim);text-transform:uppercase;font-size:13px;letter-spacing:.03em}
.kind.k-firing{color:var(--critical)}.kind.k-resolved{color:var(--ok)}.kind.k-note{color:var(--minor)}
.kind.k-ack{color:var(--ok)}
.author{color:var(--minor);font-weight:600}
time,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em}
time{white-space:nowrap}
.ago{color:var(--dim)}
.group{margin-bottom:8px}
.check{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:0 0 12px}
.check h3 small{color:var(--dim);font-weight:400;font-size:16px}
table{width:100%;border-collapse:collapse;font-size:16px;table-layout:fixed}
col.c-target{width:26%}col.c-state{width:9%}col.c-last{width:27%}col.c-dur{width:10%}
th{text-align:left;color:var(--dim);font-weight:600;font-size:14px;border-bottom:1px solid var(--line);
padding:4px 8px 4px 0}
td{padding:6px 8px 6px 0;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
.up{color:var(--ok);font-weight:800}.down{color:var(--critical);font-weight:800}.unknown{color:var(--dim);font-weight:700}
.err{color:var(--err)}
.vals{color:var(--dim);font-size:14px}
.rule{display:block;margin:2px 0}
a.shot{color:var(--minor);font-weight:600}
.empty{color:var(--dim);font-size:18px}
.hist{display:grid;grid-template-columns:1fr 1fr;gap:10px 28px;margin-top:12px}
.uptime,.slos{grid-column:1/-1}
.uptime{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:baseline}
.uptime b{font-size:20px}.ul{color:var(--dim);font-size:14px}
.chart{min-width:0}
.chart-head{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 12px;color:var(--dim);font-size:14px;
margin-bottom:3px}
.chart-head b{color:var(--text)}
svg.days,svg.bands,svg.spark{display:block;width:100%}
svg.days{height:30px;fill:var(--none)}svg.bands{height:14px;fill:var(--none)}
svg.spark{height:46px;overflow:visible;background:var(--bg);border-radius:4px}
.band-box{margin:0 0 10px}
.d-none{fill:var(--gap)}.d-up{fill:var(--ok)}.d-blips{fill:var(--blips)}
.d-critical,.b-critical{fill:var(--critical)}.d-major,.b-major{fill:var(--major)}
.d-medium,.b-medium{fill:var(--medium)}.d-minor,.b-minor{fill:var(--minor)}
svg.spark .line{stroke:var(--spark);stroke-width:2;vector-effect:non-scaling-stroke}
svg.spark .last{stroke:var(--text);stroke-width:7;vector-effect:non-scaling-stroke}
.axis{display:flex;justify-content:space-between;color:var(--dim);font-size:13px}
.legend{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:14px;color:var(--dim);margin-top:2px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.sw.d-none{background:var(--gap)}.sw.d-up{background:var(--ok)}.sw.d-blips{background:var(--blips)}
.sw.d-critical{background:var(--critical)}.sw.d-major{background:var(--major)}
.sw.d-medium{background:var(--medium)}.sw.d-minor{background:var(--minor)}
.slos{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.slo{border:1px solid var(--line);border-left:6px solid var(--ok);border-radius:6px;padding:6px 10px;font-size:16px}
.slo.s-low{border-left-color:var(--medium)}.slo.s-over{border-left-color:var(--critical)}
.slo.s-unknown{border-left-color:var(--none)}
.slo.s-over .budget b{color:var(--critical)}
footer{color:var(--dim);font-size:15px;margin-top:28px;padding-bottom:28px;border-top:1px solid var(--line);
padding-top:10px}
@media (max-width:700px){
 body{font-size:17px}.headline .state{font-size:36px}
 thead{display:none}table,tbody,tr,td{display:block;width:100%}
 tr{border-bottom:1px solid var(--line);padding:6px 0}td{border:0;padding:2px 0}
 ol.timeline li{grid-template-columns:1fr}
 td[data-label]::before{content:attr(data-label) ": ";color:var(--dim);font-size:14px}
 .hist{grid-template-columns:1fr}
}
"""

_STYLE_SHA256 = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

#: The policy the page is served with: nothing may load or run but the one style block above.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_SHA256}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _screenshot(name: object) -> str:
    """A link to the artifact ``name`` (a valid one), else nothing."""
    valid = artifact_name(name)
    return f' <a class="shot" href="artifacts/{esc(valid)}">screenshot</a>' if valid else ""


# -- small, forgiving accessors: the snapshot may come from a peer process (``firstwatch status``);
# its type (agent.web.snapshot.Snapshot) is what our agent sends, not what any peer may send --


def _incident_html(inc: Mapping[str, object], now: float) -> str:
    sev = inc.get("severity")
    bl = f"bl-{sev}" if sev in SEVERITIES else ""
    meta = [f"<b>{esc(inc.get('check'), '?')}</b>"]
    if inc.get("target"):
        meta.append(f'<span class="mono">{esc(inc.get("target"))}</span>')
    meta.append(f"started {time_html(inc.get('started_at') or inc.get('fired_at'), now)}")
    if inc.get("acked_by") or inc.get("acked_at"):
        ack = f'<span class="acked">acked by {esc(inc.get("acked_by"), "someone")}</span>'
        if inc.get("acked_at"):
            ack += f" at {time_html(inc.get('acked_at'), now)}"
    else:
        ack = '<span class="unacked">not acknowledged</span>'
    meta.append(ack)
    meta.append(f'id <span class="mono">{esc(inc.get("id"), "?")}</span>')
    if inc.get("runbook"):
        meta.append(link(inc.get("runbook"), "runbook"))
    affected = [as_text(a) for a in as_list(inc.get("affected"))]
    if affected:
        meta.append(f"also failing because of it: {esc(', '.join(affected))}")
    entries = [as_map(e) for e in as_list(inc.get("timeline"))]
    omitted = len(entries) - MAX_TIMELINE
    rows = []
    if omitted > 0:
        entries = entries[-MAX_TIMELINE:]
        rows.append(f'<li class="more ago">{omitted} earlier entries: firstwatch timeline</li>')
    for e in entries:
        kind = as_text(e.get("kind"), "event")
        kind_cls = "k-" + "".join(ch for ch in kind.lower() if ch.isalnum())
        author = f' <span class="author">— {esc(e.get("author"))}</span>' if e.get("author") else ""
        rows.append(
            f'<li><span>{time_html(e.get("time"), now)}</span> <span class="kind {kind_cls}">{esc(kind)}</span> '
            f"<span>{esc(e.get('text'))}{_screenshot(e.get('artifact'))}{author}</span></li>"
        )
    timeline = f'<ol class="timeline">{"".join(rows)}</ol>' if rows else ""
    return (
        f'<article class="incident {bl}"><h3>{badge(sev)} {esc(inc.get("summary"), "(no summary)")}</h3>'
        f'<div class="meta">{" · ".join(meta)}</div>{bands_html(inc, now)}{timeline}</article>'
    )


def _member_row(member: Mapping[str, object], now: float, check_type: object = None) -> str:
    up = member.get("up")
    state = (
        '<span class="up">UP</span>'
        if up is True
        else '<span class="down">DOWN</span>'
        if up is False
        else '<span class="unknown">—</span>'
    )
    last = time_html(member.get("last_run"), now) if member.get("last_run") else "never"
    firing = "".join(
        f'<span class="rule">{badge(f.get("severity"))} <span class="mono">{esc(f.get("rule"))}</span></span>'
        for f in map(as_map, as_list(member.get("firing")))
    ) + "".join(
        f'<span class="held">not paged: <span class="mono">{esc(h.get("rule"))}</span> {esc(h.get("why"))}</span>'
        for h in map(as_map, as_list(member.get("held")))
    )
    error = esc(as_text(member.get("error"))[:500]) if member.get("error") else ""
    shot = _screenshot(member.get("artifact"))
    err = f'<div class="err">{error}{shot}</div>' if error or shot else ""
    values = as_map(member.get("values"))
    unit = value_units(check_type, member)
    vals = (
        '<div class="vals">'
        + esc(", ".join(f"{k}={fmt_value(v, unit(k))}" for k, v in list(values.items())[:8] if k != "duration"))
        + "</div>"
        if values
        else ""
    )
    return (
        f'<tr><td data-label="target" class="mono">{esc(member.get("target") or "this host")}</td>'
        f'<td data-label="state">{state}</td><td data-label="last run">{last}</td>'
        f'<td data-label="duration">{fmt_duration(member.get("duration_s"))}</td>'
        f'<td data-label="details">{firing}{err}{vals}</td></tr>'
    )


def _check_html(check: Mapping[str, object], now: float) -> str:
    interval = as_num(check.get("interval_s"))
    every = f" · every {fmt_span(interval)}" if interval else ""
    rows = "".join(_member_row(as_map(m), now, check.get("type")) for m in as_list(check.get("members")))
    notes = []
    if check.get("quiet"):
        notes.append(f'<span class="quiet">{esc(quiet_text(as_map(check.get("quiet"))))}</span>')
    parents = [as_text(p) for p in as_list(check.get("depends_on"))]
    if parents:
        notes.append(f"depends on {esc(', '.join(parents))}")
    if check.get("runbook"):
        notes.append(link(check.get("runbook"), "runbook"))
    note = f'<div class="meta">{" · ".join(notes)}</div>' if notes else ""
    return (
        f'<article class="check"><h3>{esc(check.get("name"), "?")} '
        f"<small>{esc(check.get('type'), '?')}{every}</small></h3>{note}"
        '<table><colgroup><col class="c-target"><col class="c-state"><col class="c-last"><col class="c-dur"><col>'
        "</colgroup><thead><tr><th>target</th><th>state</th><th>last run</th><th>duration</th><th>details</th>"
        "</tr></thead>"
        f"<tbody>{rows}</tbody></table>{history_html(check)}</article>"
    )


def render(snapshot: Mapping[str, object], *, now: float | None = None) -> str:
    """The status page for ``snapshot`` (the ``/status`` document) as one HTML5 string."""
    now = time.time() if now is None else now
    snapshot = as_map(snapshot)
    agent = as_map(snapshot.get("agent"))
    wanted = as_num(snapshot.get("refresh_s"))
    refresh = int(wanted) if wanted is not None and 1 <= wanted <= 86400 else DEFAULT_REFRESH_S
    summary = summary_of(snapshot)
    head_cls, head_text = headline(summary)
    counts = counts_line(summary)

    incidents = incidents_in_order(snapshot)
    inc_html = (
        "".join(_incident_html(i, now) for i in incidents) if incidents else '<p class="empty">No open incidents.</p>'
    )
    groups = checks_by_state(snapshot)
    checks_html = (
        "".join(
            f'<section class="group"><h2>{title} ({len(checks)})</h2>'
            + "".join(_check_html(c, now) for c in checks)
            + "</section>"
            for _, title, checks in groups
        )
        or '<h2>Checks</h2><p class="empty">No checks configured.</p>'
    )

    name = as_text(agent.get("name"), "firstwatch")
    uptime = as_num(agent.get("uptime_s"))
    labels = as_map(agent.get("labels"))
    foot = [f"agent <b>{esc(name)}</b>", f"firstwatch {esc(agent.get('version'), '?')}"]
    if uptime is not None:
        foot.append(f"up {fmt_span(uptime)}")
    if agent.get("started_at"):
        foot.append(f"started {time_html(agent.get('started_at'), now)}")
    if labels:
        foot.append("labels " + esc(", ".join(f"{k}={v}" for k, v in labels.items())))
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    foot.append(f'page generated <time datetime="{stamp}">{stamp}</time>, refreshes every {refresh}s')

    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(head_text)} · {esc(name)} · firstwatch</title>"
        f"<style>{STYLE}</style></head>\n<body>"
        f'<header class="headline {head_cls}"><div class="state">{esc(head_text)}</div>'
        f'<div class="counts">{esc(counts)}</div></header>\n<main>'
        f'<section id="incidents"><h2>Open incidents ({len(incidents)})</h2>{inc_html}</section>\n'
        f'<section id="checks">{checks_html}</section></main>\n'
        f"<footer>{' · '.join(foot)}</footer>\n</body></html>\n"
    )


# -- plain text (``firstwatch status``) --
