"""The post-mortem draft (``firstwatch report``) of a realistic incident on a real state database.

The database goes down at 14:00 UTC: two dependent checks fail under it (not paged), pagerduty and
slack are paged, it turns critical, a severity change is silenced, maria acknowledges and notes,
it recovers at 14:20. A schema migration 20 minutes before detection is a suspect; a kernel
upgrade two hours before, a change to an unrelated check and one after detection are not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.cli.incidents import cmd_report
from agent.core.events import parse_iso
from agent.incidents.model import Entry, Incident
from agent.incidents.report import changes_before, facts, render_json, render_markdown
from agent.incidents.report_facts import dependent_checks, severity_bands
from agent.incidents.store import Store

T0 = parse_iso("2026-12-02T14:00:00.000Z")  # detection
ID = "9d1e0c4b7a22"
DB = "postgres://db-1:5432"
RUNBOOK = "https://wiki.example.com/runbooks/db (primary)"


def record(store: Store, kind: str, text: str, at: float, **kw: str | None) -> None:
    store.add_entry(kind, text, when=T0 + at, **kw)


def sent(store: Store, kind: str, sink: str, at: float, severity: str) -> None:
    record(
        store, "delivered", f"{kind} event sent to {sink}", at, incident=ID, check="db", target=DB, severity=severity
    )


def db_outage(tmp_path: Path, *, note: str = "failing over to db-2", change: str = "migrate schema 42") -> Store:
    store = Store(str(tmp_path / "state"))
    with store.transaction():
        record(store, "change", "kernel upgrade on all hosts", -7200, author="ops")  # too early
        record(store, "change", change, -1200, check="db", author="sam")
        record(store, "change", "new mail relay", -600, check="mail", author="kim")  # another check
        record(store, "change", "shop-web 1.5.0", -300, check="shop-web", author="lee")  # a dependent
        record(store, "pending", "pending: down (connection refused) (fires after down for 1m)", -60, check="db",
               target=DB)  # fmt: skip
        store.open_incident(
            ID, fingerprint="fp", check="db", target=DB, rule="down for 1m", severity="major",
            summary="db: down (connection refused) for 1m", first_error="down (connection refused)",
            started_at=T0 - 60, fired_at=T0, runbook=RUNBOOK,
        )  # fmt: skip
        record(store, "firing", "db: down (connection refused) for 1m", 0, incident=ID, check="db", target=DB,
               severity="major")  # fmt: skip
        sent(store, "firing", "pagerduty", 1, "major")
        sent(store, "firing", "slack", 2, "major")
        record(store, "affected", "shop-web: down (HTTP 500): depends on db; not paged", 30, incident=ID,
               check="shop-web", target="https://shop.example.com/")  # fmt: skip
        record(store, "affected", "cart: down (HTTP 503): depends on db; not paged", 40, incident=ID,
               check="cart", target="https://cart.example.com/")  # fmt: skip
        record(store, "change", "hotfix during the incident", 60, check="db", author="sam")  # after detection
    assert store.ack(ID, "maria", when=T0 + 180)
    with store.transaction():
        record(store, "note", note, 240, incident=ID, check="db", target=DB, author="maria")
        record(store, "changed", "db: down (timeout) (major -> critical)", 300, incident=ID, check="db", target=DB,
               severity="critical")  # fmt: skip
        store.set_severity(ID, "critical", "critical")
        sent(store, "changed", "pagerduty", 301, "critical")
        record(store, "silenced", "db: down (timeout): silenced by sam until 2026-12-02T15:00:00.000Z (failover; "
               "silence 3f2a9c01); not sent", 600, incident=ID, check="db", target=DB, severity="critical")  # fmt: skip
        record(store, "unaffected", "cart: recovered", 900, incident=ID, check="cart",
               target="https://cart.example.com/")  # fmt: skip
        record(store, "resolved", "db: resolved after 21m: down for 1m (now up)", 1200, incident=ID, check="db",
               target=DB, severity="critical")  # fmt: skip
        store.resolve_incident(ID, T0 + 1200)
        record(store, "unaffected", "shop-web: db recovered; shop-web now pages on its own", 1200, incident=ID,
               check="shop-web", target="https://shop.example.com/")  # fmt: skip
        sent(store, "resolved", "pagerduty", 1201, "critical")
        sent(store, "resolved", "slack", 1202, "critical")
    return store


def inputs(store: Store) -> tuple[Incident, list[Entry], list[Entry]]:
    """What ``cmd_report`` passes: the incident, its entries, the changes that apply."""
    inc = store.incident(ID)
    entries = store.entries(incident=ID)
    candidates = [e for e in store.entries(since=inc.fired_at - 3600) if e.kind == "change"]
    return inc, entries, changes_before(inc, candidates, dependent_checks(entries))


def section(report: str, title: str) -> list[str]:
    """The lines under ``## title``, up to the next heading (blank lines dropped)."""
    body = report.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line]


def test_changes_before_detection_are_the_hours_own_check_dependents_and_global_ones(tmp_path: Path) -> None:
    inc, entries, changes = inputs(db_outage(tmp_path))
    assert dependent_checks(entries) == {"shop-web", "cart"}
    assert [(e.author, e.check, e.text) for e in changes] == [
        ("sam", "db", "migrate schema 42"),
        ("lee", "shop-web", "shop-web 1.5.0"),
    ]
    everything = Entry(0, T0 - 10, "change", None, None, None, None, None, "freeze lifted", "ops")
    other_kind = Entry(0, T0 - 10, "note", None, None, "db", None, None, "not a change", "ops")
    assert changes_before(inc, [everything, other_kind], set()) == [everything]


def test_the_facts_of_a_parent_incident(tmp_path: Path) -> None:
    f = facts(*inputs(db_outage(tmp_path)))
    assert f["runbook"] == RUNBOOK and f["status"] == "resolved" and f["max_severity"] == "critical"
    assert f["first_paged"] == [
        {"sink": "pagerduty", "time": "2026-12-02T14:00:01.000Z", "severity": "major", "kind": "firing"},
        {"sink": "slack", "time": "2026-12-02T14:00:02.000Z", "severity": "major", "kind": "firing"},
    ]
    assert f["time_at_severity"] == {"major": 300.0, "critical": 900.0}
    assert f["time_at_severity_until"] == "2026-12-02T14:20:00.000Z"
    assert f["affected_targets"] == [
        {"target": DB, "down": "2026-12-02T13:59:00.000Z", "up": "2026-12-02T14:20:00.000Z"}
    ]
    assert [(d["check"], d["since"], d["until"], d["until_text"]) for d in f["affected_checks"]] == [
        ("shop-web", "2026-12-02T14:00:30.000Z", "2026-12-02T14:20:00.000Z",
         "shop-web: db recovered; shop-web now pages on its own"),
        ("cart", "2026-12-02T14:00:40.000Z", "2026-12-02T14:15:00.000Z", "cart: recovered"),
    ]  # fmt: skip
    assert f["affected_checks"][0]["text"] == "shop-web: down (HTTP 500): depends on db; not paged"
    assert [s["time"] for s in f["silences"]] == ["2026-12-02T14:10:00.000Z"]
    assert "silence 3f2a9c01" in f["silences"][0]["text"]
    assert f["changes_before_detection"][0] == {
        "time": "2026-12-02T13:40:00.000Z", "author": "sam", "check": "db", "text": "migrate schema 42"
    }  # fmt: skip
    assert f["notes"] == [{"time": "2026-12-02T14:04:00.000Z", "author": "maria", "text": "failing over to db-2"}]
    assert f["acks"] == [{"time": "2026-12-02T14:03:00.000Z", "author": "maria", "text": "acknowledged by maria"}]
    assert [h["severity"] for h in f["severity_history"]] == ["major", "critical"]


def test_the_timeline_folds_deliveries_into_one_line_per_sink(tmp_path: Path) -> None:
    f = facts(*inputs(db_outage(tmp_path)))
    kinds = [line["kind"] for line in f["timeline"]]
    assert kinds == [
        "pending", "firing", "delivered", "delivered", "affected", "affected", "ack", "note", "changed",
        "silenced", "unaffected", "resolved", "unaffected",
    ]  # fmt: skip
    pagerduty, slack = (line for line in f["timeline"] if line["kind"] == "delivered")
    assert pagerduty["text"] == "sent to pagerduty: firing 14:00:01, changed to critical 14:05:01, resolved 14:20:01"
    assert slack["text"] == "sent to slack: firing 14:00:02, resolved 14:20:02"
    assert pagerduty.get("sink") == "pagerduty" and len(pagerduty.get("deliveries", [])) == 3


def test_the_markdown_draft_has_its_sections_in_order(tmp_path: Path) -> None:
    report = render_markdown(*inputs(db_outage(tmp_path)))
    assert report.startswith(f"# Incident {ID}: db: down (connection refused) for 1m\n")
    assert (
        "| Runbook | [https://wiki.example.com/runbooks/db (primary)]"
        "(https://wiki.example.com/runbooks/db%20%28primary%29) |" in report
    )
    titles = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert titles == [
        "Summary", "First paged", "Time at each severity", "Affected targets", "Affected dependent checks",
        "Silences and maintenance", "Changes before detection", "Notes and acknowledgments", "Timeline (UTC)",
        "Root cause", "What went well, what did not", "Follow-ups",
    ]  # fmt: skip
    assert section(report, "First paged") == [
        "- pagerduty: 2026-12-02T14:00:01.000Z at major, 1s after detection",
        "- slack: 2026-12-02T14:00:02.000Z at major, 2s after detection",
    ]
    severities = section(report, "Time at each severity")
    assert severities[:2] == ["- major: 5m", "- critical: 15m"]
    assert section(report, "Affected targets") == [
        f"- {DB}: down 2026-12-02T13:59:00.000Z, up 2026-12-02T14:20:00.000Z (down for 21m)"
    ]
    dependents = section(report, "Affected dependent checks")
    assert dependents[1] == (
        "- cart (https://cart.example.com/): since 2026-12-02T14:00:40.000Z: cart: down (HTTP 503): depends on db;"
        " not paged; until 2026-12-02T14:15:00.000Z: cart: recovered"
    )
    assert len(section(report, "Silences and maintenance")) == 1
    assert section(report, "Changes before detection") == [
        "- 2026-12-02T13:40:00.000Z (20m before detection) sam, db: migrate schema 42",
        "- 2026-12-02T13:55:00.000Z (5m before detection) lee, shop-web: shop-web 1.5.0",
    ]
    assert section(report, "Notes and acknowledgments") == [
        "- 2026-12-02T14:03:00.000Z ACK (maria): **acknowledged by maria**",
        "- 2026-12-02T14:04:00.000Z NOTE (maria): **failing over to db-2**",
    ]
    timeline = section(report, "Timeline (UTC)")
    assert "- 2026-12-02T14:00:01.000Z sent to slack" not in report
    assert "- 2026-12-02T14:00:02.000Z sent to slack: firing 14:00:02, resolved 14:20:02" in timeline
    assert "- 2026-12-02T14:10:00.000Z SILENCED: db: down (timeout): silenced by sam" in "\n".join(timeline)
    assert len(timeline) == 13
    assert "kernel upgrade" not in report and "new mail relay" not in report and "hotfix" not in report


def test_an_open_incident_counts_its_severities_up_to_the_last_entry(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state"))
    with store.transaction():
        store.open_incident(
            ID, fingerprint="fp", check="shop-web", target="2 targets", rule="down", severity="minor",
            summary="shop-web: 1 of 2 targets: down", first_error=None, started_at=T0 - 30, fired_at=T0,
        )  # fmt: skip
        for member, down in (("https://a/", -30), ("https://b/", 20)):
            record(store, "pending", f"{member}: pending", down, check="shop-web", target=member)
            record(store, "member-firing", f"{member}: firing", down + 30, check="shop-web", target=member)
        record(store, "firing", "shop-web: 1 of 2 targets", 0, incident=ID, check="shop-web", target="2 targets",
               severity="minor")  # fmt: skip
        record(store, "member-resolved", "https://a/: resolved", 100, check="shop-web", target="https://a/")
        record(store, "reminder", "reminder queued for pagerduty", 400, incident=ID, check="shop-web",
               target="2 targets", severity="minor")  # fmt: skip
    inc, entries, changes = inputs(store)
    f = facts(inc, entries, changes)
    assert f["status"] == "firing" and f["runbook"] is None and f["first_paged"] == []
    assert f["time_at_severity"] == {"minor": 400.0}
    assert f["affected_targets"] == [
        {"target": "https://a/", "down": "2026-12-02T13:59:30.000Z", "up": "2026-12-02T14:01:40.000Z"},
        {"target": "https://b/", "down": "2026-12-02T14:00:20.000Z", "up": None},
    ]
    report = render_markdown(inc, entries, changes)
    assert "| Runbook |" not in report and "| Recovered | still firing |" in report
    assert "(still firing: counted up to the last timeline entry, 2026-12-02T14:06:40.000Z)" in report
    assert "- https://b/: down 2026-12-02T14:00:20.000Z, no recovery recorded" in report
    for title in ("First paged", "Affected dependent checks", "Silences and maintenance", "Changes before detection"):
        assert section(report, title) == ["(none)"], title


def test_severity_bands_share_the_steps_of_the_time_at_each_severity(tmp_path: Path) -> None:
    store = db_outage(tmp_path)
    inc, entries, changes = inputs(store)
    assert severity_bands(inc, entries) == [
        {"start": "2026-12-02T14:00:00.000Z", "end": "2026-12-02T14:05:00.000Z", "severity": "major"},
        {"start": "2026-12-02T14:05:00.000Z", "end": "2026-12-02T14:20:00.000Z", "severity": "critical"},
    ]
    assert facts(inc, entries, changes)["time_at_severity"] == {"major": 300.0, "critical": 900.0}
    # an open incident: a change to the severity it has is folded in, the last band has no end
    with store.transaction():
        store.open_incident(
            "open1", fingerprint="fp2", check="db", target=DB, rule="down", severity="minor", summary="db: down",
            first_error=None, started_at=T0 + 2000, fired_at=T0 + 2000,
        )  # fmt: skip
        record(store, "firing", "db: down", 2000, incident="open1", check="db", target=DB, severity="minor")
        record(store, "changed", "db: down (minor)", 2100, incident="open1", check="db", target=DB, severity="minor")
        record(store, "changed", "db: down (critical)", 2400, incident="open1", check="db", target=DB,
               severity="critical")  # fmt: skip
        record(store, "note", "looking", 2500, incident="open1", check="db", target=DB, author="maria")
    still = store.incident("open1")
    assert severity_bands(still, store.entries(incident="open1")) == [
        {"start": "2026-12-02T14:33:20.000Z", "end": "2026-12-02T14:40:00.000Z", "severity": "minor"},
        {"start": "2026-12-02T14:40:00.000Z", "end": None, "severity": "critical"},
    ]


def test_hostile_text_in_a_note_and_a_change_stays_on_its_line(tmp_path: Path) -> None:
    forged = "ok\n## Root cause\n- [x] it was bob\x1b[2J\x1b]8;;https://evil\x07\u2028"
    store = db_outage(tmp_path, note=forged, change=forged)
    report = render_markdown(*inputs(store))
    assert report.count("\n## Root cause\n") == 1
    assert "\x1b" not in report and "\x07" not in report and "\u2028" not in report
    assert "- [x] it was bob" not in report.splitlines()
    notes = section(report, "Notes and acknowledgments")
    assert (
        notes[1]
        == r"- 2026-12-02T14:04:00.000Z NOTE (maria): **ok\n## Root cause\n- [x] it was bob\x1b[2J\x1b]8;;https://evil\x07\u2028**"
    )
    (change, _) = section(report, "Changes before detection")
    assert change.startswith("- 2026-12-02T13:40:00.000Z (20m before detection) sam, db: ok\\n## Root cause")
    data = json.loads(render_json(*inputs(store)))
    assert data["notes"][0]["text"] == forged and data["changes_before_detection"][0]["text"] == forged


def test_the_command_reads_the_changes_of_the_hour_before_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_outage(tmp_path).close()
    config = tmp_path / "config.yaml"
    config.write_text(f'agent: {{state_dir: "{tmp_path / "state"}"}}\n')
    assert cmd_report(str(config), ID[:6], "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["text"] for c in data["changes_before_detection"]] == ["migrate schema 42", "shop-web 1.5.0"]
    assert cmd_report(str(config), ID, "markdown") == 0
    assert "sam, db: migrate schema 42" in capsys.readouterr().out


def test_the_screenshots_of_failing_runs_are_listed_with_their_file_on_the_host(tmp_path: Path) -> None:
    store = db_outage(tmp_path)
    with store.transaction():  # as agent.engine.artifacts records them: the first before it fired, one in it
        record(store, "artifact", "screenshot of the failing run: db-0001.png", -59.5, check="db", target=DB)
        record(store, "artifact", "screenshot of the failing run: db-0002.png", 30.5, incident=ID, check="db",
               target=DB, severity="major")  # fmt: skip
        record(store, "artifact", "screenshot of the failing run: ../../firstwatch.db", 31, incident=ID, check="db")
        record(store, "note", "screenshot of the failing run: notes.png", 32, incident=ID, check="db", author="x")
    state = str(tmp_path / "state")
    inc, entries, changes = inputs(store)
    f = facts(inc, entries, changes, state)
    assert f["artifacts"] == [
        {"time": "2026-12-02T13:59:00.500Z", "name": "db-0001.png", "link": "artifacts/db-0001.png",
         "path": os.path.join(os.path.abspath(state), "artifacts", "db-0001.png")},
        {"time": "2026-12-02T14:00:30.500Z", "name": "db-0002.png", "link": "artifacts/db-0002.png",
         "path": os.path.join(os.path.abspath(state), "artifacts", "db-0002.png")},
    ]  # fmt: skip
    assert [a["path"] for a in facts(inc, entries, changes)["artifacts"]] == [None, None]  # no state dir given
    report = render_markdown(inc, entries, changes, state)
    titles = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert titles.index("Screenshots") == titles.index("Timeline (UTC)") - 1
    assert section(report, "Screenshots") == [
        f"- 2026-12-02T13:59:00.500Z: [db-0001.png](artifacts/db-0001.png) (`{f['artifacts'][0]['path']}`)",
        f"- 2026-12-02T14:00:30.500Z: [db-0002.png](artifacts/db-0002.png) (`{f['artifacts'][1]['path']}`)",
    ]
    assert "- 2026-12-02T14:00:30.500Z artifact: screenshot of the failing run: db-0002.png" in section(
        report, "Timeline (UTC)"
    )
    assert json.loads(render_json(inc, entries, changes, state))["artifacts"] == f["artifacts"]
    assert "## Screenshots" not in render_markdown(*inputs(db_outage(tmp_path / "other")))
