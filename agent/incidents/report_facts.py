"""The post-mortem's facts: an incident, its timeline and the changes before it, as typed records.

:mod:`agent.incidents.report` renders them (Markdown for people, JSON for tools); this module
only reads. Pure: the same incident and entries give the same facts, whatever the clock says.
Times are ISO 8601 UTC strings, durations seconds. Delivery entries ("firing event sent to
pagerduty", one per delivery) are folded into one timeline line per sink. Screenshots of failing
runs (``artifact`` entries: "screenshot of the failing run: NAME") are listed with their file
under the state directory (``STATE_DIR/artifacts/NAME``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NotRequired, TypedDict

from agent.core.events import iso_time
from agent.core.units import format_duration
from agent.incidents.model import Entry, Incident

SENT = " event sent to "  # a ``delivered`` entry's text: "{event kind} event sent to {sink}"
PAGES = ("firing", "changed", "reminder")  # deliveries that page someone (a resolution does not)
DOWN = ("pending", "firing", "member-firing")  # a target failing (its first run, its alert firing)
UP = ("reset", "resolved", "member-resolved")  # a target recovering
ARTIFACT = "artifact"  # the kind of an entry naming a screenshot the agent saved
ARTIFACTS_DIR = "artifacts"  # where, under the state directory (and under the status page's URL)


class SeverityStep(TypedDict):
    time: str
    severity: str | None
    kind: str


class Band(TypedDict):
    """A stretch of an incident at one severity (``end`` None: still at it); the status page's
    ``agent.web.snapshot.SeverityBand``."""

    start: str
    end: str | None
    severity: str


class Page(TypedDict):
    """The first page a sink delivered: its time and severity (``kind``: firing, unless that was silenced)."""

    sink: str
    time: str
    severity: str | None
    kind: str


class TargetSpan(TypedDict):
    """When a target went down (its first failing run) and came back up (None: not recorded)."""

    target: str
    down: str | None
    up: str | None


class Dependent(TypedDict):
    """A dependent check failing under the incident (not paged): from ``since`` to ``until``."""

    check: str
    target: str | None
    since: str
    until: str | None
    text: str
    until_text: str | None  # how it ended: recovered, or pages on its own


class Silenced(TypedDict):
    time: str
    text: str


class ChangeMarker(TypedDict):
    time: str
    author: str | None
    check: str | None  # None: a change to everything
    text: str


class Said(TypedDict):
    """A note or an acknowledgment."""

    time: str
    author: str | None
    text: str


class Artifact(TypedDict):
    """A screenshot of a run: its file ``name``, relative ``link`` (``artifacts/NAME``: under the
    state directory, and under the agent's status page URL), and its absolute ``path`` (None when
    the report was not told the state directory)."""

    time: str
    name: str
    link: str
    path: str | None


class Delivery(TypedDict):
    kind: str
    time: str
    severity: str | None


class Line(TypedDict):
    """A timeline line: an entry (as ``Entry.to_dict``), or one sink's deliveries folded together
    (kind ``delivered``, with ``sink`` and ``deliveries``)."""

    time: str
    kind: str
    incident: str | None
    check: str | None
    target: str | None
    severity: str | None
    text: str
    author: str | None
    sink: NotRequired[str]
    deliveries: NotRequired[list[Delivery]]


class Facts(TypedDict):
    """Everything the report says (``firstwatch report --format json``)."""

    incident: str
    summary: str
    check: str
    target: str
    rule: str
    severity: str
    max_severity: str
    status: str
    runbook: str | None
    first_failure: str
    first_error: str | None
    detected_at: str
    time_to_detect: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    time_to_acknowledge: str | None
    resolved_at: str | None
    time_to_recover: str | None
    first_paged: list[Page]
    severity_history: list[SeverityStep]
    time_at_severity: dict[str, float]
    time_at_severity_until: str  # recovery, or the last timeline entry while it still fires
    affected_targets: list[TargetSpan]
    affected_checks: list[Dependent]
    silences: list[Silenced]
    changes_before_detection: list[ChangeMarker]
    notes: list[Said]
    acks: list[Said]
    timeline: list[Line]
    artifacts: list[Artifact]


def delivery(entry: Entry) -> tuple[str, str] | None:
    """A ``delivered`` entry's event kind and sink; None for any other entry."""
    if entry.kind != "delivered" or SENT not in entry.text:
        return None
    kind, _, sink = entry.text.partition(SENT)
    return kind, sink


def artifact_text(name: str, failed: bool = True) -> str:
    """The text of the ``artifact`` entry naming the screenshot ``name`` of a (failing) run."""
    return f"screenshot of the {'failing ' if failed else ''}run: {name}"


def artifact_of(entry: Entry) -> str | None:
    """The file name an ``artifact`` entry names (as :func:`artifact_text` wrote it); None for any
    other entry, or a name that is not a plain ``.png`` file name."""
    if entry.kind != ARTIFACT:
        return None
    name = entry.text.rpartition(": ")[2]
    plain = name.endswith(".png") and not name.startswith(".") and ".." not in name and name.isprintable()
    return name if plain and "/" not in name and "\\" not in name else None


def artifacts(entries: Iterable[Entry], state_dir: str | None = None) -> list[Artifact]:
    """The screenshots the entries name, oldest first, each once."""
    found: dict[str, Artifact] = {}
    for e in entries:
        name = artifact_of(e)
        if name is not None and name not in found:
            link = f"{ARTIFACTS_DIR}/{name}"
            path = os.path.join(os.path.abspath(state_dir), ARTIFACTS_DIR, name) if state_dir else None
            found[name] = {"time": iso_time(e.time), "name": name, "link": link, "path": path}
    return list(found.values())


def dependent_checks(entries: Iterable[Entry]) -> set[str]:
    """The dependent checks that failed under the incident (its ``affected`` entries)."""
    return {e.check for e in entries if e.kind == "affected" and e.check}


def first_paged(entries: list[Entry]) -> list[Page]:
    """Per sink, its first delivered page (a firing; a change or reminder when the firing was silenced)."""
    pages: dict[str, Page] = {}
    for e in entries:
        sent = delivery(e)
        if sent is not None and sent[0] in PAGES and sent[1] not in pages:
            pages[sent[1]] = {"sink": sent[1], "time": iso_time(e.time), "severity": e.severity, "kind": sent[0]}
    return list(pages.values())


def severity_end(incident: Incident, entries: list[Entry]) -> float:
    """Where the time at each severity stops: recovery, else the last entry (it still fires)."""
    if incident.resolved_at is not None:
        return incident.resolved_at
    return max([incident.fired_at, *(e.time for e in entries)])


def severity_steps(incident: Incident, entries: list[Entry]) -> list[tuple[float, float, str]]:
    """The incident's severity over time as ``(start, stop, severity)``, oldest first: from its
    firing and changes, each up to the next one, the last up to :func:`severity_end`."""
    steps = [
        (e.time, e.severity)
        for e in entries
        if e.kind in ("firing", "changed") and e.incident == incident.id and e.severity
    ] or [(incident.fired_at, incident.severity)]
    end = severity_end(incident, entries)
    out = []
    for i, (start, severity) in enumerate(steps):
        stop = min(steps[i + 1][0] if i + 1 < len(steps) else end, end)
        if severity is not None:
            out.append((start, max(start, stop), severity))
    return out


def time_at_severity(incident: Incident, entries: list[Entry]) -> dict[str, float]:
    """Seconds spent at each severity (in the order first reached), from firing and changes."""
    spent: dict[str, float] = {}
    for start, stop, severity in severity_steps(incident, entries):
        spent[severity] = spent.get(severity, 0.0) + stop - start
    return {severity: round(seconds, 3) for severity, seconds in spent.items()}


def severity_bands(incident: Incident, entries: list[Entry]) -> list[Band]:
    """The stretches of the incident at one severity (:func:`severity_steps`, a change to the same
    severity folded in), oldest first; the last one's ``end`` is None while it is still open."""
    bands: list[Band] = []
    for start, stop, severity in severity_steps(incident, entries):
        if bands and bands[-1]["severity"] == severity:
            bands[-1]["end"] = iso_time(stop)
        else:
            bands.append({"start": iso_time(start), "end": iso_time(stop), "severity": severity})
    if bands and incident.resolved_at is None:
        bands[-1]["end"] = None
    return bands


def affected_targets(incident: Incident, entries: list[Entry]) -> list[TargetSpan]:
    """Each target that failed (a group's members; else the incident's own), first down, last up."""
    mine = [e for e in entries if e.check == incident.check and e.target and e.kind in (*DOWN, *UP)]
    members = {
        e.target for e in mine if e.target and e.kind not in ("firing", "resolved") and e.target != incident.target
    }
    order = sorted(members) if members else [incident.target]
    spans: list[TargetSpan] = []
    for target in order:
        down = [e.time for e in mine if e.target == target and e.kind in DOWN]
        up = [e.time for e in mine if e.target == target and e.kind in UP]
        first_down = min(down) if down else incident.started_at
        last_up = max(up) if up else None
        if last_up is not None and down and last_up < max(down):
            last_up = None  # down again after its last recovery
        if last_up is None and not members and incident.resolved_at is not None:
            last_up = incident.resolved_at
        spans.append({"target": target, "down": iso_time(first_down), "up": _iso(last_up)})
    return spans


def affected_checks(entries: list[Entry]) -> list[Dependent]:
    """The dependents that failed under the incident, each ``affected`` closed by its ``unaffected``."""
    found: list[Dependent] = []
    for e in entries:
        if not e.check or e.kind not in ("affected", "unaffected"):
            continue
        open_ = next(
            (d for d in found if d["until"] is None and d["check"] == e.check and _same(d["target"], e.target)), None
        )
        if e.kind == "affected" and open_ is None:
            found.append(
                {"check": e.check, "target": e.target, "since": iso_time(e.time), "until": None, "text": e.text,
                 "until_text": None}
            )  # fmt: skip
        elif e.kind == "unaffected" and open_ is not None:
            open_["until"], open_["until_text"] = iso_time(e.time), e.text
    return found


def timeline(entries: list[Entry]) -> list[Line]:
    """Every entry, but one line per sink for its deliveries (where the first one was)."""
    lines: list[Line] = []
    folded: dict[str, tuple[Line, list[Delivery]]] = {}
    for e in entries:
        sent = delivery(e)
        if sent is None:
            lines.append(_line(e))
            continue
        kind, sink = sent
        if sink not in folded:
            done: list[Delivery] = []
            folded[sink] = ({**_line(e), "sink": sink, "deliveries": done}, done)
            lines.append(folded[sink][0])
        line, done = folded[sink]
        done.append({"kind": kind, "time": iso_time(e.time), "severity": e.severity})
        shown = ", ".join(f"{_shown(d)} {_clock(d['time'], line['time'][:10])}" for d in done)
        line["text"] = f"sent to {sink}: {shown}"
    return lines


def facts(incident: Incident, entries: list[Entry], changes: list[Entry], state_dir: str | None = None) -> Facts:
    """Everything the report says, as data. ``changes`` are the change markers before detection
    that apply (:func:`agent.incidents.report.changes_before` picks them); ``state_dir`` (where
    the agent keeps its state) gives each screenshot its absolute path."""
    history: list[SeverityStep] = [
        {"time": iso_time(e.time), "severity": e.severity, "kind": e.kind}
        for e in entries
        if e.kind in ("firing", "changed") and e.incident == incident.id
    ]
    status = "resolved" if incident.resolved_at else "acknowledged" if incident.acked_at else "firing"
    return {
        "incident": incident.id,
        "summary": incident.summary,
        "check": incident.check,
        "target": incident.target,
        "rule": incident.rule,
        "severity": incident.severity,
        "max_severity": incident.max_severity,
        "status": status,
        "runbook": incident.runbook,
        "first_failure": iso_time(incident.started_at),
        "first_error": incident.first_error,
        "detected_at": iso_time(incident.fired_at),
        "time_to_detect": _since(incident.started_at, incident.fired_at),
        "acknowledged_at": _iso(incident.acked_at),
        "acknowledged_by": incident.acked_by,
        "time_to_acknowledge": _since(incident.fired_at, incident.acked_at),
        "resolved_at": _iso(incident.resolved_at),
        "time_to_recover": _since(incident.started_at, incident.resolved_at),
        "first_paged": first_paged(entries),
        "severity_history": history,
        "time_at_severity": time_at_severity(incident, entries),
        "time_at_severity_until": iso_time(severity_end(incident, entries)),
        "affected_targets": affected_targets(incident, entries),
        "affected_checks": affected_checks(entries),
        "silences": [{"time": iso_time(e.time), "text": e.text} for e in entries if e.kind == "silenced"],
        "changes_before_detection": [
            {"time": iso_time(e.time), "author": e.author, "check": e.check, "text": e.text} for e in changes
        ],
        "notes": _said(entries, "note"),
        "acks": _said(entries, "ack"),
        "timeline": timeline(entries),
        "artifacts": artifacts(entries, state_dir),
    }


def _said(entries: list[Entry], kind: str) -> list[Said]:
    return [{"time": iso_time(e.time), "author": e.author, "text": e.text} for e in entries if e.kind == kind]


def _line(e: Entry) -> Line:
    return {
        "time": iso_time(e.time), "kind": e.kind, "incident": e.incident, "check": e.check, "target": e.target,
        "severity": e.severity, "text": e.text, "author": e.author,
    }  # fmt: skip


def _shown(d: Delivery) -> str:
    return f"changed to {d['severity']}" if d["kind"] == "changed" and d["severity"] else d["kind"]


def _clock(iso: str, day: str) -> str:
    """``02:35:01``, or ``2026-11-25 02:35:01`` on another day than ``day``."""
    clock = iso[11:19]
    return clock if iso.startswith(day) else f"{iso[:10]} {clock}"


def _same(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def _iso(ts: float | None) -> str | None:
    return iso_time(ts) if ts is not None else None


def _since(a: float | None, b: float | None) -> str | None:
    return format_duration(max(0.0, b - a)) if a is not None and b is not None else None
