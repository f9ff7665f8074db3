"""The alert state machine of one (check, target, rule): pure, with time passed in.

Prometheus ``for:`` semantics: a rule whose condition holds is *pending* from that run on; it
fires when the condition has held at every run for at least ``for`` (a single good run resets it);
with ``for: 0`` it fires on the first bad run. Once firing, it resolves when the condition has
been false at every run for ``recover_for`` (Prometheus ``keep_firing_for``; 0 resolves on the
first good run). A run with no data (the value was not measured) changes nothing.

The function has no clock, no I/O and no ids: it takes the state, the verdict and ``now``, and
returns the new state and what happened. The caller (``agent.alerting.book``) turns transitions into
events and owns the incident ids. That keeps it table- and property-testable (see
``tests/alerting/test_state.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Phase = Literal["inactive", "pending", "firing"]
Transition = Literal["pending", "firing", "resolved", "reset"]


@dataclass(frozen=True)
class AlertState:
    """Where one alert stands.

    ``since``: when the condition first held in the current streak (the event's ``started_at``);
    ``fired_at``: when it started firing; ``clear_since``: while firing, when the condition
    stopped holding (for ``recover_for``)."""

    phase: Phase = "inactive"
    since: float | None = None
    fired_at: float | None = None
    clear_since: float | None = None


INACTIVE = AlertState()


def step(
    state: AlertState, holds: bool | None, now: float, for_s: float, recover_for_s: float, slack: float = 0.0
) -> tuple[AlertState, Transition | None]:
    """Advance ``state`` by one run's verdict at time ``now``. ``slack`` absorbs scheduling
    jitter: with ``for: 3s`` and runs every second, the run at 2.998 s counts as 3 s."""
    if holds is None:
        return state, None
    if state.phase == "inactive":
        if not holds:
            return state, None
        if for_s <= 0:
            return AlertState("firing", since=now, fired_at=now), "firing"
        return AlertState("pending", since=now), "pending"
    if state.phase == "pending":
        assert state.since is not None
        if not holds:
            return INACTIVE, "reset"
        if now - state.since >= for_s - slack:
            return AlertState("firing", since=state.since, fired_at=now), "firing"
        return state, None
    # firing
    if holds:
        return (replace(state, clear_since=None), None) if state.clear_since is not None else (state, None)
    clear_since = state.clear_since if state.clear_since is not None else now
    if now - clear_since >= recover_for_s - slack:
        return INACTIVE, "resolved"
    return replace(state, clear_since=clear_since), None
