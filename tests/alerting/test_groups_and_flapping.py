"""Blast radius and flapping, through the alert book with time passed in (no sleeps)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.book import AlertBook
from agent.alerting.flapping import FlapDetector, FlappingConfig
from agent.config.load import parse_config
from agent.core.severity import rank
from checks.base import Result
from tests.support import factories

TARGETS = [f"10.0.0.{i}:443" for i in range(1, 11)]


def group_config(for_: str = "0", flapping: str = "false") -> str:
    return f"""
checks:
  - name: api
    type: tcp
    targets: [{", ".join(TARGETS)}]
    interval: 10s
    timeout: 1s
    flapping: {flapping}
    alerts: [{{when: down, for: "{for_}", severity: minor}}]
    impact:
      - {{share: 0.3, severity: major}}
      - {{share: 80%, severity: critical}}
"""


def result(target: str, ok: bool, t: float) -> Result:
    return factories.result("api", target, ok, type="tcp", error="refused", error_kind="refused", at=t)


def run_round(book: AlertBook, spec, down: set[str], t: float):  # type: ignore[no-untyped-def]
    changes = []
    for i, target in enumerate(TARGETS):
        changes += book.observe(spec, result(target, target not in down, t + i * 0.5))
    return [c for c in changes if c.event is not None]


def test_one_of_ten_is_minor_and_most_is_critical_as_one_incident() -> None:
    spec = parse_config(group_config(), "c.yaml", env={}).checks[0]
    book = AlertBook("web-01", {})
    assert run_round(book, spec, set(), 0) == []
    (ev,) = run_round(book, spec, {TARGETS[3]}, 10)
    assert ev.event is not None and ev.event.value == 1
    assert (ev.kind, ev.severity, ev.target) == ("firing", "minor", "10 targets")
    assert ev.event.summary == "api: 1 of 10 targets (10.0.0.4:443): down (refused)"
    assert ev.event.members == ["10.0.0.4:443"]  # the failing members, not "10 targets"
    incident = ev.incident
    (ev,) = run_round(book, spec, set(TARGETS[:9]), 20)  # 9 of 10: a fleet-wide outage
    assert (ev.kind, ev.severity, ev.incident) == ("changed", "critical", incident)
    assert ev.event is not None and ev.event.summary.endswith("(minor -> critical)")
    assert ev.event.members == TARGETS[:9]
    assert ev.headline is not None and ev.headline.startswith("api: 9 of 10 targets (")  # the incident's summary now
    assert run_round(book, spec, set(TARGETS[:4]), 30) == []  # shrinking to 4 of 10: confirmed next round
    (ev,) = run_round(book, spec, set(TARGETS[:4]), 35)
    assert (ev.kind, ev.severity) == ("changed", "major")
    (ev,) = run_round(book, spec, set(), 40)
    assert (ev.kind, ev.incident) == ("resolved", incident)
    assert run_round(book, spec, set(), 50) == []


def test_all_members_failing_together_raise_one_critical_page_not_three() -> None:
    spec = parse_config(group_config(for_="20s"), "c.yaml", env={}).checks[0]
    book = AlertBook("web-01", {})
    events = []
    for t in range(0, 60, 10):  # every member fails from t=0; their for: ends a few seconds apart
        events += run_round(book, spec, set(TARGETS), t)
    assert [(e.kind, e.severity) for e in events] == [("firing", "critical")]


members = st.lists(st.sets(st.sampled_from(TARGETS)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(rounds=members, for_=st.sampled_from(["0", "10s", "30s"]))
def test_group_invariants(rounds: list[set[str]], for_: str) -> None:
    """One open incident at a time per group; every firing is followed by exactly one
    resolution before the next; severity never below the rule's own (minor) and always the
    impact level of the share firing."""
    spec = parse_config(group_config(for_=for_), "c.yaml", env={}).checks[0]
    book = AlertBook("web-01", {})
    open_incident = None
    for i, down in enumerate([*rounds, set(), set(), set(), set(), set()]):
        for ev in run_round(book, spec, down, i * 10):
            assert ev.event is not None
            assert rank(ev.severity) >= rank("minor")
            if ev.kind == "firing":
                assert open_incident is None
                open_incident = ev.incident
            elif ev.kind == "changed":
                assert ev.incident == open_incident
            elif ev.kind == "resolved":
                assert ev.incident == open_incident
                open_incident = None
    assert open_incident is None  # after all members recover, the incident is resolved


def test_flap_detection_starts_high_and_stops_low() -> None:
    d = FlapDetector(FlappingConfig(window=10, high=50, low=25))
    flips = [d.observe(i % 2 == 0) for i in range(10)]
    assert "start" in flips and d.flapping
    steady = [d.observe(True) for _ in range(10)]
    assert "stop" in steady and not d.flapping


def test_a_flapping_alert_pages_once_and_says_so() -> None:
    config = """
checks:
  - name: api
    type: tcp
    target: 10.0.0.1:443
    flapping: {window: 10, high: 40, low: 20}
    alerts: [{when: down, severity: major}]
"""
    spec = parse_config(config, "c.yaml", env={}).checks[0]
    book = AlertBook("web-01", {})
    changes = []
    for i in range(40):  # down on every other run for a while, then steady up
        ok = i >= 30 or i % 2 == 1
        err = None if ok else "refused"
        changes += book.observe(spec, Result("api", "tcp", "10.0.0.1:443", ok, {}, err, err, i * 10.0, 0.01))
    kinds = [c.kind for c in changes if c.kind in ("firing", "resolved", "flapping-start", "flapping-stop")]
    # without flap detection this would be ~15 firings and resolutions; with it: a few, then held
    assert kinds.count("flapping-start") == 1 and kinds.count("flapping-stop") == 1
    assert kinds.count("firing") <= 3 and kinds.count("firing") == kinds.count("resolved")
    held = kinds.index("flapping-start")
    assert kinds[held + 1 :] == ["firing", "flapping-stop", "resolved"]
    firing = [c for c in changes if c.kind == "firing"][-1]
    assert firing.text == "api: down (refused) (flapping)"
