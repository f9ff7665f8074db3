"""Blast radius: the severity of a group (a check with ``targets:`` and ``impact:``) from the share
of its members failing. Pure, so the daemon (``agent.alerting.book``) and ``firstwatch check``
(``agent.engine.oneshot``) judge a group the same way.

The group's severity is the highest of the rule's own severity and every ``impact`` level whose
share is reached (``failing / members >= share``, with a little slack for shares such as 1/3).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.alerting.policy import ImpactLevel
from agent.core.severity import worst

_SLACK = 1e-9  # 0.33 of 3 members, 1/3 written as 0.333...: a share reached is reached


def reached(impact: Sequence[ImpactLevel] | None, failing: int, members: int) -> list[str]:
    """The severities of the ``impact`` levels whose share ``failing`` of ``members`` reaches."""
    if members <= 0:
        return []
    return [lvl.severity for lvl in impact or () if failing / members >= lvl.share - _SLACK]


def group_severity(rule_severity: str, impact: Sequence[ImpactLevel] | None, failing: int, members: int) -> str | None:
    """The group's severity with ``failing`` of ``members`` failing the rule; None when none fails."""
    if failing <= 0:
        return None
    return worst([rule_severity, *reached(impact, failing, members)])
