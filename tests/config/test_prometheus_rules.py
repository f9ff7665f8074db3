"""``firstwatch rules`` output (agent.config.prometheus_rules): ``promtool check rules`` accepts it
for every example config and a config with every kind of rule, one small config's YAML is exactly
the golden text below (stable, diffable), and names, numbers and hostile strings are written so
Prometheus reads them as meant. promtool is Debian's ``prometheus`` package: the tests that need
it skip without it and fail under CI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.config.load import parse_config
from agent.config.prometheus_rules import duration, literal, number, promql_string, rate_window, render, rule_groups
from agent.core.errors import ConfigError
from tests.conftest import require_binary
from tests.support import factories

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
ENV = factories.EXAMPLE_ENV

EVERYTHING = """
agent: {name: web-01, labels: {location: fra}}
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    interval: 30s
    runbook: https://wiki.example.com/rb/shop-home
    values_from_json: [queue.depth]
    alerts:
      - {when: down, for: 1m, severity: critical, quorum: 2, runbook: https://wiki.example.com/rb/shop-down}
      - {when: down, for: 2m, recover_for: 1m30s, severity: major}
      - {when: duration > 2s, for: 5m, recover_for: 1m, severity: major}
      - {when: first_byte > 800ms, severity: minor, quorum: 3}
      - {when: tls.days_left < 14, severity: medium}
      - {when: status != 200, severity: minor}
      - {when: body_bytes >= 1.5MiB, severity: minor}
      - {when: json.queue.depth > 100, severity: minor}
    slo: {objective: 99.9%, window: 28d, latency: 800ms}
  - name: box.local_1
    type: host
    mounts: ["/", '/mnt/we"ird\\path', "/srv/{{ x }}"]
    processes: [{name: web, match: nginx}]
    alerts:
      - {when: cpu > 90%, for: 10m, severity: minor}
      - {when: "disk[/] > 90%", severity: medium}
      - {when: 'disk[/mnt/we"ird\\path] > 80%', severity: medium}
      - {when: "disk[/srv/{{ x }}] > 80%", severity: medium}
      - {when: "process[web].count < 1", severity: major, quorum: 1}
      - {when: load5 > 4, severity: minor}
  - name: plugin
    type: command
    command: [/bin/true]
    interval: 5m
    alerts:
      - {when: exit_code != 0, severity: minor}
      - {when: perf.time > 2s, severity: minor}
  - name: db
    type: tcp
    target: "10.0.0.1:5432"
    interval: 5m
    alerts: [{when: duration > 10s, severity: minor}]
  - name: signup
    type: journey
    steps:
      - {name: home, url: "https://shop.example.com/"}
      - {name: login, url: "https://shop.example.com/login", method: POST}
    alerts:
      - {when: step.login.duration > 1s, severity: minor}
      - {when: steps < 2, severity: major, quorum: 2}
"""

SMALL = """
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    interval: 10s
    runbook: https://wiki.example.com/rb/shop-home
    alerts:
      - {when: down, for: 1m, severity: critical, quorum: 2}
      - {when: duration > 2s, for: 5m, recover_for: 1m, severity: major, runbook: https://wiki.example.com/rb/slow}
    slo:
      objective: 99.5%
      window: 7d
      alerts: [{burn: 10, long: 1h, short: 5m, severity: critical}]
  - name: plugin
    type: command
    command: [/bin/true]
    alerts:
      - {when: exit_code != 0, severity: minor}
      - {when: perf.time > 2s, severity: minor}
"""

GOLDEN = """\
# Prometheus rules for a central Prometheus scraping firstwatch agents (firstwatch rules).
# Generated from the config: edit the config, not this file.
# Assumes Prometheus scrapes the agents every 1m (firstwatch rules --scrape-interval 1m):
# a duration rule's mean spans at least 4 scrapes.
groups:
- name: firstwatch.shop-home
  rules:
  - alert: FirstwatchDown
    expr: count by (check_name, check_target) (firstwatch_check_up{check_name="shop-home"} == 0) >= 2
    for: 1m
    labels:
      check_name: shop-home
      severity: critical
      firstwatch_rule: down for 1m
      quorum: '2'
    annotations:
      summary: 'shop-home {{ $labels.check_target }}: down from {{ $value }} agent(s) (quorum 2)'
      runbook_url: https://wiki.example.com/rb/shop-home
  - alert: FirstwatchValue
    expr: (rate(firstwatch_check_duration_seconds_sum{check_name="shop-home"}[4m])\
 / rate(firstwatch_check_duration_seconds_count{check_name="shop-home"}[4m])) > 2
    for: 5m
    keep_firing_for: 1m
    labels:
      check_name: shop-home
      severity: major
      firstwatch_rule: duration > 2s for 5m
    annotations:
      summary: '{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }} duration > 2s \
(the mean over 4m)'
      runbook_url: https://wiki.example.com/rb/slow
  - alert: FirstwatchSloBurn
    expr: firstwatch_slo_burn_rate{check_name="shop-home",window="1h"} > 10 \
and ignoring (window) firstwatch_slo_burn_rate{check_name="shop-home",window="5m"} > 10
    labels:
      check_name: shop-home
      severity: critical
      firstwatch_rule: error budget burn > 10x over 1h and 5m
    annotations:
      summary: '{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }} error budget burning \
{{ $value | printf "%.1f" }}x over 1h (and above 10x over 5m)'
      runbook_url: https://wiki.example.com/rb/shop-home
- name: firstwatch.plugin
  rules:
  - alert: FirstwatchValue
    expr: firstwatch_check_exit_code{check_name="plugin"} != 0
    labels:
      check_name: plugin
      severity: minor
      firstwatch_rule: exit_code != 0
    annotations:
      summary: '{{ $labels.firstwatch_agent_name }}: plugin {{ $labels.check_target }} exit_code != 0'
  # skipped 'perf.time > 2s': perf.time's metric depends on the unit the plugin reports at run time \
(firstwatch_check_perf_seconds, _bytes, _ratio or firstwatch_check_perf)
"""


def rules_text(config: str, env: dict[str, str] | None = None) -> str:
    return render(rule_groups(parse_config(config, "test.yaml", env or {}).checks))


def promtool_check(tmp_path: Path, text: str) -> str:
    """``promtool check rules`` on ``text``: its output; fails the test when promtool refuses it."""
    binary = require_binary("promtool", "prometheus")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    done = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr + "\n" + text
    return done.stdout


def test_the_golden_config_is_exactly_this_yaml() -> None:
    assert rules_text(SMALL) == GOLDEN
    assert rules_text(SMALL) == rules_text(SMALL)


def test_the_golden_config_passes_promtool(tmp_path: Path) -> None:
    assert "SUCCESS: 4 rules found" in promtool_check(tmp_path, GOLDEN)


@pytest.mark.parametrize("path", [ROOT / "config" / "example.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_every_example_config_passes_promtool(path: Path, tmp_path: Path) -> None:
    try:
        cfg = parse_config(path.read_text(), str(path), ENV)
    except ConfigError:
        if path.name == "browser.yaml":
            require_binary("chromium", "chromium")  # the browser example validates only with it
        raise
    text = render(rule_groups(cfg.checks))
    promtool_check(tmp_path, text)
    rules = sum(len(g.rules) for g in rule_groups(cfg.checks))
    assert rules == sum(len(c.rules) for c in cfg.checks) - sum(len(g.skipped) for g in rule_groups(cfg.checks))


def test_every_kind_of_rule_passes_promtool(tmp_path: Path) -> None:
    text = rules_text(EVERYTHING)
    assert "SUCCESS: 21 rules found" in promtool_check(tmp_path, text), text


def test_every_kind_of_rule_has_its_shape() -> None:
    doc = yaml.safe_load(rules_text(EVERYTHING))
    rules = {(g["name"], r["labels"]["firstwatch_rule"]): r for g in doc["groups"] for r in g["rules"]}
    down = rules[("firstwatch.shop-home", "down for 1m")]
    assert down["alert"] == "FirstwatchDown" and down["for"] == "1m" and "keep_firing_for" not in down
    assert down["expr"] == 'count by (check_name, check_target) (firstwatch_check_up{check_name="shop-home"} == 0) >= 2'
    assert down["labels"] == {
        "check_name": "shop-home", "severity": "critical", "firstwatch_rule": "down for 1m", "quorum": "2"
    }  # fmt: skip
    assert down["annotations"]["runbook_url"] == "https://wiki.example.com/rb/shop-down"  # the rule's own
    local = rules[("firstwatch.shop-home", "down for 2m")]  # per agent: no aggregation, every label kept
    assert local["expr"] == 'firstwatch_check_up{check_name="shop-home"} == 0' and "quorum" not in local["labels"]
    assert local["keep_firing_for"] == "1m30s"
    assert local["annotations"]["runbook_url"] == "https://wiki.example.com/rb/shop-home"  # the check's
    assert local["annotations"]["summary"] == (
        "{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }} down"
    )
    slow = rules[("firstwatch.shop-home", "duration > 2s for 5m")]
    assert slow["expr"] == (  # 4 x the 1m scrape interval (> 4 x 30s): the mean of each series
        '(rate(firstwatch_check_duration_seconds_sum{check_name="shop-home"}[4m])'
        ' / rate(firstwatch_check_duration_seconds_count{check_name="shop-home"}[4m])) > 2'
    )
    assert slow["annotations"]["summary"].endswith(" duration > 2s (the mean over 4m)")
    assert rules[("firstwatch.shop-home", "first_byte > 800ms")]["expr"] == (
        'count by (check_name, check_target) (firstwatch_check_first_byte_seconds{check_name="shop-home"} > 0.8) >= 3'
    )
    assert rules[("firstwatch.shop-home", "tls.days_left < 14")]["expr"] == (
        'firstwatch_check_tls_days_left_days{check_name="shop-home"} < 14'
    )
    assert rules[("firstwatch.shop-home", "body_bytes >= 1.5MiB")]["expr"] == (
        'firstwatch_check_body_bytes{check_name="shop-home"} >= 1572864'
    )
    assert rules[("firstwatch.shop-home", "json.queue.depth > 100")]["expr"] == (
        'firstwatch_check_json{check_name="shop-home",json_path="queue.depth"} > 100'
    )
    assert rules[("firstwatch.shop-home", "tls.days_left < 14")]["annotations"]["summary"] == (
        "{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }} tls.days_left < 14"
    )
    burns = [r for (g, _), r in rules.items() if g == "firstwatch.shop-home" and r["alert"] == "FirstwatchSloBurn"]
    assert [r["labels"]["severity"] for r in burns] == ["critical", "major", "minor"]
    assert burns[0]["expr"] == (
        'firstwatch_slo_burn_rate{check_name="shop-home",window="1h"} > 14.4'
        ' and ignoring (window) firstwatch_slo_burn_rate{check_name="shop-home",window="5m"} > 14.4'
    )
    assert all(r["annotations"]["summary"].startswith("{{ $labels.firstwatch_agent_name }}: ") for r in burns)
    assert 'window="3d"} > 1 and' in burns[2]["expr"]
    cpu = rules[("firstwatch.box.local_1", "cpu > 90% for 10m")]["expr"]
    assert cpu == 'system_cpu_utilization{check_name="box.local_1"} > 0.9'  # percent exported as 0..1
    assert rules[("firstwatch.box.local_1", "process[web].count < 1")]["labels"]["quorum"] == "1"
    assert rules[("firstwatch.box.local_1", "process[web].count < 1")]["expr"] == (
        "count by (check_name, check_target)"
        ' (firstwatch_check_process_count{check_name="box.local_1",process_label="web"} < 1) >= 1'
    )
    assert (
        'system_cpu_load_average_5m{check_name="box.local_1"} > 4'
        in rules[("firstwatch.box.local_1", "load5 > 4")]["expr"]
    )
    assert "[20m]" in rules[("firstwatch.db", "duration > 10s")]["expr"]  # 4 x 5m (> 4 x 1m)
    first_byte = rules[("firstwatch.shop-home", "first_byte > 800ms")]["annotations"]["summary"]
    assert (
        first_byte == "shop-home {{ $labels.check_target }}: first_byte > 800ms from {{ $value }} agent(s) (quorum 3)"
    )
    assert (
        'firstwatch_check_step_duration_seconds{check_name="signup",step_name="login"} > 1'
        in rules[("firstwatch.signup", "step.login.duration > 1s")]["expr"]
    )
    assert not any("perf" in rule for _, rule in rules)


def test_a_rule_prometheus_cannot_judge_is_a_comment_not_silence() -> None:
    groups = rule_groups(parse_config(EVERYTHING, "test.yaml", {}).checks)
    skipped = [s for g in groups for s in g.skipped]
    assert [(s.check, s.rule) for s in skipped] == [("plugin", "perf.time > 2s")]
    assert "# skipped 'perf.time > 2s': perf.time's metric depends on the unit" in render(groups)


def test_hostile_strings_are_escaped_for_promql_and_templates() -> None:
    doc = yaml.safe_load(rules_text(EVERYTHING))
    rules = {r["labels"]["firstwatch_rule"]: r for g in doc["groups"] for r in g["rules"]}
    weird = rules['disk[/mnt/we"ird\\path] > 80%']
    assert 'system_filesystem_mountpoint="/mnt/we\\"ird\\\\path"} > 0.8' in weird["expr"]
    braces = rules['disk[/srv/{{ "{{" }} x }}] > 80%']  # the label is a template: the literal {{ escaped
    assert 'system_filesystem_mountpoint="/srv/{{ x }}"}' in braces["expr"]  # PromQL is no template
    assert braces["annotations"]["summary"] == (
        '{{ $labels.firstwatch_agent_name }}: box.local_1 {{ $labels.check_target }} disk[/srv/{{ "{{" }} x }}] > 80%'
    )


def test_the_small_helpers() -> None:
    assert promql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert literal("x {{ y }}") == 'x {{ "{{" }} y }}'
    assert [duration(s) for s in (0, 0.5, 10, 90, 3600, 86400 * 3 + 1.25)] == [
        "0s",
        "500ms",
        "10s",
        "1m30s",
        "1h",
        "3d1s250ms",
    ]
    assert [rate_window(s, 15) for s in (5, 10, 30, 300, 0.5, 20.2)] == [60, 60, 120, 1200, 60, 81]
    assert [rate_window(s) for s in (5, 30, 60, 300)] == [240, 240, 240, 1200]  # at Prometheus' default 1m
    assert [rate_window(0.5, s) for s in (1, 0.3, 2.25)] == [4, 2, 9]  # whole seconds, rounded up
    assert [number(x) for x in (90 * 0.01, 14.0, 1e12, -5.0, 1.5 * 1024**2, 0.8)] == [
        "0.9",
        "14",
        "1e+12",
        "-5",
        "1572864",
        "0.8",
    ]


def test_a_config_without_rules_is_an_empty_rule_file(tmp_path: Path) -> None:
    text = rules_text("checks:\n  - {name: a, type: tcp, target: '127.0.0.1:9', alerts: []}\n")
    assert text.endswith("groups: []\n")
    promtool_check(tmp_path, text)


def test_the_same_rule_twice_is_one_alert_and_a_comment(tmp_path: Path) -> None:
    twice = "[{when: down, severity: minor}, {when: down, severity: minor, recover_for: 1m}]"
    text = rules_text(f"checks:\n  - {{name: a, type: tcp, target: '10.0.0.1:9', alerts: {twice}}}\n")
    assert "# skipped 'down': the same alert as an earlier rule of the check" in text
    assert "SUCCESS: 1 rules found" in promtool_check(tmp_path, text)


def test_the_scrape_interval_sets_the_duration_window_and_the_header(tmp_path: Path) -> None:
    alerts = "[{when: duration > 1s, severity: minor}]"
    config = f"checks:\n  - {{name: a, type: tcp, target: '10.0.0.1:9', interval: 10s, alerts: {alerts}}}\n"
    for scrape, window in ((60.0, "4m"), (15.0, "1m"), (1.0, "40s"), (120.0, "8m")):
        groups = rule_groups(parse_config(config, "test.yaml", {}).checks, scrape)
        text = render(groups, scrape)
        [rule] = yaml.safe_load(text)["groups"][0]["rules"]
        assert f"[{window}]" in rule["expr"] and rule["annotations"]["summary"].endswith(f"(the mean over {window})")
        every = duration(scrape)
        assert (
            f"# Assumes Prometheus scrapes the agents every {every} (firstwatch rules --scrape-interval {every})"
            in text
        )
        promtool_check(tmp_path, text)


AGGREGATION = re.compile(r"\b(count|max|min|sum|avg|group|topk|bottomk)\s*(by|without)?\s*\(")


def test_two_hosts_localhost_checks_stay_two_alerts_per_agent_labels() -> None:
    """A per-agent rule aggregates nothing: no ``by``, no ``count``, no ``max`` anywhere."""
    doc = yaml.safe_load(rules_text(EVERYTHING))
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        local = "quorum" not in rule["labels"]
        assert local == (not rule["expr"].startswith("count by (check_name, check_target) ")), rule
        assert local == rule["annotations"]["summary"].startswith("{{ $labels.firstwatch_agent_name }}: "), rule
        if local:
            assert not AGGREGATION.search(rule["expr"]), rule
