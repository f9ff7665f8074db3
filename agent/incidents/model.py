"""The incident records: an :class:`Incident` as the store keeps it, and a timeline :class:`Entry`.

Frozen dataclasses: a record read from the store is a fact, not a handle to change it (the store
has methods for that). Field names are Python's (``check``), not the SQL columns' (``check_name``).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.events import iso_time


@dataclass(frozen=True)
class Incident:
    """One row of the ``incidents`` table; times are Unix seconds."""

    id: str
    fingerprint: str
    check: str
    target: str
    rule: str
    severity: str
    max_severity: str  # the worst it reached
    summary: str
    first_error: str | None
    started_at: float  # the first failing run
    fired_at: float
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    runbook: str | None = None  # the rule's or the check's runbook URL


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    seq: int
    time: float
    kind: str
    incident: str | None
    fingerprint: str | None
    check: str | None
    target: str | None
    severity: str | None
    text: str
    author: str | None

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form (``firstwatch timeline --format json``, the report's timeline)."""
        return {
            "time": iso_time(self.time),
            "kind": self.kind,
            "incident": self.incident,
            "check": self.check,
            "target": self.target,
            "severity": self.severity,
            "text": self.text,
            "author": self.author,
        }
