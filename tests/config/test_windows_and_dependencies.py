"""``maintenance:``, ``depends_on`` and ``runbook`` in the config: each error exactly as users read
it, at its line and column; a valid config compiles its windows; ``firstwatch validate`` refuses a
dependency cycle with exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest

from agent.alerting.windows import Window
from agent.config.load import parse_config
from agent.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

CHECKS = """\
checks:
  - {name: db, type: tcp, target: "10.0.0.5:5432"}
  - {name: shop-web, type: http, url: "https://shop.example.com/"}
"""  # lines 1-3: what the maintenance cases below refer to


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(dedent(text), "c.yaml", env={})
    return [str(i) for i in info.value.issues]


def window_errors(entry: str) -> list[str]:
    """The errors of one ``maintenance:`` entry (written from line 5, column 5) after CHECKS."""
    return errors(CHECKS + "maintenance:\n  - " + dedent(entry).strip().replace("\n", "\n    ") + "\n")


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


# --- depends_on


def test_a_dependency_on_an_unknown_check_suggests_the_close_one() -> None:
    text = """\
    checks:
      - {name: db, type: tcp, target: "h:1"}
      - {name: web, type: tcp, target: "h:2", depends_on: [dbb, nope]}
    """
    assert errors(text) == [
        "c.yaml:3:56: checks[1].depends_on[0]: unknown check 'dbb'; did you mean 'db'?",
        "c.yaml:3:61: checks[1].depends_on[1]: unknown check 'nope'",
    ]


def test_a_dependency_cycle_is_reported_once_at_the_first_check_of_the_cycle() -> None:
    text = """\
    checks:
      - name: lb
        type: tcp
        target: "h:1"
        depends_on: [db]
      - name: db
        type: tcp
        target: "h:2"
        depends_on: [app]
      - name: app
        type: tcp
        target: "h:3"
        depends_on: [lb]
    """
    assert errors(text) == ["c.yaml:5:5: checks[0].depends_on: dependency cycle: lb -> db -> app -> lb"]


def test_a_check_depending_on_itself_is_a_cycle() -> None:
    text = """\
    checks:
      - {name: db, type: tcp, target: "h:1"}
      - {name: web, type: tcp, target: "h:2", depends_on: [db, web]}
    """
    assert errors(text) == ["c.yaml:3:43: checks[1].depends_on: dependency cycle: web -> web"]


def test_each_cycle_is_reported_and_a_chain_is_not_a_cycle() -> None:
    text = """\
    checks:
      - {name: a, type: tcp, target: "h:1", depends_on: [b]}
      - {name: b, type: tcp, target: "h:1", depends_on: [a, c]}
      - {name: c, type: tcp, target: "h:1", depends_on: [d]}
      - {name: d, type: tcp, target: "h:1"}
      - {name: e, type: tcp, target: "h:1", depends_on: [f]}
      - {name: f, type: tcp, target: "h:1", depends_on: [e]}
    """
    assert errors(text) == [
        "c.yaml:2:41: checks[0].depends_on: dependency cycle: a -> b -> a",
        "c.yaml:6:41: checks[4].depends_on: dependency cycle: e -> f -> e",
    ]


def test_a_dependency_on_a_check_whose_entry_has_errors_is_not_unknown() -> None:
    text = """\
    checks:
      - {name: db, type: tcp, target: "h:1", intervall: 5s}
      - {name: web, type: tcp, target: "h:2", depends_on: [db]}
    """
    assert errors(text) == ["c.yaml:2:42: checks[0].intervall: unknown option; did you mean 'interval'?"]


def test_a_long_chain_of_dependencies_is_fine_and_a_long_cycle_is_found() -> None:
    n = 3000  # no recursion limit on the way
    lines = ["checks:"] + [f'  - {{name: c{i}, type: tcp, target: "h:1", depends_on: [c{i + 1}]}}' for i in range(n)]
    chain = "\n".join([*lines, f'  - {{name: c{n}, type: tcp, target: "h:1"}}']) + "\n"
    assert len(parse_config(chain, "c.yaml", env={}).checks) == n + 1
    cycle = "\n".join([*lines, f'  - {{name: c{n}, type: tcp, target: "h:1", depends_on: [c0]}}']) + "\n"
    (only,) = errors(cycle)
    assert only.startswith("c.yaml:2:42: checks[0].depends_on: dependency cycle: c0 -> c1 -> c2 -> ")
    assert only.endswith(f" -> c{n} -> c0")


# --- runbook


def test_runbooks_must_be_http_urls_on_the_check_and_on_each_rule() -> None:
    text = """\
    checks:
      - name: web
        type: http
        url: https://shop.example.com/
        runbook: wiki/shop-web
        alerts:
          - {when: down, severity: critical, runbook: "ftp://wiki.example.com/rb"}
          - {when: duration > 2s, severity: minor, runbook: "https://wiki.example.com/rb/slow"}
    """
    assert errors(text) == [
        "c.yaml:5:14: checks[0].runbook: runbook must be an http:// or https:// URL, got 'wiki/shop-web'",
        "c.yaml:7:51: checks[0].alerts[0].runbook: runbook must be an http:// or https:// URL, "
        "got 'ftp://wiki.example.com/rb'",
    ]


def test_a_bad_runbook_in_defaults_is_reported_once_where_it_is_written() -> None:
    text = """\
    defaults: {runbook: "https://"}
    checks:
      - {name: a, type: tcp, target: "h:1"}
      - {name: b, type: tcp, target: "h:1"}
    """
    assert errors(text) == ["c.yaml:1:21: defaults.runbook: runbook must be an http:// or https:// URL, got 'https://'"]


# --- maintenance


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{name: w, checks: [db, shop-wbe], schedule: '0 3 * * SUN', duration: 2h}",
            ["c.yaml:5:28: maintenance[0].checks[1]: unknown check 'shop-wbe'; did you mean 'shop-web'?"],
        ),
        (
            "{name: w, schedule: '0 3 * * SUN', duration: 2h}",
            ["c.yaml:5:5: maintenance[0]: a maintenance window needs 'checks' or 'labels' (or both)"],
        ),
        (
            "{name: w, checks: [db]}",
            ["c.yaml:5:5: maintenance[0]: missing 'schedule' (with 'duration') or 'start' (with 'end' or 'duration')"],
        ),
        (
            "{name: w, labels: {team: shop}, schedule: '0 3 * * SUN'}",
            ["c.yaml:5:5: maintenance[0]: missing required option 'duration' (how long each occurrence lasts)"],
        ),
        (
            "{name: w, checks: [db], start: 2026-12-05T22:00:00Z}",
            ["c.yaml:5:5: maintenance[0]: missing 'end' or 'duration' (when the window ends)"],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 2h, start: 2026-12-05T22:00:00Z}",
            [
                "c.yaml:5:75: maintenance[0].start: set either 'schedule' (a repeating window) or 'start' "
                "(a one-off), not both"
            ],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 2h, end: 2026-12-05T22:00:00Z}",
            ["c.yaml:5:73: maintenance[0].end: 'end' goes with 'start'; a schedule takes a 'duration'"],
        ),
        (
            "{name: w, checks: [db], start: 2026-12-05T22:00:00Z, duration: 1h, end: 2026-12-06T02:00:00Z}",
            ["c.yaml:5:77: maintenance[0].end: set either 'end' or 'duration', not both"],
        ),
        (
            "{name: w, checks: [db], start: 2026-12-05T22:00:00Z, end: 2026-12-05T21:00:00Z}",
            ["c.yaml:5:63: maintenance[0].end: end must be after start (2026-12-05T22:00:00+00:00)"],
        ),
        (
            "{name: w, checks: [db], start: 2026-12-05T22:00:00Z, end: 2026-12-05T22:00:00Z}",
            ["c.yaml:5:63: maintenance[0].end: end must be after start (2026-12-05T22:00:00+00:00)"],
        ),
        (
            "{name: w, checks: [db], start: 2026-12-05T22:00:00, end: 2026-12-06T02:00:00Z}",
            [
                "c.yaml:5:36: maintenance[0].start: no time zone in 2026-12-05T22:00:00: "
                "add Z for UTC or an offset such as +01:00"
            ],
        ),
        (
            "{name: w, checks: [db], start: '2026-12-05', duration: 1d}",
            [
                "c.yaml:5:36: maintenance[0].start: no time zone in 2026-12-05T00:00:00: "
                "add Z for UTC or an offset such as +01:00"
            ],
        ),
        (
            "{name: w, checks: [db], start: 'Saturday night', duration: 1h}",
            [
                "c.yaml:5:36: maintenance[0].start: invalid date and time 'Saturday night': "
                "write it as 2026-12-05T22:00:00Z"
            ],
        ),
        (
            "{name: w, checks: [db], schedule: '0 25 * * SUN', duration: 2h}",
            ["c.yaml:5:39: maintenance[0].schedule: invalid schedule '0 25 * * SUN': bad hour field"],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN *', duration: 2h}",
            [
                "c.yaml:5:39: maintenance[0].schedule: invalid schedule '0 3 * * SUN *': expected 5 fields "
                "(minute hour day-of-month month day-of-week), got 6"
            ],
        ),
        (
            "{name: w, checks: [db], schedule: '@weekly', duration: 2h}",
            [
                "c.yaml:5:39: maintenance[0].schedule: invalid schedule '@weekly': expected 5 fields "
                "(minute hour day-of-month month day-of-week), got 1"
            ],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 2h, timezone: Europe/Berln}",
            ["c.yaml:5:78: maintenance[0].timezone: unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?"],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 2h, timezone: Berlin}",
            ["c.yaml:5:78: maintenance[0].timezone: unknown time zone 'Berlin'; did you mean 'Europe/Berlin'?"],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 2h, timezone: CEST}",
            [
                "c.yaml:5:78: maintenance[0].timezone: unknown time zone 'CEST' "
                "(an IANA name such as Europe/Berlin or UTC)"
            ],
        ),
        (
            "{name: w, checks: [db], schedule: '0 3 * * SUN', duration: 0s}",
            ["c.yaml:5:64: maintenance[0].duration: must be greater than 0"],
        ),
        (
            "{name: sunday patching, checks: [db], schedule: '0 3 * * SUN', duration: 2h}",
            ["c.yaml:5:12: maintenance[0].name: invalid name 'sunday patching': use letters, digits, '.', '_' and '-'"],
        ),
        (
            "{name: w, checks: [db], schedul: '0 3 * * SUN', duration: 2h}",
            ["c.yaml:5:29: maintenance[0].schedul: unknown option; did you mean 'schedule'?"],
        ),
    ],
)
def test_each_maintenance_error_at_its_line_and_column(entry: str, expected: list[str]) -> None:
    assert window_errors(entry) == expected


def test_every_error_of_every_window_at_once() -> None:
    text = CHECKS + dedent(
        """\
        maintenance:
          - name: sunday-patching
            checks: [db, shop]
            schedule: "61 3 * * SUN"
            duration: 2h
            timezone: Europe/Berln
          - name: sunday-patching
            labels: {team: shop}
            start: 2026-12-05T22:00:00Z
            duration: 1h
          - name: sunday-patching
            checks: [db]
            start: 2026-12-05T22:00:00Z
            duration: 1h
        """
    )
    assert errors(text) == [
        "c.yaml:6:18: maintenance[0].checks[1]: unknown check 'shop'; did you mean 'shop-web'?",
        "c.yaml:7:15: maintenance[0].schedule: invalid schedule '61 3 * * SUN': bad minute field",
        "c.yaml:9:15: maintenance[0].timezone: unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?",
        "c.yaml:10:11: maintenance[1].name: duplicate maintenance window name 'sunday-patching' (first used on line 5)",
        "c.yaml:14:11: maintenance[2].name: duplicate maintenance window name 'sunday-patching' (first used on line 5)",
    ]


def test_maintenance_must_be_a_list_of_mappings() -> None:
    assert errors(CHECKS + "maintenance: {name: w}\n") == ["c.yaml:4:14: maintenance: expected a list, got a mapping"]


def test_a_valid_config_compiles_its_windows() -> None:
    text = CHECKS.replace(
        '{name: shop-web, type: http, url: "https://shop.example.com/"}',
        '{name: shop-web, type: http, url: "https://shop.example.com/", depends_on: [db],'
        " runbook: https://wiki.example.com/runbooks/shop-web,"
        " alerts: [{when: down, for: 1m, severity: critical, runbook: https://wiki.example.com/rb/shop-down}]}",
    ) + dedent(
        """\
        maintenance:
          - name: sunday-patching
            checks: [db, shop-web]
            schedule: "0 3 * * SUN"
            duration: 2h
            timezone: Europe/Berlin
          - name: migration
            checks: [shop-web]
            start: 2026-12-05T22:00:00Z
            end: 2026-12-06T02:00:00Z
          - name: shop-team
            labels: {team: shop}
            start: 2026-12-24T18:00:00+01:00
            duration: 1d
        """
    )
    cfg = parse_config(text, "c.yaml", env={})
    web = cfg.checks[1]
    assert web.policy.depends_on == ["db"]
    assert web.policy.runbook == "https://wiki.example.com/runbooks/shop-web"
    assert web.rules[0].runbook == "https://wiki.example.com/rb/shop-down"
    assert cfg.maintenance == (
        Window(
            "sunday-patching", frozenset({"db", "shop-web"}), None, 7200.0, "0 3 * * SUN", ZoneInfo("Europe/Berlin")
        ),
        Window("migration", frozenset({"shop-web"}), None, 4 * 3600.0, start=utc(2026, 12, 5, 22)),
        Window("shop-team", None, {"team": "shop"}, 86400.0, start=utc(2026, 12, 24, 17)),
    )
    patching, migration, _ = cfg.maintenance
    assert patching.active(utc(2026, 12, 6, 2, 30)) == utc(2026, 12, 6, 4)  # Sunday 03:30 CET
    assert migration.active(utc(2026, 12, 6, 1)) == utc(2026, 12, 6, 2)


def test_no_maintenance_key_means_no_windows() -> None:
    assert parse_config(CHECKS, "c.yaml", env={}).maintenance == ()


def test_validate_exits_78_on_a_dependency_cycle(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        dedent(
            """\
            checks:
              - {name: db, type: tcp, target: "10.0.0.5:5432", depends_on: [web]}
              - {name: web, type: tcp, target: "10.0.0.6:443", depends_on: [db]}
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's agent, whatever is installed
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "validate", "-c", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 78
    assert proc.stderr.splitlines() == [
        f"{config}:2:52: checks[0].depends_on: dependency cycle: db -> web -> db",
        "firstwatch: 1 config error(s)",
    ]
