"""The event: one JSON object other tools consume (docs/contract.md), and how it is written out.

Field names and kinds are contract. ``id`` is made once, when the event is created, so every
redelivery carries the same one (the idempotency key); ``fingerprint`` is stable per
agent+check+target+rule; ``incident`` is shared by every event of one incident.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["firing", "resolved", "changed", "reminder", "agent"]
KINDS: tuple[Kind, ...] = ("firing", "resolved", "changed", "reminder", "agent")


def iso_time(ts: float) -> str:
    """``2026-11-24T02:35:00.123Z`` (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_iso(text: str) -> float:
    """``2026-11-24T02:35:00.123Z`` -> epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fingerprint(agent: str, check: str, target: str, rule: str) -> str:
    """Stable identity of one alert: the same agent, check, target and rule give the same one."""
    return hashlib.sha256(f"{agent}\x1f{check}\x1f{target}\x1f{rule}".encode()).hexdigest()[:16]


def new_event_id() -> str:
    """An event's ``id``: made once, carried by every redelivery (the idempotency key)."""
    return str(uuid.uuid4())


def new_incident_id() -> str:
    """A short id people can type: ``firstwatch ack 3f9c2a7b1d04``."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Event:
    """One event (see the module docstring). ``time`` and ``started_at`` are epoch seconds here
    and ISO 8601 strings on the wire."""

    kind: Kind
    severity: str
    summary: str
    agent: str
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=new_event_id)
    incident: str | None = None
    fingerprint: str | None = None
    check: str | None = None
    target: str | None = None
    type: str | None = None
    rule: str | None = None
    value: float | None = None
    started_at: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None  # the rule's runbook, else the check's
    affected: list[str] = field(default_factory=list)  # checks failing under this incident (depends_on)
    members: list[str] | None = None  # a group's failing members (absent on the wire otherwise)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "time": iso_time(self.time),
            "kind": self.kind,
            "severity": self.severity,
            "incident": self.incident,
            "fingerprint": self.fingerprint,
            "check": self.check,
            "target": self.target,
            "type": self.type,
            "rule": self.rule,
            "value": self.value,
            "summary": self.summary,
            "started_at": iso_time(self.started_at) if self.started_at is not None else None,
            "agent": self.agent,
            "labels": dict(self.labels),
            "runbook": self.runbook,
            "affected": list(self.affected),
        }
        if self.members is not None:
            d["members"] = list(self.members)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """The inverse of :meth:`to_dict` (the outbox stores events as JSON)."""
        return cls(
            kind=d["kind"],
            severity=d["severity"],
            summary=d["summary"],
            agent=d["agent"],
            time=parse_iso(d["time"]),
            id=d["id"],
            incident=d.get("incident"),
            fingerprint=d.get("fingerprint"),
            check=d.get("check"),
            target=d.get("target"),
            type=d.get("type"),
            rule=d.get("rule"),
            value=d.get("value"),
            started_at=parse_iso(d["started_at"]) if d.get("started_at") else None,
            labels=dict(d.get("labels") or {}),
            runbook=d.get("runbook"),
            affected=list(d.get("affected") or []),
            members=list(d["members"]) if d.get("members") is not None else None,
        )

    def to_json(self) -> str:
        """One line of JSON, keys in contract order."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
