"""One root cause, one page: dependencies and quiet time through the alert book, time passed in."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.book import AlertBook, Change
from agent.alerting.quiet import Quiet
from agent.config.load import CheckSpec, parse_config
from tests.support import factories

SHOP = """
checks:
  - {name: db, type: tcp, target: "10.0.0.5:5432", interval: 10s, timeout: 1s, flapping: false,
     alerts: [{when: down, severity: critical}]}
  - {name: shop-web, type: http, url: "https://shop.example.com/", interval: 10s, timeout: 1s,
     flapping: false, depends_on: [db], runbook: "https://wiki.example.com/rb/shop-web",
     alerts: [{when: down, severity: critical}]}
  - {name: search, type: http, url: "https://search.example.com/", interval: 10s, timeout: 1s,
     flapping: false, depends_on: [db],
     alerts: [{when: down, severity: major, runbook: "https://wiki.example.com/rb/search"}]}
"""


def specs(text: str = SHOP) -> dict[str, CheckSpec]:
    return {s.config.name: s for s in parse_config(text, "c.yaml", env={}).checks}


class Shop:
    """The three checks, run in a given order each round (10 s apart); a quiet function that
    silences ``silenced`` until ``until``."""

    def __init__(self, text: str = SHOP) -> None:
        self.specs = specs(text)
        self.ids = (f"inc{i}" for i in range(1, 1000))
        self.book = AlertBook("web-01", {}, new_id=lambda: next(self.ids), quiet=self.quiet)
        self.silenced: set[str] = set()
        self.since = 0.0
        self.until = 0.0

    def quiet(self, check: str, labels: Mapping[str, str], wall: float) -> Quiet | None:
        if check in self.silenced and self.since <= wall < self.until:
            return Quiet("silence", "s1", self.until, "deploy 1.5.0", "sam")
        return None

    def run(self, name: str, ok: bool, t: float) -> list[Change]:
        spec = self.specs[name]
        target = (spec.config.targets or [spec.build().targets()[0]])[0]
        return self.book.observe(spec, factories.result(name, target, ok, type=spec.config.type, at=t))

    def round(self, t: float, down: set[str], order: tuple[str, ...] = ("shop-web", "search", "db")) -> list[Change]:
        out: list[Change] = []
        for i, name in enumerate(order):
            out += self.run(name, name not in down, t + i * 0.1)
        return out


def events(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.event.kind, c.check) for c in changes if c.event is not None]


DB_FIRST = ("db", "shop-web", "search")


def test_a_database_outage_pages_once_and_lists_what_it_took_with_it() -> None:
    shop = Shop()
    changes = shop.round(0, {"db", "shop-web", "search"}, DB_FIRST)
    assert events(changes) == [("firing", "db")]
    affected = [c for c in changes if c.kind == "affected"]
    assert [(c.check, c.incident) for c in affected] == [("shop-web", "inc1"), ("search", "inc1")]
    assert "depends on db; not paged" in affected[0].text
    assert events(shop.round(10, {"db", "shop-web", "search"}, DB_FIRST)) == []  # recorded once, not per run
    # the database comes back; search still fails (its own bug), shop-web recovers
    changes = shop.round(20, {"search"}, DB_FIRST)
    (resolved,) = [c for c in changes if c.event is not None and c.check == "db"]
    assert resolved.event is not None and resolved.event.kind == "resolved"
    assert resolved.event.affected == ["search", "shop-web"]  # still failing under it when it resolved
    assert events(changes) == [("resolved", "db"), ("firing", "search")]  # at its first run after db
    firing = next(c for c in changes if c.check == "search" and c.event is not None)
    assert firing.event is not None and firing.event.started_at == 0.2  # for: counts from its first failure
    assert firing.event.runbook == "https://wiki.example.com/rb/search"  # the rule's runbook wins
    assert firing.opened is not None and firing.opened.runbook == "https://wiki.example.com/rb/search"
    lines = [(c.kind, c.check, c.incident) for c in changes if c.kind in ("unaffected",)]
    assert ("unaffected", "shop-web", "inc1") in lines  # recovered while under db
    assert ("unaffected", "search", "inc1") in lines  # now pages on its own
    changes = shop.round(30, set(), DB_FIRST)
    assert events(changes) == [("resolved", "search")]  # a resolution is never held


def test_a_child_that_fails_before_its_parent_is_probed_waits_for_the_parent() -> None:
    shop = Shop()
    changes = shop.round(0, {"db", "shop-web", "search"})  # the pages above are probed first
    assert events(changes) == [("firing", "db")]
    assert sorted(c.check for c in changes if c.kind == "affected") == ["search", "shop-web"]
    assert next(c for c in changes if c.event is not None).event.affected == ["search", "shop-web"]  # type: ignore[union-attr]


def test_a_child_failing_alone_is_paged_at_its_parents_run_not_later() -> None:
    shop = Shop()
    changes = shop.round(0, {"shop-web"})
    assert events(changes) == [("firing", "shop-web")]  # at db's run (0.2 s), not a round later
    (firing,) = [c for c in changes if c.event is not None]
    assert firing.time == 0.2 and firing.event is not None and firing.event.started_at == 0.0
    assert firing.event.runbook == "https://wiki.example.com/rb/shop-web"  # the check's default


def test_a_silenced_firing_is_recorded_not_sent_and_pages_when_the_silence_ends() -> None:
    shop = Shop()
    shop.silenced, shop.until = {"shop-web"}, 25.0
    changes = shop.round(0, {"shop-web"}) + shop.round(10, {"shop-web"}) + shop.round(20, {"shop-web"})
    assert events(changes) == []
    (silenced,) = [c for c in changes if c.kind == "silenced"]  # recorded once
    assert silenced.time == 0.2  # judged at db's run
    assert "silenced by sam until" in silenced.text and "deploy 1.5.0" in silenced.text
    changes = shop.round(30, {"shop-web"})  # the silence ended at 25 and it still fails
    assert events(changes) == [("firing", "shop-web")]
    assert next(c.event for c in changes if c.event).started_at == 0.0  # type: ignore[union-attr]


def test_a_firing_waits_for_a_parent_that_last_ran_before_the_failure_began() -> None:
    shop = Shop()  # db ran 0.1 s before shop-web failed: is db down now? its next run says
    assert events(shop.round(0, {"shop-web"}, DB_FIRST)) == []
    changes = shop.round(10, {"shop-web"}, DB_FIRST)
    assert events(changes) == [("firing", "shop-web")]
    assert changes[0].time == 10.0  # at db's run, before shop-web's own


def test_a_silenced_failure_that_recovers_sends_nothing_at_all() -> None:
    shop = Shop()
    shop.silenced, shop.until = {"shop-web"}, 100.0
    assert events(shop.round(0, {"shop-web"})) == []
    changes = shop.round(10, set())
    assert events(changes) == []
    assert [c.kind for c in changes if c.check == "shop-web"] == ["recovered"]


def test_an_incident_paged_before_a_silence_still_gets_its_resolution() -> None:
    shop = Shop()
    assert events(shop.round(0, {"shop-web"})) == [("firing", "shop-web")]
    shop.silenced, shop.until = {"shop-web"}, 1000.0
    assert events(shop.round(10, {"shop-web"})) == []
    assert events(shop.round(20, set())) == [("resolved", "shop-web")]


def test_held_state_survives_a_restart() -> None:
    shop = Shop()
    shop.round(0, {"db", "shop-web"})
    saved = {k: d for k in shop.book.alerts if (d := shop.book.snapshot(k)) is not None}
    again = Shop()
    again.book.clock_offset = lambda: 0.0
    for key, data in saved.items():
        again.book.restore(key, data, None)
    assert again.book.deps.affected("db") == ["shop-web"]
    assert events(again.round(10, {"db", "shop-web"})) == []  # no second page after the restart
    changes = again.round(20, {"shop-web"}, DB_FIRST)
    assert events(changes) == [("resolved", "db"), ("firing", "shop-web")]


rounds = st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(rounds, st.permutations(["db", "shop-web", "search"]), st.integers(0, 30), st.integers(0, 10))
def test_every_page_is_explained_resolved_and_never_invented(
    history: list[tuple[bool, bool, bool]], order: list[str], silence_from: int, silence_rounds: int
) -> None:
    """Whatever fails in whatever order, with shop-web silenced for a while: a child never pages
    while db is known to fail, shop-web never pages inside its silence, every resolution follows
    its firing, and once all is well again nothing is left open or held."""
    shop = Shop()
    shop.silenced, shop.since, shop.until = {"shop-web"}, silence_from * 10.0, (silence_from + silence_rounds) * 10.0
    open_: dict[str, str] = {}
    t = 0.0
    for db_down, web_down, search_down in [*history, (False, False, False), (False, False, False)]:
        down = {n for n, d in zip(("db", "shop-web", "search"), (db_down, web_down, search_down), strict=True) if d}
        for i, name in enumerate(order):
            for change in shop.run(name, name not in down, t + i * 0.1):
                event = change.event
                if event is None:
                    continue
                assert event.check is not None and event.incident is not None
                if event.kind == "firing":
                    if event.check != "db":
                        assert not shop.book.deps.failing("db", shop.book.alerts)
                    assert shop.quiet(event.check, {}, event.time) is None
                    assert event.check not in open_
                    open_[event.check] = event.incident
                elif event.kind == "resolved":
                    assert open_.pop(event.check) == event.incident
        t += 10
    assert open_ == {}
    assert all(a.held is None and a.incident is None for a in shop.book.alerts.values())
