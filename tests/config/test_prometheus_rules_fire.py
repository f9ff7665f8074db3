"""The rules ``firstwatch rules`` writes fire when they should, judged by Prometheus itself
(``promtool test rules``, Debian's ``prometheus`` package; skipped without it, failing under CI):
a ``quorum: 2`` rule fires with 2 of 3 agents down and never with 1, a local rule fires with
one; value, duration and SLO burn rules fire on series named and labelled as the agents export
them. The series of the first test are the ``/metrics`` text of three real
:class:`agent.telemetry.metrics.Telemetry` (one per agent), so a metric or label name drifting
between the exporter and the rules fails here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from agent.config.load import parse_config
from agent.config.prometheus_rules import render, rule_groups
from agent.telemetry.config import TelemetryConfig
from agent.telemetry.metrics import Telemetry
from checks import CHECKS
from checks.base import Result
from tests.conftest import require_binary

CONFIG = """
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    runbook: https://wiki.example.com/rb/shop-home
    alerts:
      - {when: down, for: 1m, severity: critical, quorum: 2}
      - {when: down, severity: minor}
      - {when: tls.days_left < 14, severity: medium}
"""
TARGET = "https://shop.example.com/"
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def promtool_test(tmp_path: Path, config: str, tests: list[dict[str, object]]) -> None:
    binary = require_binary("promtool", "prometheus")
    (tmp_path / "rules.yaml").write_text(render(rule_groups(parse_config(config, "test.yaml", {}).checks)))
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run(
        [binary, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "rules.yaml").read_text()


def exported(agent: str, location: str, up: bool, days_left: float) -> list[tuple[str, float]]:
    """The gauge lines of one agent's ``/metrics`` after one http result: (series, value)."""
    t = Telemetry(TelemetryConfig(prometheus=True), agent, {"location": location}, "1")
    values = {"duration": 0.2, "status": 200.0, "tls.days_left": days_left} if up else {}
    result = Result("shop-home", "http", TARGET, up, values, None if up else "timeout", None, 0.0, 0.2)
    t.record_result(result, CHECKS["http"].VALUES)
    out = []
    for line in t.prometheus_text()[0].decode().splitlines():
        m = SERIES.match(line)
        if m and not line.startswith("#") and m.group(1).startswith("firstwatch_check_") and "_bucket" not in line:
            out.append((m.group(1) + (m.group(2) or ""), float(m.group(3))))
    return out


def test_a_quorum_of_two_fires_with_two_of_three_agents_down_and_a_local_rule_with_one(tmp_path: Path) -> None:
    # minute:     0 1 2 3 4 5 6 7 8 9 10
    # a1 (fra):   down from the start
    # a2 (nyc):   up until 5m, then down
    # a3 (sin):   up all along, its certificate 10 days from expiry
    timeline = {
        ("a1", "fra"): [False] * 11,
        ("a2", "nyc"): [True] * 5 + [False] * 6,
        ("a3", "sin"): [True] * 11,
    }
    input_series = []
    for (agent, location), ups in timeline.items():
        minutes = [dict(exported(agent, location, up, 10.0 if agent == "a3" else 60.0)) for up in ups]
        for series in dict.fromkeys(k for m in minutes for k in m):  # first seen first
            # a value a failed probe could not measure is no sample at that minute (_)
            values = " ".join(repr(m[series]) if series in m else "_" for m in minutes)
            input_series.append({"series": series, "values": values})
    assert any(s["series"].startswith('firstwatch_check_up{check_name="shop-home"') for s in input_series)

    def down(severity: str, rule: str, agents: int, quorum: int | None) -> dict[str, object]:
        labels = {"check_name": "shop-home", "check_target": TARGET, "severity": severity, "firstwatch_rule": rule}
        suffix = ""
        if quorum is not None:
            labels["quorum"] = str(quorum)
            suffix = f" (quorum {quorum})"
        return {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": f"shop-home {TARGET}: down from {agents} agent(s){suffix}",
                "runbook_url": "https://wiki.example.com/rb/shop-home",
            },
        }

    days = {
        "exp_labels": {
            "check_name": "shop-home", "check_target": TARGET, "severity": "medium",
            "firstwatch_rule": "tls.days_left < 14",
        },
        "exp_annotations": {
            "summary": f"shop-home {TARGET}: tls.days_left < 14 from 1 agent(s)",
            "runbook_url": "https://wiki.example.com/rb/shop-home",
        },
    }  # fmt: skip
    promtool_test(
        tmp_path,
        CONFIG,
        [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    # one agent down for 4 minutes: the local rule fires, the quorum never does
                    {"eval_time": "4m", "alertname": "FirstwatchDown", "exp_alerts": [down("minor", "down", 1, None)]},
                    # two down since 5m: pending for 1m at 5m, firing from 6m
                    {"eval_time": "5m", "alertname": "FirstwatchDown", "exp_alerts": [down("minor", "down", 2, None)]},
                    {
                        "eval_time": "7m",
                        "alertname": "FirstwatchDown",
                        "exp_alerts": [down("critical", "down for 1m", 2, 2), down("minor", "down", 2, None)],
                    },
                    {"eval_time": "7m", "alertname": "FirstwatchValue", "exp_alerts": [days]},
                ],
            }
        ],
    )


BURNS_AND_DURATION = """
checks:
  - name: api
    type: tcp
    target: "10.0.0.1:443"
    interval: 15s
    alerts: [{when: duration > 2s, for: 2m, severity: major}]
    slo:
      objective: 99%
      window: 7d
      alerts: [{burn: 10, long: 1h, short: 5m, severity: critical}]
"""


def test_duration_and_slo_burn_rules_fire_on_the_exported_series(tmp_path: Path) -> None:
    base = 'check_name="api",check_type="tcp",check_target="10.0.0.1:443",firstwatch_agent_name="a1"'
    burn = 'firstwatch_slo_burn_rate{check_name="api",check_target="10.0.0.1:443",firstwatch_agent_name="a1"'
    # 4 runs a minute (every 15s): 0.5s each until 5m, then 3s each; W = max(4 x 15s, 1m) = 1m
    input_series = [
        {"series": f"firstwatch_check_duration_seconds_count{{{base}}}", "values": "0+4x20"},
        {"series": f"firstwatch_check_duration_seconds_sum{{{base}}}", "values": "0+2x5 10+12x15"},
        # the long window burns past 10x all along; the short one only from 10m
        {"series": burn + ',window="1h"}', "values": "12x20"},
        {"series": burn + ',window="5m"}', "values": "2x9 40x10"},
    ]
    slow = {
        "exp_labels": {"check_name": "api", "check_target": "10.0.0.1:443", "severity": "major",
                       "firstwatch_rule": "duration > 2s for 2m"},
        "exp_annotations": {"summary": "api 10.0.0.1:443: duration > 2s from 1 agent(s)"},
    }  # fmt: skip
    burning = {
        "exp_labels": {"check_name": "api", "check_target": "10.0.0.1:443", "severity": "critical",
                       "firstwatch_rule": "error budget burn > 10x over 1h and 5m"},
        "exp_annotations": {"summary": "api 10.0.0.1:443: error budget burning 12.0x over 1h (and above 10x over 5m)"},
    }  # fmt: skip
    promtool_test(
        tmp_path,
        BURNS_AND_DURATION,
        [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "FirstwatchValue", "exp_alerts": []},
                    {"eval_time": "9m", "alertname": "FirstwatchValue", "exp_alerts": [slow]},
                    {"eval_time": "9m", "alertname": "FirstwatchSloBurn", "exp_alerts": []},
                    {"eval_time": "11m", "alertname": "FirstwatchSloBurn", "exp_alerts": [burning]},
                ],
            }
        ],
    )
