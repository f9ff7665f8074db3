"""The status document: what ``/status`` serves, the status page shows and ``firstwatch status``
prints, typed field by field.

The daemon builds it (``agent.engine.runtime.Runtime.snapshot``); :mod:`agent.web.api` serves it as
JSON (adding ``agent.instance``); :mod:`agent.web.page` renders it. Times are ISO 8601 UTC text,
durations seconds. A document read back from the network is checked only at its top
(:mod:`agent.web.client`); the page reads every field forgivingly, as it would a peer's.

An ``artifact`` (a member's last screenshot, a timeline entry's) is a file name in the agent's
artifacts directory (``STATE_DIR/artifacts``), served at ``/artifacts/NAME``; only names that
:func:`artifact_name` accepts are saved, linked or served.
"""

from __future__ import annotations

import re
from typing import NotRequired, TypedDict

#: An artifact's file name: dot-separated parts of letters, digits, ``_`` and ``-``, ending in
#: ``.png``, at most 200 characters. No ``/``, no ``..``, no leading dot, nothing to encode in a URL.
ARTIFACT_NAME = re.compile(r"(?=.{5,200}\Z)[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.png\Z", re.ASCII)


def artifact_name(name: object) -> str | None:
    """``name`` if it is a valid artifact file name (:data:`ARTIFACT_NAME`), else None."""
    return name if isinstance(name, str) and ARTIFACT_NAME.match(name) else None


class AgentInfo(TypedDict):
    """Which agent answers: its name, version, uptime and labels."""

    name: str
    version: str
    started_at: str
    uptime_s: float
    labels: dict[str, str]
    instance: NotRequired[str]  # a hash of the state directory, added by the HTTP endpoint


class Summary(TypedDict):
    """The counts of the headline; ``worst`` is the worst open severity (None: nothing open)."""

    checks: int
    targets: int
    up: int
    down: int
    open_incidents: int
    worst: str | None


class TimelineItem(TypedDict):
    """One entry of an open incident's timeline (deliveries left out)."""

    time: str
    kind: str
    text: str
    author: str | None
    artifact: str | None  # the screenshot an ``artifact`` entry names


class SeverityBand(TypedDict):
    """A stretch of an incident at one severity (``end`` None: still at it)."""

    start: str
    end: str | None
    severity: str


class IncidentView(TypedDict):
    """An open incident, with the newest 50 entries of its timeline."""

    id: str
    summary: str
    severity: str
    check: str
    target: str
    started_at: str
    fired_at: str
    acked_by: str | None
    acked_at: str | None
    runbook: str | None
    affected: list[str]  # checks failing under it (they depend on its check)
    timeline: list[TimelineItem]
    bands: list[SeverityBand]  # its severity over time, oldest first


class FiringRule(TypedDict):
    """A rule firing on a member (or on its group)."""

    rule: str
    severity: str


class HeldRule(TypedDict):
    """A rule that met its ``for:`` but is not paged: why (a failing parent, a window, a silence)."""

    rule: str
    why: str


class QuietView(TypedDict):
    """The maintenance window or silence a check is in now."""

    kind: str  # maintenance | silence
    name: str  # the window's name or the silence's id
    until: str
    reason: str
    by: str | None


class MemberView(TypedDict):
    """One target of a check and its last result (all None before the first run)."""

    target: str
    up: bool | None
    last_run: str | None
    duration_s: float | None
    error: str | None
    values: dict[str, float]
    units: dict[str, str]  # the units a plugin reported for its values
    firing: list[FiringRule]
    held: list[HeldRule]
    artifact: str | None  # the last run's screenshot (a failing browser run), under /artifacts/


#: Share of ok runs over the last 24 hours, 7 days and 30 days (None: no runs in that span).
UptimeView = TypedDict("UptimeView", {"24h": float | None, "7d": float | None, "30d": float | None})


class DayView(TypedDict):
    """One UTC day of a check's history (all its targets): runs, ok runs and its worst state:
    ``none`` (no runs), ``up`` (every run ok), ``blips`` (failed runs, no incident), or the
    worst severity of an incident of the check open that day."""

    day: str  # YYYY-MM-DD
    runs: int
    ok: int
    state: str


class LatencyPoint(TypedDict):
    """A check's run durations over one stretch of time (all its targets; None: no runs)."""

    start: str
    width_s: int
    p95_s: float | None
    max_s: float | None


class HistoryView(TypedDict):
    """What a check's run history says: uptime, the last 90 days (oldest first, as far back as
    history goes) and its latency over the last 24 hours (oldest first)."""

    uptime: UptimeView
    days: list[DayView]
    latency: list[LatencyPoint]


class SloView(TypedDict):
    """One (check, target)'s service level objective now: what ``firstwatch slo`` prints.
    ``burn_rates`` is keyed by window (``5m``, ``1h``; None: no runs in it); ``firing`` lists
    its burn alerts firing now."""

    check: str
    target: str
    objective: float
    window_s: float
    latency_s: float | None
    runs: int  # over the window
    good: int
    sli: float | None
    budget_remaining: float | None
    burn_rates: dict[str, float | None]
    firing: list[FiringRule]


class CheckView(TypedDict):
    """A check, its type, its interval and its members."""

    name: str
    type: str
    interval_s: float
    depends_on: list[str]
    runbook: str | None
    quiet: QuietView | None  # in a maintenance window or silenced now
    members: list[MemberView]
    history: HistoryView
    slo: list[SloView]  # one per target when the check has an ``slo``, else empty


class Snapshot(TypedDict):
    """The whole document, as ``GET /status`` serves it."""

    agent: AgentInfo
    refresh_s: int  # how often the page reloads itself
    summary: Summary
    incidents: list[IncidentView]  # by severity, worst first, then by when they fired
    checks: list[CheckView]
    slos: list[SloView]  # every check's, in check order (the same records as in ``checks``)
    severities: list[str]  # every severity, the worst first
