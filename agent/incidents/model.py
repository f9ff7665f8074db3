"""The incident records: an :class:`Incident` as the store keeps it, a timeline :class:`Entry`,
and :class:`Opening`, what it takes to open one.

Frozen dataclasses: a record read from the store is a fact, not a handle to change it (the store
has methods for that). Field names are Python's (``check``), not the SQL columns' (``check_name``).
``Opening`` is a protocol, so the alert book's ``agent.alerting.book.NewIncident`` (alerting sits
below this room and cannot import it) is accepted as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


class Opening(Protocol):
    """What a new incident is made of: its id and rule, what it says, when it started and fired.
    Its ``severity`` is also the worst it has reached so far."""

    @property
    def id(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def check(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def first_error(self) -> str | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def fired_at(self) -> float: ...


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
