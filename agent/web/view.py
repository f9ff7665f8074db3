"""Reading a status snapshot for people: type-checked accessors (a peer's answer may be odd),
the order incidents and checks are shown in, the headline and counts, and value formats. Shared
by the HTML page (``agent.web.page``) and the text tables (``agent.web.text``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape

from agent.core.safe_text import web_url
from agent.core.severity import SEVERITIES, rank
from agent.core.units import format_duration, format_value
from agent.web.snapshot import Summary


def as_map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def as_text(value: object, default: str = "") -> str:
    return default if value is None else str(value)


def esc(value: object, default: str = "") -> str:
    """HTML-escaped text (quotes too, so it is safe inside attributes)."""
    return escape(as_text(value, default), quote=True)


def link(url: object, text: str) -> str:
    """A link to ``url`` when it is an http(s) URL (a runbook), else the URL as escaped text:
    a ``javascript:`` runbook never becomes a link."""
    target = as_text(url)
    if web_url(target) and not any(c.isspace() for c in target):
        return f'<a href="{esc(target)}" rel="noopener noreferrer">{esc(text)}</a>'
    return esc(target)


def quiet_text(quiet: Mapping[str, object]) -> str:
    """``in maintenance window sunday-patching until ...`` / ``silenced by sam until ...: why``."""
    until = fmt_time(quiet.get("until"))
    if quiet.get("kind") == "maintenance":
        return f"in maintenance window {as_text(quiet.get('name'), '?')} until {until}"
    by = f" by {as_text(quiet.get('by'))}" if quiet.get("by") else ""
    return f"silenced{by} until {until}: {as_text(quiet.get('reason'))} (silence {as_text(quiet.get('name'), '?')})"


def as_num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_time(value: object) -> datetime | None:
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
    dt = parse_time(value)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else as_text(value, "-")


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
    d = as_num(value)
    if d is None:
        return "-"
    return format_duration(d)


def fmt_value(value: object, unit: str | None = None) -> str:
    """A value in its unit, as ``firstwatch check`` and the log show it (:mod:`agent.core.units`)."""
    v = as_num(value)
    if v is None:
        return as_text(value, "-")
    return format_value(v, unit)


def fmt_percent(fraction: object, none: str = "no data") -> str:
    """A share as a percent for humans: ``100%``, ``99.95%``, ``97.3%``, ``-12%``; ``none`` when it
    is not a number. Rounded down (two decimals from 99%, else one), so 99.999% never shows as 100%."""
    f = as_num(fraction)
    if f is None:
        return none
    p = f * 100
    if p == 100:
        return "100%"
    digits = 2 if 99 <= p < 100 else 1 if 0 <= p < 99 else 0
    shown = math.floor(p * 10**digits) / 10**digits
    text = f"{shown:.{digits}f}"
    return (text.rstrip("0").rstrip(".") if digits else text) + "%"


def value_units(check_type: object, member: Mapping[str, object]) -> Callable[[str], str | None]:
    """The unit of each value of a member: the member's ``units`` (a plugin's perfdata) if the
    snapshot has them, else what its check type declares."""
    from checks import CHECKS  # the daemon has loaded them already
    from checks.base import find_value

    cls = CHECKS.get(check_type) if isinstance(check_type, str) else None
    reported = as_map(member.get("units"))

    def unit(name: str) -> str | None:
        if isinstance(reported.get(name), str):
            return str(reported[name])
        spec = find_value(cls.VALUES, name) if cls is not None else None
        return spec.unit if spec is not None else None

    return unit


def time_html(value: object, now: float) -> str:
    dt = parse_time(value)
    if dt is None:
        return f'<span class="mono">{esc(value, "-")}</span>'
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    ago = now - dt.timestamp()
    rel = f' <span class="ago">({fmt_span(ago)} ago)</span>' if ago >= 0 else ""
    return f'<time datetime="{stamp}">{stamp}</time>{rel}'


def sev_rank(severity: object) -> int:
    return rank(severity) if isinstance(severity, str) else 0


def sev_class(severity: object) -> str:
    return f"sev-{severity}" if severity in SEVERITIES else "sev-none"


def badge(severity: object) -> str:
    return f'<span class="badge {sev_class(severity)}">{esc(severity, "unknown")}</span>'


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- the state of things, shared by the HTML and the text views --


def incidents_in_order(snapshot: Mapping[str, object]) -> list[Mapping[str, object]]:
    """Open incidents, critical first, then the oldest first (the longest-running problem)."""
    incidents = [as_map(i) for i in as_list(snapshot.get("incidents"))]

    def key(inc: Mapping[str, object]) -> tuple[int, float, str]:
        started = parse_time(inc.get("started_at")) or parse_time(inc.get("fired_at"))
        return (-sev_rank(inc.get("severity")), started.timestamp() if started else math.inf, as_text(inc.get("id")))

    return sorted(incidents, key=key)


def member_state(member: Mapping[str, object]) -> str:
    if as_list(member.get("firing")) or member.get("up") is False:
        return "failing"
    return "ok" if member.get("up") is True else "unknown"


def check_state(check: Mapping[str, object]) -> str:
    """``failing`` (a member is down or a rule fires), ``unknown`` (no result yet) or ``ok``."""
    states = {member_state(as_map(m)) for m in as_list(check.get("members"))}
    for state in ("failing", "unknown"):
        if state in states:
            return state
    return "ok" if states else "unknown"


def check_worst(check: Mapping[str, object]) -> int:
    return max(
        (
            sev_rank(as_map(f).get("severity"))
            for m in as_list(check.get("members"))
            for f in as_list(as_map(m).get("firing"))
        ),
        default=0,
    )


GROUPS = (("failing", "Failing"), ("unknown", "No result yet"), ("ok", "OK"))


def checks_by_state(snapshot: Mapping[str, object]) -> list[tuple[str, str, list[Mapping[str, object]]]]:
    """``[(state, title, checks)]`` in display order; within a group the worst firing rule
    first, then by name."""
    checks = [as_map(c) for c in as_list(snapshot.get("checks"))]
    out = []
    for state, title in GROUPS:
        group = [c for c in checks if check_state(c) == state]
        group.sort(key=lambda c: (-check_worst(c), as_text(c.get("name"))))
        if group:
            out.append((state, title, group))
    return out


class Counts(Summary):
    """The headline's numbers: the snapshot's ``summary``, completed, and the open incidents by
    severity (worst first, only those with any)."""

    by_severity: dict[str, int]


def summary_of(snapshot: Mapping[str, object]) -> Counts:
    """``snapshot["summary"]``, with whatever is missing counted from the rest."""
    given = as_map(snapshot.get("summary"))
    checks = [as_map(c) for c in as_list(snapshot.get("checks"))]
    members = [as_map(m) for c in checks for m in as_list(c.get("members"))]
    incidents = [as_map(i) for i in as_list(snapshot.get("incidents"))]

    def count(key: str, counted: int) -> int:
        value = given.get(key)
        return value if isinstance(value, int) else counted

    worst = given.get("worst")
    if worst not in SEVERITIES:
        worst = max((i.get("severity") for i in incidents), key=sev_rank, default=None)
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
    parts = [plural(int(summary["open_incidents"]), "open incident")]
    by_sev = summary["by_severity"]
    if by_sev:
        parts[0] += " (" + ", ".join(f"{n} {sev}" for sev, n in by_sev.items()) + ")"
    targets, down = int(summary["targets"]), int(summary["down"])
    parts.append(
        f"{down} of {targets} targets down" if down else f"all {targets} targets up" if targets else "no targets"
    )
    parts.append(plural(int(summary["checks"]), "check"))
    return " · ".join(parts)


# -- HTML --
