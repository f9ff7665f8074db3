"""Quiet time: silences (made from the CLI, kept in the state database) and what the book asks.

A :class:`Silence` says "do not page for these checks until then, because". Maintenance windows
(``agent.alerting.windows``) are the planned kind. Both only keep firings from being delivered:
checks still run and their state is kept. The book asks a :data:`QuietFn` whether a check is
quiet at a wall time, and gets the :class:`Quiet` that applies (which window or silence, until
when, why, by whom) or None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.core.events import iso_time


def selects(
    checks: frozenset[str] | None, labels: Mapping[str, str] | None, check: str, check_labels: Mapping[str, str]
) -> bool:
    """Whether a selector (check names and/or labels, as windows and silences have) matches a
    check: by name when names are given, by every label when labels are given; both when both."""
    if checks is None and not labels:
        return False  # selects nothing, rather than everything
    if checks is not None and check not in checks:
        return False
    return all(check_labels.get(k) == v for k, v in (labels or {}).items())


@dataclass(frozen=True)
class Quiet:
    """Why a check is not paged for now."""

    kind: Literal["maintenance", "silence"]
    name: str  # the window's name or the silence's id
    until: float  # wall time it ends
    reason: str  # the silence's reason; for a window, its name
    by: str | None = None  # who made the silence

    def describe(self) -> str:
        """``silenced by sam until 2026-12-02T14:15:00.000Z (deploy 1.5.0)`` or ``in maintenance
        window sunday-patching until ...``."""
        until = iso_time(self.until)
        if self.kind == "maintenance":
            return f"in maintenance window {self.name} until {until}"
        who = f" by {self.by}" if self.by else ""
        return f"silenced{who} until {until} ({self.reason}; silence {self.name})"


@dataclass(frozen=True)
class Silence:
    """One silence: which checks (by name and/or labels), from when until when, why, by whom."""

    id: str
    checks: frozenset[str] | None
    labels: Mapping[str, str] | None
    starts: float
    ends: float
    reason: str
    by: str
    created: float

    def matches(self, check: str, check_labels: Mapping[str, str]) -> bool:
        return selects(self.checks, self.labels, check, check_labels)

    def active(self, wall: float) -> bool:
        return self.starts <= wall < self.ends

    def quiet(self) -> Quiet:
        return Quiet("silence", self.id, self.ends, self.reason, self.by)


# (check name, its labels, wall time) -> what keeps it quiet, or None
QuietFn = Callable[[str, Mapping[str, str], float], "Quiet | None"]


def never_quiet(check: str, labels: Mapping[str, str], wall: float) -> Quiet | None:
    """The default: nothing is ever silenced (tests, one-shot tools)."""
    return None
