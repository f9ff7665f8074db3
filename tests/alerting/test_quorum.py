"""``quorum: N``: a rule judged across agents by a central Prometheus, never paged by one agent.

The agent still judges the rule on its own results (pending, firing, recovered on its timeline
and status page), but a firing is held for good ("down here; quorum judged centrally"), with no
incident and no event, whatever ``for:`` says; the other rules of the same check page as usual.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.book import AlertBook, Change
from agent.cli.output import render_json, render_text
from agent.config.load import CheckSpec, parse_config
from agent.core.errors import ConfigError
from agent.engine.oneshot import exit_code, judge
from tests.support import factories

SHOP = """
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    interval: 10s
    flapping: false
    alerts:
      - {when: down, for: 20s, severity: critical, quorum: 2}
      - {when: duration > 2s, severity: minor}
"""


def spec(text: str = SHOP) -> CheckSpec:
    return parse_config(text, "c.yaml", env={}).checks[0]


def run(book: AlertBook, s: CheckSpec, ok: bool, t: float, duration: float = 0.1) -> list[Change]:
    r = factories.result("shop-home", "https://shop.example.com/", ok, at=t, values={"duration": duration})
    return book.observe(s, r)


def test_the_rule_keeps_its_quorum() -> None:
    rules = spec().rules
    assert [(r.text, r.quorum) for r in rules] == [("down for 20s", 2), ("duration > 2s", None)]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", "true", "false"])
def test_a_quorum_below_one_or_not_a_count_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec(SHOP.replace("quorum: 2", f"quorum: {bad}"))
    assert "quorum" in str(err.value)


def test_down_here_is_held_never_paged_and_recorded() -> None:
    s, book = spec(), AlertBook("web-01", {"location": "a"})
    changes: list[Change] = []
    for i in range(30):  # five minutes down here
        changes += run(book, s, False, i * 10.0)
    assert [c.kind for c in changes] == ["pending"]  # its for: passed: held, not paged
    assert all(c.event is None for c in changes)
    assert book.firing() == []  # no incident, so alert.active stays 0 for this agent
    [(key, why)] = book.held(1e9)
    assert key == ("shop-home", "https://shop.example.com/", "down for 20s")
    assert why == "down here; quorum judged centrally (at least 2 agents)"
    back = run(book, s, True, 300.0)
    assert [c.kind for c in back] == ["recovered"] and all(c.event is None for c in back)
    assert book.held(1e9) == []


def test_the_checks_other_rules_page_as_usual() -> None:
    s, book = spec(), AlertBook("web-01", {})
    out = run(book, s, True, 0.0, duration=3.0)
    assert [(c.kind, c.rule) for c in out if c.event is not None] == [("firing", "duration > 2s")]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_no_run_sequence_makes_a_quorum_rule_page(oks: list[bool]) -> None:
    s, book = spec(), AlertBook("web-01", {})
    for i, ok in enumerate(oks):
        changes = run(book, s, ok, i * 10.0)
        assert all(c.event is None for c in changes)
    assert book.firing() == []


def test_firstwatch_check_answers_what_it_sees_here() -> None:
    """``check`` is "is it down from here?" (and ``--until-green`` "is it back?"): a quorum rule
    fails there like any other, and says that paging is the fleet's call."""
    s = spec()
    finding = judge(s, factories.result("shop-home", "https://shop.example.com/", False, at=0.0))
    assert [r.text for r, _ in finding.failing] == ["down for 20s"]
    assert exit_code([finding]) == 2
    text = render_text([finding])
    assert "down (HTTP 503) here; quorum of 2 judged centrally [down for 20s]" in text
    [failing] = json.loads(render_json([finding]))["results"][0]["failing"]
    assert (failing["rule"], failing["quorum"]) == ("down for 20s", 2)
    ok = judge(s, factories.result("shop-home", "https://shop.example.com/", True, at=0.0))
    assert exit_code([ok]) == 0
