"""The alert state machine: table-driven cases and hypothesis invariants, time passed in."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.state import INACTIVE, AlertState, step


def run(verdicts: list[tuple[float, bool | None]], for_s: float, recover_for_s: float = 0.0) -> list[tuple[float, str]]:
    state, out = INACTIVE, []
    for now, holds in verdicts:
        state, tr = step(state, holds, now, for_s, recover_for_s)
        if tr in ("firing", "resolved"):
            out.append((now, tr))
    return out


@pytest.mark.parametrize(
    ("verdicts", "for_s", "recover_for_s", "expected"),
    [
        # for: 0 fires on the first bad run and resolves on the first good one
        ([(0, True), (10, False)], 0, 0, [(0, "firing"), (10, "resolved")]),
        # for: 60 with 30 s runs: pending at 0 and 30, fires at 60 (Prometheus semantics)
        ([(0, True), (30, True), (60, True), (90, False)], 60, 0, [(60, "firing"), (90, "resolved")]),
        # one good run resets the pending timer
        ([(0, True), (30, False), (60, True), (90, True)], 60, 0, []),
        ([(0, True), (30, False), (60, True), (90, True), (120, True)], 60, 0, [(120, "firing")]),
        # no data neither advances nor resets
        ([(0, True), (30, None), (60, True)], 60, 0, [(60, "firing")]),
        ([(0, True), (30, None), (60, False)], 0, 0, [(0, "firing"), (60, "resolved")]),
        # recover_for keeps firing until false for that long; a bad run restarts recovery
        (
            [(0, True), (10, False), (20, False), (30, True), (40, False), (60, False)],
            0,
            20,
            [(0, "firing"), (60, "resolved")],
        ),
        # a second incident after resolution
        ([(0, True), (10, False), (20, True)], 0, 0, [(0, "firing"), (10, "resolved"), (20, "firing")]),
    ],
)
def test_transitions(
    verdicts: list[tuple[float, bool | None]], for_s: float, recover_for_s: float, expected: list[tuple[float, str]]
) -> None:
    assert run(verdicts, for_s, recover_for_s) == expected


def test_started_at_is_when_the_condition_first_held() -> None:
    s, _ = step(INACTIVE, True, 100.0, 60, 0)
    s, _ = step(s, True, 130.0, 60, 0)
    s, tr = step(s, True, 160.0, 60, 0)
    assert tr == "firing"
    assert s == AlertState("firing", since=100.0, fired_at=160.0)


runs = st.lists(
    st.tuples(st.floats(min_value=0.01, max_value=120, allow_nan=False), st.sampled_from([True, False, None])),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    runs=runs,
    for_s=st.sampled_from([0.0, 5.0, 30.0, 60.0, 300.0]),
    recover_for_s=st.sampled_from([0.0, 10.0, 60.0]),
)
def test_invariants(runs: list[tuple[float, bool | None]], for_s: float, recover_for_s: float) -> None:
    """No firing unless the condition held at every run with data for at least ``for``; firings
    and resolutions alternate (each firing followed by at most one resolution); no resolution
    unless the condition was false at every run with data for ``recover_for``."""
    now, state = 0.0, INACTIVE
    history: list[tuple[float, bool]] = []  # (time, holds) of runs with data
    transitions: list[str] = []
    for gap, holds in runs:
        now += gap
        state, tr = step(state, holds, now, for_s, recover_for_s)
        if holds is not None:
            history.append((now, holds))
        if tr == "firing":
            # the streak of true runs ending now covers at least for_s
            streak_start = now
            for t, h in reversed(history):
                if not h:
                    break
                streak_start = t
            assert now - streak_start >= for_s
            assert state.since == streak_start
        if tr == "resolved":
            clear_start = now
            for t, h in reversed(history):
                if h:
                    break
                clear_start = t
            assert now - clear_start >= recover_for_s
        if tr in ("firing", "resolved"):
            transitions.append(tr)
        assert (state.phase == "firing") == (bool(transitions) and transitions[-1] == "firing")
    for a, b in itertools.pairwise(transitions):
        assert a != b


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.01, max_value=100, allow_nan=False), min_size=1, max_size=40))
def test_a_condition_that_always_holds_fires_once_exactly_when_for_has_passed(gaps: list[float]) -> None:
    now, state, fired = 0.0, INACTIVE, []
    start = None
    for gap in gaps:
        now += gap
        start = now if start is None else start
        state, tr = step(state, True, now, 60.0, 0.0)
        if tr == "firing":
            fired.append(now)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    expected = [t for t in times if start is not None and t - start >= 60.0][:1]
    assert fired == pytest.approx(expected)


def test_scheduling_jitter_does_not_cost_an_extra_interval() -> None:
    runs = [(0.003, True), (1.001, True), (2.0, True), (2.999, True)]  # for: 3s, runs every second
    assert run(runs, 3.0) == []  # without slack the run at 2.999 s is 4 ms short
    state = INACTIVE
    fired = []
    for now, holds in runs:
        state, tr = step(state, holds, now, 3.0, 0.0, slack=0.1)
        fired += [now] if tr == "firing" else []
    assert fired == [2.999]
