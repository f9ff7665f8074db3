"""SLO windows and burn verdicts with an injected clock: the counter against a brute-force
count, all-good runs never firing, half the runs failing firing the fast burn, hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.alerting.rules import Verdict
from agent.alerting.slo import SloConfig
from agent.alerting.slo_windows import BurnRule, SloTracker, WindowCounter, burn_rules
from checks.base import Result


@settings(max_examples=200, deadline=None)
@given(
    span=st.sampled_from([1.0, 6.0, 300.0, 3600.0]),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=200),
    goods=st.lists(st.booleans(), min_size=200, max_size=200),
    later=st.floats(0.0, 4000.0),
)
def test_a_window_counts_its_span_and_at_most_one_slot_more(
    span: float, gaps: list[float], goods: list[bool], later: float
) -> None:
    counter = WindowCounter(span)
    t, runs = 1000.0, []
    for gap, good in zip(gaps, goods, strict=False):
        t += gap
        counter.add(t, int(good))
        runs.append((t, good))
    now = t + later
    got = counter.counts(now)
    exact = [(at, g) for at, g in runs if at > now - span]
    wider = [(at, g) for at, g in runs if at > now - span - counter.width]
    assert len(exact) <= got.runs <= len(wider)
    assert sum(g for _, g in exact) <= got.good <= sum(g for _, g in wider)
    assert 0 <= got.good <= got.runs


SLO = SloConfig.model_validate(
    {
        "objective": "99%",
        "window": "1m",
        "alerts": [
            {"burn": 10, "long": "6s", "short": "1s", "severity": "critical"},
            {"burn": 2, "long": "30s", "short": "6s", "severity": "minor"},
        ],
    }
)


def result(ok: bool, duration: float = 0.01) -> Result:
    return Result(
        check="shop", target="t", type="http", ok=ok, started_at=0.0, duration_s=duration, values={},
        error_kind=None if ok else "status", error=None if ok else "HTTP 503",
    )  # fmt: skip


def tracker(slo: SloConfig = SLO) -> tuple[SloTracker, list[BurnRule]]:
    rules = burn_rules(slo, 0)
    return SloTracker("shop", "t", slo, rules), rules


def run(t: SloTracker, rules: list[BurnRule], oks: list[bool], start: float, every: float) -> list[dict[str, Verdict]]:
    firing: dict[str, bool] = {}
    out = []
    for i, ok in enumerate(oks):
        verdicts = t.observe("shop", result(ok), start + i * every, firing)
        firing = {text: bool(v.holds) for text, v in verdicts.items()}
        out.append(verdicts)
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), every=st.floats(0.01, 5.0))
def test_all_good_runs_never_fire_and_the_budget_stays_whole(n: int, every: float) -> None:
    t, rules = tracker()
    for verdicts in run(t, rules, [True] * n, 0.0, every):
        assert not any(v.holds for v in verdicts.values())
    reading = t.reading(n * every)
    assert reading.budget_remaining in (1.0, None) and reading.sli in (1.0, None)


def test_half_the_runs_failing_fires_the_fast_burn_then_it_resolves() -> None:
    t, rules = tracker()
    fast, slow = (r.text for r in rules)
    assert fast == "error budget burn > 10x over 6s and 1s"
    history = run(t, rules, [i % 2 == 0 for i in range(20)], 0.0, 0.2)
    assert history[1][fast].holds  # the first failure: 50x over both windows
    assert history[1][fast].explanation.startswith("error budget burning 50.0x (6s) and 50.0x (1s); ")
    assert history[-1][fast].holds  # the slow burn burns too, but the critical one covers it: one page
    assert history[-1][slow].holds is False and history[-1][slow].explanation.endswith(
        "(covered by the critical burn alert)"
    )
    reading = t.reading(4.0)
    assert reading.sli == 0.5 and reading.budget_remaining is not None and reading.budget_remaining < 0
    # (3.0, 4.0]: runs at 3.0 (one slot over), 3.2 .. 3.8: 3 of 5 failed; the others: half
    assert reading.burn_rates == {"1s": pytest.approx(60.0), "6s": pytest.approx(50.0), "30s": pytest.approx(50.0)}
    # healthy again: the fast alert resolves once the 1 s window is clean, the long one still burns
    firing = {fast: True, slow: False}
    calm = [t.observe("shop", result(True), 4.0 + i * 0.2, firing) for i in range(8)]
    assert calm[-1][fast].holds is False and "burn down to 0.0x (1s), at or below 10x" in calm[-1][fast].explanation
    # the slow burn is still above 2x over 6 s, but those are the runs the critical page was
    # about: it stays covered for its own short window after the critical one, no second page
    assert calm[-1][slow].holds is False and calm[-1][slow].explanation.endswith("(covered by the critical burn alert)")
    later = t.observe("shop", result(True), 4.0 + 8 * 0.2 + 6.0, {fast: False, slow: False})
    assert later[slow].holds is False and "covered" not in later[slow].explanation  # calm by then


def test_a_slow_run_is_not_good_with_a_latency() -> None:
    slo = SLO.model_copy(update={"latency": 0.5})
    t, _ = tracker(slo)
    t.observe("shop", result(True, 0.4), 0.0, {})
    t.observe("shop", result(True, 0.6), 0.1, {})
    assert (t.reading(0.2).good, t.reading(0.2).runs) == (1, 2)


def test_a_firing_alert_stays_firing_while_its_short_window_has_no_runs() -> None:
    t, rules = tracker()
    fast = rules[0].text
    run(t, rules, [False, False], 0.0, 0.2)
    # the book says it fires; 3 s later a good run: the 1 s window holds only it, so it resolves
    v = t.observe("shop", result(True), 3.0, {fast: True})
    assert v[fast].holds is False
    t2, _ = tracker()
    t2.add(0.0, 0, 5)
    assert t2.counts(10.0)(1.0) == (0, 0)  # nothing in the short window: no runs is no verdict change


def test_one_run_alone_is_judged_by_the_most_severe_burn_it_exceeds() -> None:
    """``firstwatch check`` has no windows: a bad run burns at 1 / (1 - objective)."""
    slo = SloConfig.model_validate({"objective": "99.9%", "window": "28d", "latency": "800ms"})
    critical, major, minor = burn_rules(slo, 0)
    down = [r.evaluate(result(False)) for r in (critical, major, minor)]
    assert [v.holds for v in down] == [True, False, False]  # one page: the others are covered
    assert down[0].explanation == "down (HTTP 503): a run like this burns the budget at 1000x"
    assert down[0].value == pytest.approx(1000.0)
    slow = critical.evaluate(result(True, 0.9))
    assert slow.holds and slow.explanation.startswith("slower than 800ms: ")
    assert [r.evaluate(result(True, 0.1)).holds for r in (critical, major, minor)] == [False, False, False]
    alerts = [
        {"burn": 14.4, "long": "1h", "short": "5m", "severity": "critical"},
        {"burn": 6, "long": "6h", "short": "30m", "severity": "major"},
    ]
    with pytest.raises(ValidationError, match=r"a burn of 14.4x can never be reached: with an objective of 90%"):
        SloConfig.model_validate({"objective": "90%", "window": "1d", "alerts": alerts})  # at most 10x
    lax = SloConfig.model_validate({"objective": "90%", "window": "1d", "alerts": alerts[1:]})
    assert [r.evaluate(result(False)).holds for r in burn_rules(lax, 0)] == [True]


def test_a_young_agent_judges_a_window_over_the_runs_it_should_hold() -> None:
    """30 good runs, then one failure, at one run a second: one failure in the hour's 3,600 runs
    (0.3x), not one in 31 (32x): the first blip after a start pages nobody."""
    slo = SloConfig.model_validate({"objective": "99.9%", "window": "28d"})
    rules = burn_rules(slo, 0)
    t = SloTracker("shop", "t", slo, rules, interval=1.0)
    firing: dict[str, bool] = {}
    for i in range(31):
        verdicts = t.observe("shop", result(i != 30), float(i), firing)
    assert not any(v.holds for v in verdicts.values())
    reading = t.reading(30.0)
    assert (reading.runs, reading.good, reading.sli) == (31, 30, 30 / 31)  # the SLI is over the runs seen
    assert reading.budget_remaining == pytest.approx(1 - 1 / 2419.2)  # one run of 28 days' budget of 2,419
    assert reading.burn_rates["1h"] == pytest.approx(1 / 3600 / 0.001)
    assert reading.burn_rates["5m"] == pytest.approx(1 / 300 / 0.001)  # 3.3x: under 14.4x
