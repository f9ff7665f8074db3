"""SLOs: the ``slo`` key through the config loader (errors at line:col), the error-budget
arithmetic against the SRE workbook's worked examples, and the multiwindow burn-rate judgement
as a pure function (counts and time passed in), with hypothesis properties."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.alerting.slo import (
    CALM,
    DEFAULT_BURN_ALERTS,
    BurnAlert,
    BurnState,
    Counts,
    SloConfig,
    budget_remaining,
    burn_rate,
    is_good,
    judge_slo,
    sli,
    span,
    step_burn,
)
from agent.config.load import parse_config
from agent.core.errors import ConfigError

DAY = 86400.0
HOUR = 3600.0


def slo_of(block: str) -> SloConfig | None:
    text = "checks:\n  - name: shop-home\n    type: http\n    url: https://shop.example.com/\n" + block
    return parse_config(text, "c.yaml", env={}).checks[0].policy.slo


def errors_of(block: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        slo_of(block)
    return [str(i) for i in info.value.issues]


# --- config


def test_the_contract_example_loads_with_the_workbook_defaults() -> None:
    slo = slo_of("    slo:\n      objective: 99.9%\n      window: 28d\n      latency: 800ms\n")
    assert slo == SloConfig(objective=0.999, window="28d", latency="800ms", alerts=list(DEFAULT_BURN_ALERTS))
    assert slo.objective == 0.999  # exactly the float 0.999, not 99.9 / 100
    assert [(a.burn, a.long, a.short, a.severity) for a in slo.alerts] == [
        (14.4, HOUR, 300.0, "critical"),
        (6.0, 6 * HOUR, 1800.0, "major"),
        (1.0, 3 * DAY, 6 * HOUR, "minor"),
    ]
    assert slo.windows() == (300.0, 1800.0, HOUR, 6 * HOUR, 3 * DAY, 28 * DAY)


def test_no_slo_key_is_none_and_a_share_and_seconds_windows_are_accepted() -> None:
    assert slo_of("") is None
    block = (
        "    slo:\n      objective: 0.99\n      window: 60s\n"
        "      alerts: [{burn: 2, long: 30s, short: 5s, severity: major}]\n"
    )
    slo = slo_of(block)
    assert slo is not None
    assert (slo.objective, slo.window, slo.latency) == (0.99, 60.0, None)
    assert slo.alerts == [BurnAlert.model_validate({"burn": 2, "long": "30s", "short": "5s", "severity": "major"})]


def test_slo_may_come_from_defaults() -> None:
    text = "defaults:\n  slo: {objective: 99%, window: 7d}\nchecks:\n  - {name: a, type: tcp, target: 'h:1'}\n"
    slo = parse_config(text, "c.yaml", env={}).checks[0].policy.slo
    assert slo is not None
    assert (slo.objective, slo.window) == (0.99, 7 * DAY)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "    slo:\n      objective: 100%\n      window: 28d\n",
            ["c.yaml:6:18: checks[0].slo.objective: an objective of 100% leaves no error budget"],
        ),
        (
            "    slo:\n      objective: 1\n      window: 28d\n",
            ["c.yaml:6:18: checks[0].slo.objective: an objective of 100% leaves no error budget"],
        ),
        (
            "    slo:\n      objective: 99.9\n      window: 28d\n",
            [
                "c.yaml:6:18: checks[0].slo.objective: invalid objective 99.9: a share is below 1; "
                "write 0.999 or a percentage such as 99.9%"
            ],
        ),
        (
            "    slo:\n      objective: 0%\n      window: 28d\n",
            [
                "c.yaml:6:18: checks[0].slo.objective: an objective must be above 0%: "
                "write a percentage such as 99.9% or a share such as 0.999"
            ],
        ),
        (
            "    slo:\n      objective: lots\n      window: 0s\n      latncy: 1s\n",
            [
                "c.yaml:6:18: checks[0].slo.objective: invalid objective 'lots': "
                "write a percentage such as 99.9% or a share such as 0.999",
                "c.yaml:7:15: checks[0].slo.window: must be greater than 0",
                "c.yaml:8:7: checks[0].slo.latncy: unknown option; did you mean 'latency'?",
            ],
        ),
        (
            "    slo: {window: 28d}\n",
            ["c.yaml:5:10: checks[0].slo: missing required option 'objective'"],
        ),
        (
            "    slo:\n      objective: 99.9%\n      window: 1d\n",
            [
                "c.yaml:7:15: checks[0].slo.window: the window (1d) is shorter than the default alerts' long "
                "window (3d): make it at least 3d or write slo alerts that fit"
            ],
        ),
        (
            "    slo:\n      objective: 0.99\n      window: 2d\n      alerts:\n"
            "        - {burn: 0, long: 1h, short: 5m, severity: critical}\n"
            "        - {burn: 2, long: 5m, short: 1h, severity: loud}\n",
            [
                "c.yaml:9:18: checks[0].slo.alerts[0].burn: must be greater than 0",
                "c.yaml:10:38: checks[0].slo.alerts[1].short: the short window (1h) must be shorter than the "
                "long window (5m)",
                "c.yaml:10:52: checks[0].slo.alerts[1].severity: invalid value 'loud' "
                "(expected one of: critical, major, medium, minor)",
            ],
        ),
        (
            "    slo:\n      objective: 0.99\n      window: 2d\n      alerts:\n"
            "        - {burn: 2, long: 1h, short: 5m, severity: major}\n"
            "        - {burn: 1, long: 3d, short: 1h, severity: minor}\n",
            ["c.yaml:10:27: checks[0].slo.alerts[1].long: the long window (3d) must not exceed the SLO window (2d)"],
        ),
        (
            "    slo:\n      objective: 0.99\n      window: 2d\n"
            "      alerts: [{burn: 2, short: 5m, severity: major}]\n",
            ["c.yaml:8:16: checks[0].slo.alerts[0]: missing required option 'long'"],
        ),
    ],
)
def test_config_errors_are_reported_at_line_and_column(block: str, expected: list[str]) -> None:
    assert errors_of(block) == expected


# --- arithmetic: the SRE workbook's worked examples (99.9% over 30 days)

PER_HOUR = 2500  # runs an hour; 30 days: 1,800,000 runs, a budget of 1,800 bad runs
MONTH = 30 * 24 * PER_HOUR


@pytest.mark.parametrize(
    ("burn", "hours", "consumed"),
    [(14.4, 1, 0.02), (6, 6, 0.05), (1, 72, 0.10)],
)
def test_workbook_burn_rates_consume_their_share_of_the_budget(burn: float, hours: int, consumed: float) -> None:
    runs = hours * PER_HOUR
    bad = round(runs * burn * 0.001)  # 36, 90, 180: every other run of the month is good
    assert burn_rate(runs - bad, runs, 0.999) == pytest.approx(burn)
    month_sli = sli(MONTH - bad, MONTH)
    assert month_sli is not None
    assert budget_remaining(month_sli, 0.999) == pytest.approx(1 - consumed)
    assert burn * hours * HOUR / (30 * DAY) == pytest.approx(consumed)  # the workbook's own formula


@pytest.mark.parametrize(
    ("bad", "left"),
    [(0, 1.0), (100, 0.9), (500, 0.5), (1000, 0.0), (1500, -0.5), (2000, -1.0)],
)
def test_budget_of_a_million_runs_at_three_nines(bad: int, left: float) -> None:
    """1000 bad runs of 1,000,000 at 99.9% spend the budget exactly; more overspend it (not
    clamped at 0: -1.0 is a whole budget too many)."""
    share = sli(1_000_000 - bad, 1_000_000)
    assert share is not None
    assert budget_remaining(share, 0.999) == pytest.approx(left, abs=1e-9)


def test_sli_and_burn_rate_without_runs_are_none() -> None:
    assert sli(0, 0) is None
    assert burn_rate(0, 0, 0.999) is None
    assert sli(3, 4) == 0.75
    assert burn_rate(99, 100, 0.99) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="good <= runs"):
        sli(5, 4)


def test_a_good_run_is_ok_and_no_slower_than_the_latency() -> None:
    assert is_good(True, 5.0, None)
    assert is_good(True, 0.8, 0.8)
    assert not is_good(True, 0.81, 0.8)
    assert not is_good(False, 0.1, 0.8)
    assert not is_good(False, 0.1, None)


def test_span_writes_whole_days_as_days() -> None:
    assert [span(s) for s in (300, 1800, HOUR, 6 * HOUR, 3 * DAY, 28 * DAY, 30)] == [
        "5m",
        "30m",
        "1h",
        "6h",
        "3d",
        "28d",
        "30s",
    ]


# --- judgement

SHOP = SloConfig(objective=0.999, window="28d")
CRITICAL = SHOP.alerts[0]  # burn 14.4 over 1h and 5m


def test_the_summary_explains_itself() -> None:
    counts = {HOUR: Counts(10_000 - 152, 10_000), 300.0: Counts(1000 - 18, 1000), 28 * DAY: Counts(999_410, 1_000_000)}
    state, judgement = step_burn("shop-home", SHOP, CRITICAL, counts, CALM, now=50.0)
    assert state == BurnState(firing=True, since=50.0)
    assert judgement is not None
    assert judgement.transition == "firing"
    assert judgement.summary == "shop-home: error budget burning 15.2x (1h) and 18.0x (5m); 41% of 28d budget left"
    assert judgement.budget == pytest.approx(0.41)
    counts[300.0] = Counts(1000 - 3, 1000)
    state, judgement = step_burn("shop-home", SHOP, CRITICAL, counts, state, now=60.0)
    assert state == CALM
    assert judgement is not None
    assert judgement.summary == (
        "shop-home: error budget burn down to 3.0x (5m), at or below 14.4x; 41% of 28d budget left"
    )


def test_an_overspent_budget_says_so() -> None:
    counts = {HOUR: Counts(900, 1000), 300.0: Counts(900, 1000), 28 * DAY: Counts(997_000, 1_000_000)}
    _, judgement = step_burn("shop-home", SHOP, CRITICAL, counts, CALM, now=0.0)
    assert judgement is not None
    assert judgement.summary.endswith("; 28d budget overspent by 200%")


def test_a_burn_at_the_threshold_is_not_above_it() -> None:
    """14.4x exactly (36 bad of 2500, computed as 14.400000000000002) neither fires nor holds."""
    counts = {HOUR: Counts(2500 - 36, 2500), 300.0: Counts(2500 - 36, 2500), 28 * DAY: Counts(2500 - 36, 2500)}
    assert step_burn("s", SHOP, CRITICAL, counts, CALM, now=0.0) == (CALM, None)
    state, judgement = step_burn("s", SHOP, CRITICAL, counts, BurnState(True, 0.0), now=1.0)
    assert state == CALM
    assert judgement is not None and judgement.transition == "resolved"


def test_no_runs_neither_fires_nor_resolves() -> None:
    empty = {w: Counts(0, 0) for w in SHOP.windows()}
    assert judge_slo("s", SHOP, empty, [], now=0.0) == ((CALM, CALM, CALM), ())
    firing = BurnState(True, 0.0)
    assert step_burn("s", SHOP, CRITICAL, empty, firing, now=1.0) == (firing, None)


def test_judge_slo_judges_every_alert_and_takes_a_callable() -> None:
    def counts(window: float) -> tuple[int, int]:
        return (990, 1000) if window <= 6 * HOUR else (999_000, 1_000_000)  # 10x in the last 6 h

    states, changed = judge_slo("shop-home", SHOP, counts, [], now=5.0)
    assert states == (CALM, BurnState(True, 5.0), CALM)  # 10x: above 6 (major), not 14.4; 3d burns 1.0
    assert [(j.alert.severity, j.transition) for j in changed] == [("major", "firing")]
    assert judge_slo("shop-home", SHOP, counts, states, now=6.0) == (states, ())
    with pytest.raises(ValueError, match="one per alert"):
        judge_slo("shop-home", SHOP, counts, [CALM], now=6.0)


# --- properties

objectives = st.sampled_from(
    [0.99, 0.995, 0.999, 0.9999]
)  # 90%: the 36x and 14.4x burns could never fire (a config error)
window_counts = st.integers(min_value=0, max_value=100_000).flatmap(
    lambda runs: st.tuples(st.integers(min_value=0, max_value=runs), st.just(runs))
)


def exactly_above(good: int, runs: int, objective: float, burn: float) -> bool | None:
    """The reference: bad / runs > burn * (1 - objective) in exact fractions; None when the two
    are too close to call (within the documented 1e-9, or float noise in the objective)."""
    if runs == 0:
        return False
    rate = Fraction(runs - good, runs)
    limit = Fraction(burn) * (1 - Fraction(objective))
    if abs(rate - limit) <= limit * Fraction(1, 10**6):
        return None
    return rate > limit


@settings(max_examples=300, deadline=None)
@given(objective=objectives, runs=st.lists(st.integers(min_value=0, max_value=10**6), min_size=6, max_size=6))
def test_all_good_runs_never_fire_and_keep_the_whole_budget(objective: float, runs: list[int]) -> None:
    slo = SloConfig(objective=objective, window="28d")
    counts = {w: Counts(n, n) for w, n in zip(slo.windows(), runs, strict=True)}
    assert judge_slo("s", slo, counts, [], now=0.0) == ((CALM, CALM, CALM), ())
    for n in runs:
        share = sli(n, n)
        assert share is None or budget_remaining(share, objective) == 1.0
        assert burn_rate(n, n, objective) in (None, 0.0)


@settings(max_examples=300, deadline=None)
@given(objective=objectives, counts=window_counts, share=st.floats(min_value=0, max_value=1))
def test_the_budget_is_never_above_a_hundred_percent(objective: float, counts: tuple[int, int], share: float) -> None:
    good, runs = counts
    measured = sli(good, runs)
    assert measured is None or budget_remaining(measured, objective) <= 1.0
    assert budget_remaining(share, objective) <= 1.0
    if runs and good < runs:  # one more good run never loses budget
        assert measured is not None
        more = sli(good + 1, runs)
        assert more is not None
        assert budget_remaining(more, objective) >= budget_remaining(measured, objective)


@settings(max_examples=300, deadline=None)
@given(
    objective=objectives,
    counts=window_counts.filter(lambda c: c[1] > 0),
    k=st.integers(min_value=1, max_value=50),
)
def test_burn_rate_scales_linearly_with_the_error_rate(objective: float, counts: tuple[int, int], k: int) -> None:
    good, runs = counts
    bad = runs - good
    rate = burn_rate(good, runs, objective)
    assert rate is not None
    assert rate == pytest.approx(bad / runs / (1 - objective))
    assert burn_rate(k * good, k * runs, objective) == pytest.approx(rate)  # same error rate, same burn
    if k * bad <= runs:  # k times the error rate burns k times as fast
        assert burn_rate(runs - k * bad, runs, objective) == pytest.approx(k * rate)


alerts = st.builds(
    BurnAlert,
    burn=st.sampled_from([0.5, 1.0, 2.0, 6.0, 14.4, 36.0]),
    long=st.just("1h"),
    short=st.just("5m"),
    severity=st.just("major"),
)


@settings(max_examples=500, deadline=None)
@given(objective=objectives, alert=alerts, long=window_counts, short=window_counts, budget=window_counts)
def test_firing_needs_both_windows_above_the_threshold(
    objective: float, alert: BurnAlert, long: tuple[int, int], short: tuple[int, int], budget: tuple[int, int]
) -> None:
    slo = SloConfig(objective=objective, window="28d", alerts=[alert])
    above_long, above_short = (exactly_above(*c, objective, alert.burn) for c in (long, short))
    assume(above_long is not None and above_short is not None)
    counts = {HOUR: long, 300.0: short, 28 * DAY: budget}
    state, judgement = step_burn("s", slo, alert, counts, CALM, now=7.0)
    fires = bool(above_long and above_short)
    assert state == (BurnState(True, 7.0) if fires else CALM)
    assert (judgement is not None) == fires
    if judgement is not None:
        assert judgement.transition == "firing"
        assert judgement.long_burn is not None and judgement.long_burn > alert.burn
        assert judgement.short_burn is not None and judgement.short_burn > alert.burn


@settings(max_examples=500, deadline=None)
@given(objective=objectives, alert=alerts, long=window_counts, short=window_counts)
def test_a_firing_alert_resolves_when_the_short_window_drops_whatever_the_long(
    objective: float, alert: BurnAlert, long: tuple[int, int], short: tuple[int, int]
) -> None:
    slo = SloConfig(objective=objective, window="28d", alerts=[alert])
    above_short = exactly_above(*short, objective, alert.burn)
    assume(above_short is not None)
    firing = BurnState(True, 1.0)
    state, judgement = step_burn("s", slo, alert, {HOUR: long, 300.0: short, 28 * DAY: long}, firing, now=9.0)
    resolves = short[1] > 0 and not above_short
    assert state == (CALM if resolves else firing)
    assert (judgement is not None and judgement.transition == "resolved") == resolves


@settings(max_examples=200, deadline=None)
@given(
    objective=objectives,
    alert=alerts,
    history=st.lists(st.tuples(window_counts, window_counts), max_size=40),
)
def test_firings_and_resolutions_alternate(
    objective: float, alert: BurnAlert, history: list[tuple[tuple[int, int], tuple[int, int]]]
) -> None:
    slo = SloConfig(objective=objective, window="28d", alerts=[alert])
    states: tuple[BurnState, ...] = ()
    seen: list[str] = []
    for now, (long, short) in enumerate(history):
        states, changed = judge_slo("s", slo, {HOUR: long, 300.0: short, 28 * DAY: long}, states, float(now))
        seen.extend(j.transition for j in changed)
        assert states[0].firing == (seen[-1:] == ["firing"])
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_burn_alerts_that_could_never_fire_or_page_nothing_are_config_errors() -> None:
    assert errors_of("    slo: {objective: 90%, window: 28d}\n") == [
        "c.yaml:5:22: checks[0].slo.objective: the default critical burn alert (14.4x) can never fire with an"
        " objective of 90% (a window burns at most 10x): raise the objective above 93.1% or write slo alerts"
    ]
    (burn,) = errors_of(
        "    slo: {objective: 99%, window: 1h, alerts: [{burn: 100, long: 1h, short: 5m, severity: critical}]}\n"
    )
    assert "slo.alerts[0].burn: a burn of 100x can never be reached: with an objective of 99% a window burns" in burn
    (none,) = errors_of("    slo: {objective: 99%, window: 1h, alerts: []}\n")
    assert none.endswith("slo.alerts: no burn alerts and no alerts: nothing would ever page for this check; write"
                         " burn alerts, or `alerts: []` on the check to follow the SLO without paging")  # fmt: skip
    assert slo_of("    alerts: []\n    slo: {objective: 99%, window: 1h, alerts: []}\n") is not None  # on purpose


def test_a_check_with_an_slo_and_no_alerts_pages_on_its_burn_alerts_only() -> None:
    text = "checks:\n  - {name: s, type: tcp, target: 'h:1', slo: {objective: 99.9%, window: 28d}}\n"
    rules = parse_config(text, "c.yaml", env={}).checks[0].rules
    assert [r.text for r in rules] == [
        "error budget burn > 14.4x over 1h and 5m",
        "error budget burn > 6x over 6h and 30m",
        "error budget burn > 1x over 3d and 6h",
    ]
    text = text.replace("slo:", "alerts: [{when: down, severity: critical}], slo:")
    assert next(r.text for r in parse_config(text, "c.yaml", env={}).checks[0].rules) == "down"
