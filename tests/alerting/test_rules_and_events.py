"""Rules judge results and explain themselves; the alert book turns them into contract events."""

from __future__ import annotations

import json
import re

import pytest

from agent.alerting.book import AlertBook
from agent.alerting.policy import AlertConfig
from agent.alerting.rules import compile_rule
from agent.config.load import parse_config
from checks.base import Result
from checks.host import HostCheck
from checks.http import HttpCheck
from tests.support import factories


def result(ok: bool = True, t: float = 1000.0, **values: float) -> Result:
    took = values.get("duration", 0.1)
    return factories.result(ok=ok, values=values, error="HTTP 503 from 10.0.0.2:443", at=t, duration=took)


def rule(when: str, severity: str = "major", for_: str = "0", cls: type = HttpCheck):  # type: ignore[no-untyped-def]
    return compile_rule(
        0, AlertConfig.model_validate({"when": when, "for": for_, "severity": severity}), cls.VALUES, cls.TYPE
    )


def test_comparison_explains_itself_with_units() -> None:
    r = rule("duration > 2s", for_="5m")
    v = r.evaluate(result(duration=2.71))
    assert (v.holds, v.value, v.explanation) == (True, 2.71, "duration (2.71s) > 2s")
    assert r.text == "duration > 2s for 5m"
    assert rule("duration > 500ms").evaluate(result(duration=0.4)).holds is False


def test_down_carries_the_error_text() -> None:
    v = rule("down").evaluate(result(ok=False))
    assert (v.holds, v.explanation) == (True, "down (HTTP 503 from 10.0.0.2:443)")
    assert rule("down").evaluate(result(ok=True)).holds is False


def test_unmeasured_value_is_no_data_not_false() -> None:
    v = rule("tls.days_left < 14", "medium").evaluate(result(ok=False, duration=0.1))
    assert v.holds is None


@pytest.mark.parametrize(
    ("when", "values", "holds"),
    [
        ("cpu > 90%", {"cpu": 92.0}, True),
        ("cpu >= 90%", {"cpu": 90.0}, True),
        ("memory < 10", {"memory": 50.0}, False),
        ("disk[/] > 90%", {"disk[/]": 95.5}, True),
        ("disk[/data] > 90%", {"disk[/]": 95.5}, None),
        ("load1 != 0", {"load1": 0.0}, False),
        ("swap == 0", {"swap": 0.0}, True),
    ],
)
def test_host_values_and_templates(when: str, values: dict[str, float], holds: bool | None) -> None:
    r = rule(when, "minor", cls=HostCheck)
    assert r.evaluate(result(**values)).holds is holds


def test_byte_units() -> None:
    r = rule("body_bytes > 1MiB")
    assert r.threshold == 1024**2
    assert r.evaluate(result(body_bytes=2_000_000)).explanation == "body_bytes (2MB) > 1MiB"


CONFIG = """
agent: {name: web-01, labels: {env: prod}}
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    labels: {team: shop}
    alerts:
      - {when: down, for: 1m, severity: critical}
      - {when: duration > 2s, for: 5m, severity: major}
"""


def test_firing_and_resolved_events_follow_the_contract() -> None:
    cfg = parse_config(CONFIG, "c.yaml", env={})
    spec = cfg.checks[0]
    ids = iter(["inc1", "inc2"])
    book = AlertBook("web-01", cfg.labels, new_id=lambda: next(ids))
    events = []
    for t in (0, 30, 60, 90):
        events += [c.event for c in book.observe(spec, result(ok=False, t=1_000_000 + t, duration=0.05)) if c.event]
    events += [c.event for c in book.observe(spec, result(ok=True, t=1_000_120, duration=0.05)) if c.event]
    assert [e.kind for e in events] == ["firing", "resolved"]
    firing, resolved = (json.loads(e.to_json()) for e in events)
    assert set(firing) == {
        "id", "time", "kind", "severity", "incident", "fingerprint", "check", "target", "type",
        "rule", "value", "summary", "started_at", "agent", "labels", "runbook", "affected",
    }  # fmt: skip
    assert (firing["runbook"], firing["affected"]) == (None, [])
    assert firing["severity"] == "critical"
    assert firing["incident"] == resolved["incident"] == "inc1"
    assert firing["fingerprint"] == resolved["fingerprint"]
    assert firing["id"] != resolved["id"]
    assert firing["rule"] == "down for 1m"
    assert firing["summary"] == "shop-home: down (HTTP 503 from 10.0.0.2:443) for 1m"
    assert firing["started_at"] == "1970-01-12T13:46:40.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", firing["time"])
    assert firing["labels"] == {"env": "prod", "team": "shop"}
    assert (firing["agent"], firing["check"], firing["type"]) == ("web-01", "shop-home", "http")
    assert resolved["summary"] == "shop-home: resolved after 2m: down for 1m (now up)"


def test_a_threshold_event_carries_the_value_judged() -> None:
    cfg = parse_config(CONFIG, "c.yaml", env={})
    book = AlertBook("web-01", cfg.labels)
    events = []
    for t, took in ((0, 2.5), (150, 2.71), (300, 2.9), (450, 0.4)):
        changes = book.observe(cfg.checks[0], result(ok=True, t=1_000_000 + t, duration=took))
        events += [c.event for c in changes if c.event]
    assert [(e.kind, e.value) for e in events] == [("firing", 2.9), ("resolved", 0.4)]
    assert events[0].summary == "shop-home: duration (2.9s) > 2s for 5m"


def test_each_target_of_a_group_is_its_own_alert() -> None:
    cfg = parse_config(
        """
checks:
  - {name: web, type: tcp, targets: ["10.0.0.1:80", "10.0.0.2:80"], alerts: [{when: down, severity: minor}]}
""",
        "c.yaml",
        env={},
    )
    spec = cfg.checks[0]
    book = AlertBook("a", {})
    r1 = Result("web", "tcp", "10.0.0.1:80", False, {}, "refused", "refused", 1.0, 0.1)
    r2 = Result("web", "tcp", "10.0.0.2:80", True, {}, None, None, 1.0, 0.1)
    events = [c.event for c in book.observe(spec, r1) + book.observe(spec, r2) if c.event]
    assert [(e.kind, e.target) for e in events] == [("firing", "10.0.0.1:80")]
    assert events[0].summary == "web 10.0.0.1:80: down (refused)"


def test_perfdata_labels_and_process_templates_parse_in_rules() -> None:
    from checks.command import CommandCheck

    r = rule("perf./ > 1000000", "medium", cls=CommandCheck)
    assert r.evaluate(result(**{"perf./": 2e6})).holds is True
    assert rule("perf.time>=2s", cls=CommandCheck).threshold == 2.0


def test_down_gives_no_verdict_when_firstwatch_itself_could_not_probe() -> None:
    """A crashed browser is our failure, not the site's: ``down`` keeps its state (no page)."""
    cfg = parse_config(CONFIG, "c.yaml", env={})
    spec = cfg.checks[0]
    down = spec.rules[0]
    r = factories.result(ok=False, error="the browser crashed or was killed", error_kind="agent")
    assert down.evaluate(r).holds is None and r.status == "unknown"
    book = AlertBook("web-01", {})
    changes = [
        c
        for t in range(0, 600, 30)
        for c in book.observe(spec, factories.result(ok=False, error_kind="agent", at=1e6 + t))
    ]
    assert [c for c in changes if c.event is not None] == []
