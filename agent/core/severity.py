"""The four triage levels of the seed's playbook, highest first, and how to compare them."""

from __future__ import annotations

from typing import Literal

Severity = Literal["critical", "major", "medium", "minor"]

SEVERITIES: tuple[Severity, ...] = ("critical", "major", "medium", "minor")
_RANK: dict[str, int] = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}


def rank(severity: str | None) -> int:
    """A number that orders severities: critical 4 > major 3 > medium 2 > minor 1 > none 0."""
    return _RANK.get(severity or "", 0)


def worst(severities: list[str | None]) -> str | None:
    """The highest severity in ``severities`` (None if empty or all None)."""
    best: str | None = None
    for s in severities:
        if rank(s) > rank(best):
            best = s
    return best
