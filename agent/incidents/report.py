"""The post-mortem draft: an incident and its timeline, as Markdown for people or JSON for tools.

The seed's advice: "document every step in real-time ... Capture it all, just in time", then look
for what prevents recurrence, not who is at fault. The draft gives the facts the agent saw (first
failing run and its error, detection, first page per sink, time at each severity, each affected
target's down and up times, the dependent checks that failed under it, silences, the changes of
the hour before detection, the humans' notes and acknowledgments, the runbook, the screenshots of
failing runs, and the timeline with one line per sink for its deliveries) and leaves headings for
the analysis people write. Written to a file (``firstwatch report -o``), it links a chart of the
check's latency and failed runs around the incident (:mod:`agent.incidents.report_chart`).
The facts themselves are computed in :mod:`agent.incidents.report_facts`.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from agent.core.events import parse_iso
from agent.core.safe_text import printable, web_url
from agent.core.units import format_duration
from agent.incidents.model import Entry, Incident
from agent.incidents.report_facts import Facts, facts

__all__ = ["CHANGE_WINDOW", "SHOWN_KINDS", "changes_before", "facts", "render_json", "render_markdown"]

CHANGE_WINDOW = 3600.0  # changes this long before detection are suspects

SHOWN_KINDS = {
    "pending": "pending",
    "firing": "FIRING",
    "changed": "changed",
    "resolved": "RESOLVED",
    "reset": "cleared",
    "flapping-start": "flapping",
    "flapping-stop": "steady",
    "member-firing": "member down",
    "member-resolved": "member up",
    "delivered": "sent",
    "silenced": "SILENCED",
    "affected": "affected",
    "unaffected": "unaffected",
    "change": "CHANGE",
    "silence": "silence",
    "note": "NOTE",
    "ack": "ACK",
}


def changes_before(incident: Incident, candidates: list[Entry], affected_checks: Collection[str]) -> list[Entry]:
    """The change markers (``firstwatch annotate``) that may explain ``incident``: of the hour
    before detection (up to it), for everything (no check), its own check or one of the
    ``affected_checks`` (its dependents). Oldest first."""
    applies = {incident.check, *affected_checks}
    start = incident.fired_at - CHANGE_WINDOW
    chosen = [
        e
        for e in candidates
        if e.kind == "change" and start <= e.time <= incident.fired_at and (e.check is None or e.check in applies)
    ]
    return sorted(chosen, key=lambda e: (e.time, e.seq))


def render_json(incident: Incident, entries: list[Entry], changes: list[Entry], state_dir: str | None = None) -> str:
    """JSON text: json.dumps escapes every control character itself."""
    return json.dumps(facts(incident, entries, changes, state_dir), indent=2)


def render_markdown(
    incident: Incident,
    entries: list[Entry],
    changes: list[Entry],
    state_dir: str | None = None,
    chart: list[str] | None = None,
) -> str:
    """The draft for people, one Markdown line per fact or timeline line. ``state_dir`` (the
    agent's) gives each screenshot its path on the host; the section is there only if there are any.
    ``chart`` is the "Latency and failures" section (:func:`agent.incidents.report_chart.section`:
    the link to the chart beside the report), there only when given."""
    f = facts(incident, entries, changes, state_dir)
    lines = _header(f)
    lines += [
        "",
        "## Summary",
        "",
        "_What happened, who was affected, and for how long (for readers outside the team)._",
    ]
    sections = [
        ("First paged", _first_paged(f)),
        ("Time at each severity", _severities(f)),
        ("Latency and failures", chart or []),
        ("Affected targets", _targets(f)),
        ("Affected dependent checks", _dependents(f)),
        ("Silences and maintenance", [f"- {s['time']}: {s['text']}" for s in f["silences"]]),
        ("Changes before detection", _changes(f)),
        ("Notes and acknowledgments", _said(f)),
        ("Screenshots", _artifacts(f)),
        ("Timeline (UTC)", _timeline(f)),
    ]
    for title, body in sections:
        if (title == "Screenshots" and not body) or (title == "Latency and failures" and chart is None):
            continue
        lines += ["", f"## {title}", "", *(body or ["(none)"])]
    lines += [
        "",
        "## Root cause",
        "",
        "_The chain of events and conditions that led here: what, not who. Which safeguard could have stopped it?_",
        "",
        "## What went well, what did not",
        "",
        "- ",
        "",
        "## Follow-ups",
        "",
        "- [ ] ",
        "",
    ]
    # every line once, escaped: notes, plugin output and summaries never drive a terminal or add lines
    return "\n".join(printable(line) for line in lines)


def _header(f: Facts) -> list[str]:
    lines = [
        f"# Incident {f['incident']}: {f['summary']}",
        "",
        f"*Post-mortem draft generated by firstwatch. Status: **{f['status']}**.*",
        "",
        "| | |",
        "|---|---|",
        f"| Severity | {f['severity']} (highest: {f['max_severity']}) |",
        f"| Check / target | {f['check']} / {f['target']} |",
        f"| Rule | `{f['rule']}` |",
    ]
    if f["runbook"]:
        lines.append(f"| Runbook | {_link(f['runbook'])} |")
    lines += [
        f"| First failing run | {f['first_failure']} |",
        f"| First error | {f['first_error'] or '-'} |",
        f"| Detected (fired) | {f['detected_at']} ({f['time_to_detect']} after the first failure) |",
    ]
    if f["acknowledged_at"]:
        lines.append(
            f"| Acknowledged | {f['acknowledged_at']} by {f['acknowledged_by']}"
            f" ({f['time_to_acknowledge']} after detection) |"
        )
    else:
        lines.append("| Acknowledged | not acknowledged |")
    if f["resolved_at"]:
        lines.append(f"| Recovered | {f['resolved_at']} ({f['time_to_recover']} after the first failure) |")
    else:
        lines.append("| Recovered | still firing |")
    return lines


def _link(url: str) -> str:
    """A Markdown link for a web address (its parentheses and spaces encoded); anything else as text."""
    if not web_url(url):
        return url.replace("|", "\\|")
    target = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("|", "%7C")
    text = url.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("|", "\\|")
    return f"[{text}]({target})"


def _after(start: str, end: str) -> str:
    return format_duration(max(0.0, parse_iso(end) - parse_iso(start)))


def _first_paged(f: Facts) -> list[str]:
    return [
        f"- {p['sink']}: {p['time']} at {p['severity'] or '?'}"
        + (f" ({p['kind']})" if p["kind"] != "firing" else "")
        + f", {_after(f['detected_at'], p['time'])} after detection"
        for p in f["first_paged"]
    ]


def _severities(f: Facts) -> list[str]:
    lines = [f"- {severity}: {format_duration(seconds)}" for severity, seconds in f["time_at_severity"].items()]
    if lines and not f["resolved_at"]:
        lines.append(f"- (still firing: counted up to the last timeline entry, {f['time_at_severity_until']})")
    steps = [f"{h['time']} {h['severity']} ({h['kind']})" for h in f["severity_history"]]
    if len(steps) > 1:
        lines.append("- Changes: " + " -> ".join(steps))
    return lines


def _targets(f: Facts) -> list[str]:
    lines = []
    for t in f["affected_targets"]:
        down = t["down"] or "?"
        if t["up"] and t["down"]:
            up = f"up {t['up']} (down for {_after(t['down'], t['up'])})"
        else:
            up = "no recovery recorded"
        lines.append(f"- {t['target']}: down {down}, {up}")
    return lines


def _dependents(f: Facts) -> list[str]:
    lines = []
    for d in f["affected_checks"]:
        where = f" ({d['target']})" if d["target"] else ""
        until = f"until {d['until']}: {d['until_text']}" if d["until"] else "no recovery recorded"
        lines.append(f"- {d['check']}{where}: since {d['since']}: {d['text']}; {until}")
    return lines


def _changes(f: Facts) -> list[str]:
    return [
        f"- {c['time']} ({_after(c['time'], f['detected_at'])} before detection)"
        f" {c['author'] or '?'}, {c['check'] or 'all checks'}: {c['text']}"
        for c in f["changes_before_detection"]
    ]


def _said(f: Facts) -> list[str]:
    said = [(n["time"], "NOTE", n["author"], n["text"]) for n in f["notes"]]
    said += [(a["time"], "ACK", a["author"], a["text"]) for a in f["acks"]]
    said.sort(key=lambda s: s[0])
    return [f"- {time} {label} ({who or '?'}): **{text}**" for time, label, who, text in said]


def _artifacts(f: Facts) -> list[str]:
    """One line per screenshot: a link relative to the state directory (and to the status page's
    address, which serves it), then its path on the host when known."""
    lines = []
    for a in f["artifacts"]:
        target = a["link"].replace(" ", "%20").replace("(", "%28").replace(")", "%29")
        text = a["name"].replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        where = f" (`{a['path']}`)" if a["path"] else ""
        lines.append(f"- {a['time']}: [{text}]({target}){where}")
    return lines


def _timeline(f: Facts) -> list[str]:
    lines = []
    for e in f["timeline"]:
        if "sink" in e:  # one sink's deliveries, folded
            lines.append(f"- {e['time']} {e['text']}")
            continue
        label = SHOWN_KINDS.get(e["kind"], e["kind"])
        who = f" ({e['author']})" if e["author"] else ""
        text = f"**{e['text']}**" if e["kind"] in ("note", "ack") else e["text"]
        lines.append(f"- {e['time']} {label}{who}: {text}")
    return lines
