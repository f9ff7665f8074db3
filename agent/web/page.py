"""The status page (``GET /``): what is wrong right now, readable on a phone at 2 AM.

Plain server-rendered HTML5, no JavaScript; it reloads itself with ``<meta http-equiv="refresh">``.
The only style is one inline ``<style>`` block whose hash is in :data:`CONTENT_SECURITY_POLICY`,
so the page works under ``default-src 'none'`` (no scripts, no inline style attributes).

Layout, top to bottom: a headline in the color of the worst open severity with the counts; the
open incidents (critical first, then oldest first), each with its timeline; the checks grouped
by state (failing first), one row per member; the agent line. Every value from the snapshot is
HTML-escaped: check names, targets, error texts and notes come from users and peers.

:func:`render_text` gives the same snapshot as plain-text tables (``firstwatch status``).

Both take a :class:`agent.web.snapshot.Snapshot` or any mapping (a peer's answer): every field is
read through an accessor that checks its type, so an odd or missing field shows as ``-`` or ``?``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from html import escape

from agent.core.severity import SEVERITIES, rank
from agent.core.units import format_duration, format_value
from agent.web.snapshot import Summary

DEFAULT_REFRESH_S = 10
MAX_TIMELINE = 30  # the newest entries of an incident's timeline; `firstwatch timeline` has all

STYLE = """
:root{color-scheme:dark;--bg:#111418;--panel:#1b2026;--line:#2e353d;--text:#eef1f4;--dim:#a3adb8;
--critical:#e5484d;--major:#f76b15;--medium:#ffc53d;--minor:#3e9bff;--ok:#30a46c;--none:#5f6b77}
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
.incident.bl-critical{border-color:var(--critical);background:#2a1719}
.incident.bl-major{border-left-color:var(--major)}.incident.bl-medium{border-left-color:var(--medium)}
.incident.bl-minor{border-left-color:var(--minor)}
.incident h3{font-size:23px;overflow-wrap:anywhere}
.meta{color:var(--dim);margin:4px 0 10px;font-size:16px}
.meta b{color:var(--text);font-weight:600}
.unacked{color:var(--medium);font-weight:700}
.acked{color:var(--ok);font-weight:700}
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
.err{color:#ffb4b4}
.vals{color:var(--dim);font-size:14px}
.rule{display:block;margin:2px 0}
.empty{color:var(--dim);font-size:18px}
footer{color:var(--dim);font-size:15px;margin-top:28px;padding-bottom:28px;border-top:1px solid var(--line);
padding-top:10px}
@media (max-width:700px){
 body{font-size:17px}.headline .state{font-size:36px}
 thead{display:none}table,tbody,tr,td{display:block;width:100%}
 tr{border-bottom:1px solid var(--line);padding:6px 0}td{border:0;padding:2px 0}
 ol.timeline li{grid-template-columns:1fr}
 td[data-label]::before{content:attr(data-label) ": ";color:var(--dim);font-size:14px}
}
"""

_STYLE_SHA256 = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

#: The policy the page is served with: nothing may load or run but the one style block above.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_SHA256}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


# -- small, forgiving accessors: the snapshot may come from a peer process (``firstwatch status``);
# its type (agent.web.snapshot.Snapshot) is what our agent sends, not what any peer may send --


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _text(value: object, default: str = "") -> str:
    return default if value is None else str(value)


def _h(value: object, default: str = "") -> str:
    """HTML-escaped text (quotes too, so it is safe inside attributes)."""
    return escape(_text(value, default), quote=True)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def fmt_time(value: object) -> str:
    """``2026-11-24T02:35:07Z`` (UTC, ISO 8601, whole seconds); unparsable text comes back as is."""
    dt = _parse_time(value)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else _text(value, "-")


def fmt_span(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 12m``, ``2d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m" if s % 3600 // 60 else f"{s // 3600}h"
    return f"{s // 86400}d {s % 86400 // 3600}h" if s % 86400 // 3600 else f"{s // 86400}d"


def fmt_duration(value: object) -> str:
    d = _num(value)
    if d is None:
        return "-"
    return format_duration(d)


def _fmt_value(value: object, unit: str | None = None) -> str:
    """A value in its unit, as ``firstwatch check`` and the log show it (:mod:`agent.core.units`)."""
    v = _num(value)
    if v is None:
        return _text(value, "-")
    return format_value(v, unit)


def _value_units(check_type: object, member: Mapping[str, object]) -> Callable[[str], str | None]:
    """The unit of each value of a member: the member's ``units`` (a plugin's perfdata) if the
    snapshot has them, else what its check type declares."""
    from checks import CHECKS  # the daemon has loaded them already
    from checks.base import find_value

    cls = CHECKS.get(check_type) if isinstance(check_type, str) else None
    reported = _map(member.get("units"))

    def unit(name: str) -> str | None:
        if isinstance(reported.get(name), str):
            return str(reported[name])
        spec = find_value(cls.VALUES, name) if cls is not None else None
        return spec.unit if spec is not None else None

    return unit


def _time_html(value: object, now: float) -> str:
    dt = _parse_time(value)
    if dt is None:
        return f'<span class="mono">{_h(value, "-")}</span>'
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    ago = now - dt.timestamp()
    rel = f' <span class="ago">({fmt_span(ago)} ago)</span>' if ago >= 0 else ""
    return f'<time datetime="{stamp}">{stamp}</time>{rel}'


def _rank(severity: object) -> int:
    return rank(severity) if isinstance(severity, str) else 0


def _sev_class(severity: object) -> str:
    return f"sev-{severity}" if severity in SEVERITIES else "sev-none"


def _badge(severity: object) -> str:
    return f'<span class="badge {_sev_class(severity)}">{_h(severity, "unknown")}</span>'


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- the state of things, shared by the HTML and the text views --


def incidents_in_order(snapshot: Mapping[str, object]) -> list[Mapping[str, object]]:
    """Open incidents, critical first, then the oldest first (the longest-running problem)."""
    incidents = [_map(i) for i in _list(snapshot.get("incidents"))]

    def key(inc: Mapping[str, object]) -> tuple[int, float, str]:
        started = _parse_time(inc.get("started_at")) or _parse_time(inc.get("fired_at"))
        return (-_rank(inc.get("severity")), started.timestamp() if started else math.inf, _text(inc.get("id")))

    return sorted(incidents, key=key)


def _member_state(member: Mapping[str, object]) -> str:
    if _list(member.get("firing")) or member.get("up") is False:
        return "failing"
    return "ok" if member.get("up") is True else "unknown"


def check_state(check: Mapping[str, object]) -> str:
    """``failing`` (a member is down or a rule fires), ``unknown`` (no result yet) or ``ok``."""
    states = {_member_state(_map(m)) for m in _list(check.get("members"))}
    for state in ("failing", "unknown"):
        if state in states:
            return state
    return "ok" if states else "unknown"


def _check_worst(check: Mapping[str, object]) -> int:
    return max(
        (_rank(_map(f).get("severity")) for m in _list(check.get("members")) for f in _list(_map(m).get("firing"))),
        default=0,
    )


GROUPS = (("failing", "Failing"), ("unknown", "No result yet"), ("ok", "OK"))


def checks_by_state(snapshot: Mapping[str, object]) -> list[tuple[str, str, list[Mapping[str, object]]]]:
    """``[(state, title, checks)]`` in display order; within a group the worst firing rule
    first, then by name."""
    checks = [_map(c) for c in _list(snapshot.get("checks"))]
    out = []
    for state, title in GROUPS:
        group = [c for c in checks if check_state(c) == state]
        group.sort(key=lambda c: (-_check_worst(c), _text(c.get("name"))))
        if group:
            out.append((state, title, group))
    return out


class Counts(Summary):
    """The headline's numbers: the snapshot's ``summary``, completed, and the open incidents by
    severity (worst first, only those with any)."""

    by_severity: dict[str, int]


def summary_of(snapshot: Mapping[str, object]) -> Counts:
    """``snapshot["summary"]``, with whatever is missing counted from the rest."""
    given = _map(snapshot.get("summary"))
    checks = [_map(c) for c in _list(snapshot.get("checks"))]
    members = [_map(m) for c in checks for m in _list(c.get("members"))]
    incidents = [_map(i) for i in _list(snapshot.get("incidents"))]

    def count(key: str, counted: int) -> int:
        value = given.get(key)
        return value if isinstance(value, int) else counted

    worst = given.get("worst")
    if worst not in SEVERITIES:
        worst = max((i.get("severity") for i in incidents), key=_rank, default=None)
    return {
        "checks": count("checks", len(checks)),
        "targets": count("targets", len(members)),
        "up": count("up", sum(1 for m in members if m.get("up") is True)),
        "down": count("down", sum(1 for m in members if m.get("up") is False)),
        "open_incidents": count("open_incidents", len(incidents)),
        "worst": worst if isinstance(worst, str) and worst in SEVERITIES else None,
        "by_severity": {sev: n for sev in SEVERITIES if (n := sum(1 for i in incidents if i.get("severity") == sev))},
    }


def headline(summary: Counts) -> tuple[str, str]:
    """(css class, text) of the headline: the worst open severity, else all clear."""
    worst = summary["worst"]
    if worst in SEVERITIES:
        return f"sev-{worst}", str(worst).upper()
    if summary["down"]:
        return "sev-none", "NO OPEN INCIDENTS"
    return "sev-ok", "ALL CLEAR"


def counts_line(summary: Counts) -> str:
    parts = [_plural(int(summary["open_incidents"]), "open incident")]
    by_sev = summary["by_severity"]
    if by_sev:
        parts[0] += " (" + ", ".join(f"{n} {sev}" for sev, n in by_sev.items()) + ")"
    targets, down = int(summary["targets"]), int(summary["down"])
    parts.append(
        f"{down} of {targets} targets down" if down else f"all {targets} targets up" if targets else "no targets"
    )
    parts.append(_plural(int(summary["checks"]), "check"))
    return " · ".join(parts)


# -- HTML --


def _incident_html(inc: Mapping[str, object], now: float) -> str:
    sev = inc.get("severity")
    bl = f"bl-{sev}" if sev in SEVERITIES else ""
    meta = [f"<b>{_h(inc.get('check'), '?')}</b>"]
    if inc.get("target"):
        meta.append(f'<span class="mono">{_h(inc.get("target"))}</span>')
    meta.append(f"started {_time_html(inc.get('started_at') or inc.get('fired_at'), now)}")
    if inc.get("acked_by") or inc.get("acked_at"):
        ack = f'<span class="acked">acked by {_h(inc.get("acked_by"), "someone")}</span>'
        if inc.get("acked_at"):
            ack += f" at {_time_html(inc.get('acked_at'), now)}"
    else:
        ack = '<span class="unacked">not acknowledged</span>'
    meta.append(ack)
    meta.append(f'id <span class="mono">{_h(inc.get("id"), "?")}</span>')
    entries = [_map(e) for e in _list(inc.get("timeline"))]
    omitted = len(entries) - MAX_TIMELINE
    rows = []
    if omitted > 0:
        entries = entries[-MAX_TIMELINE:]
        rows.append(f'<li class="more ago">{omitted} earlier entries: firstwatch timeline</li>')
    for e in entries:
        kind = _text(e.get("kind"), "event")
        kind_cls = "k-" + "".join(ch for ch in kind.lower() if ch.isalnum())
        author = f' <span class="author">— {_h(e.get("author"))}</span>' if e.get("author") else ""
        rows.append(
            f'<li><span>{_time_html(e.get("time"), now)}</span> <span class="kind {kind_cls}">{_h(kind)}</span> '
            f"<span>{_h(e.get('text'))}{author}</span></li>"
        )
    timeline = f'<ol class="timeline">{"".join(rows)}</ol>' if rows else ""
    return (
        f'<article class="incident {bl}"><h3>{_badge(sev)} {_h(inc.get("summary"), "(no summary)")}</h3>'
        f'<div class="meta">{" · ".join(meta)}</div>{timeline}</article>'
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
    last = _time_html(member.get("last_run"), now) if member.get("last_run") else "never"
    firing = "".join(
        f'<span class="rule">{_badge(f.get("severity"))} <span class="mono">{_h(f.get("rule"))}</span></span>'
        for f in map(_map, _list(member.get("firing")))
    )
    err = f'<div class="err">{_h(_text(member.get("error"))[:500])}</div>' if member.get("error") else ""
    values = _map(member.get("values"))
    unit = _value_units(check_type, member)
    vals = (
        '<div class="vals">'
        + _h(", ".join(f"{k}={_fmt_value(v, unit(k))}" for k, v in list(values.items())[:8] if k != "duration"))
        + "</div>"
        if values
        else ""
    )
    return (
        f'<tr><td data-label="target" class="mono">{_h(member.get("target") or "this host")}</td>'
        f'<td data-label="state">{state}</td><td data-label="last run">{last}</td>'
        f'<td data-label="duration">{fmt_duration(member.get("duration_s"))}</td>'
        f'<td data-label="details">{firing}{err}{vals}</td></tr>'
    )


def _check_html(check: Mapping[str, object], now: float) -> str:
    interval = _num(check.get("interval_s"))
    every = f" · every {fmt_span(interval)}" if interval else ""
    rows = "".join(_member_row(_map(m), now, check.get("type")) for m in _list(check.get("members")))
    return (
        f'<article class="check"><h3>{_h(check.get("name"), "?")} '
        f"<small>{_h(check.get('type'), '?')}{every}</small></h3>"
        '<table><colgroup><col class="c-target"><col class="c-state"><col class="c-last"><col class="c-dur"><col>'
        "</colgroup><thead><tr><th>target</th><th>state</th><th>last run</th><th>duration</th><th>details</th>"
        "</tr></thead>"
        f"<tbody>{rows}</tbody></table></article>"
    )


def render(snapshot: Mapping[str, object], *, now: float | None = None) -> str:
    """The status page for ``snapshot`` (the ``/status`` document) as one HTML5 string."""
    now = time.time() if now is None else now
    snapshot = _map(snapshot)
    agent = _map(snapshot.get("agent"))
    wanted = _num(snapshot.get("refresh_s"))
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

    name = _text(agent.get("name"), "firstwatch")
    uptime = _num(agent.get("uptime_s"))
    labels = _map(agent.get("labels"))
    foot = [f"agent <b>{_h(name)}</b>", f"firstwatch {_h(agent.get('version'), '?')}"]
    if uptime is not None:
        foot.append(f"up {fmt_span(uptime)}")
    if agent.get("started_at"):
        foot.append(f"started {_time_html(agent.get('started_at'), now)}")
    if labels:
        foot.append("labels " + _h(", ".join(f"{k}={v}" for k, v in labels.items())))
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    foot.append(f'page generated <time datetime="{stamp}">{stamp}</time>, refreshes every {refresh}s')

    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_h(head_text)} · {_h(name)} · firstwatch</title>"
        f"<style>{STYLE}</style></head>\n<body>"
        f'<header class="headline {head_cls}"><div class="state">{_h(head_text)}</div>'
        f'<div class="counts">{_h(counts)}</div></header>\n<main>'
        f'<section id="incidents"><h2>Open incidents ({len(incidents)})</h2>{inc_html}</section>\n'
        f'<section id="checks">{checks_html}</section></main>\n'
        f"<footer>{' · '.join(foot)}</footer>\n</body></html>\n"
    )


# -- plain text (``firstwatch status``) --


def _table(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = [[c.replace("\n", " ") for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def render_text(snapshot: Mapping[str, object]) -> str:
    """The snapshot as plain-text tables: the headline, open incidents, then every member."""
    snapshot = _map(snapshot)
    summary = summary_of(snapshot)
    agent = _map(snapshot.get("agent"))
    _, head_text = headline(summary)
    lines = [f"{head_text}: {counts_line(summary)}  (agent {_text(agent.get('name'), '?')})", ""]
    incidents = incidents_in_order(snapshot)
    if incidents:
        lines += _table(
            ["SEVERITY", "INCIDENT", "STARTED", "ACKED BY", "SUMMARY"],
            (
                [
                    _text(i.get("severity"), "?"),
                    _text(i.get("id"), "?"),
                    fmt_time(i.get("started_at")),
                    _text(i.get("acked_by"), "-"),
                    _text(i.get("summary")),
                ]
                for i in incidents
            ),
        )
        lines.append("")
    rows = []
    for _state, _, checks in checks_by_state(snapshot):
        for c in checks:
            for m in (_map(x) for x in _list(c.get("members"))):
                up = m.get("up")
                firing = ", ".join(
                    f"{_text(_map(f).get('severity'))}: {_text(_map(f).get('rule'))}" for f in _list(m.get("firing"))
                )
                rows.append(
                    [
                        _text(c.get("name"), "?"),
                        _text(m.get("target") or "this host"),
                        "up" if up is True else "DOWN" if up is False else "-",
                        fmt_time(m.get("last_run")) if m.get("last_run") else "never",
                        fmt_duration(m.get("duration_s")),
                        "; ".join(x for x in (firing, _text(m.get("error"))[:120]) if x),
                    ]
                )
    lines += _table(["CHECK", "TARGET", "STATE", "LAST RUN", "DURATION", "FIRING / ERROR"], rows)
    return "\n".join(lines) + "\n"
