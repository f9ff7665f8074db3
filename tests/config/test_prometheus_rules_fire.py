"""The rules ``firstwatch rules`` writes fire when they should, judged by Prometheus itself
(``promtool test rules``, Debian's ``prometheus`` package; skipped without it, failing under CI):
a ``quorum: 2`` rule fires once with 2 of 3 agents down and never with 1; a local rule (no
quorum) fires per agent, with that agent's labels (two agents down: two alerts), and its ``for:``
is not met by agents taking turns; value, duration and SLO burn rules fire on series named and
labelled as the agents export them, and a duration rule's window holds enough scrapes to fire
at Prometheus' default 1m scrape interval. The series of the first test are the ``/metrics`` text of three real
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


def promtool_test(tmp_path: Path, config: str, tests: list[dict[str, object]], evaluation: str = "1m") -> None:
    binary = require_binary("promtool", "prometheus")
    (tmp_path / "rules.yaml").write_text(render(rule_groups(parse_config(config, "test.yaml", {}).checks)))
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": evaluation, "tests": tests}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run(
        [binary, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "rules.yaml").read_text()


def scraped(agent: str) -> dict[str, str]:
    """The labels Prometheus adds to an agent's series when it scrapes it."""
    return {"instance": f"probe-{agent}:9464", "job": "firstwatch"}


def exported(agent: str, location: str, up: bool, days_left: float) -> list[tuple[str, float]]:
    """The gauge lines of one agent's ``/metrics`` after one http result, as Prometheus stores
    them once scraped (``instance`` and ``job`` added): (series, value)."""
    added = "".join(f',{k}="{v}"' for k, v in scraped(agent).items())
    t = Telemetry(TelemetryConfig(prometheus=True), agent, {"location": location}, "1")
    values = {"duration": 0.2, "status": 200.0, "tls.days_left": days_left} if up else {}
    result = Result("shop-home", "http", TARGET, up, values, None if up else "timeout", None, 0.0, 0.2)
    t.record_result(result, CHECKS["http"].VALUES)
    out = []
    for line in t.prometheus_text()[0].decode().splitlines():
        m = SERIES.match(line)
        if m and not line.startswith("#") and m.group(1).startswith("firstwatch_check_") and "_bucket" not in line:
            assert m.group(2), line
            out.append((m.group(1) + m.group(2)[:-1] + added + "}", float(m.group(3))))
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

    runbook = "https://wiki.example.com/rb/shop-home"

    def quorum_down(agents: int) -> dict[str, object]:
        """The quorum rule's one alert: by check and target, whichever agents they are."""
        labels = {"check_name": "shop-home", "check_target": TARGET, "severity": "critical",
                  "firstwatch_rule": "down for 1m", "quorum": "2"}  # fmt: skip
        summary = f"shop-home {TARGET}: down from {agents} agent(s) (quorum 2)"
        return {"exp_labels": labels, "exp_annotations": {"summary": summary, "runbook_url": runbook}}

    def here(agent: str, location: str, severity: str, rule: str, what: str) -> dict[str, object]:
        """A local rule's alert: one per agent, with every label of that agent's series."""
        labels = {"check_name": "shop-home", "check_type": "http", "check_target": TARGET,
                  "firstwatch_agent_name": agent, "location": location, **scraped(agent),
                  "severity": severity, "firstwatch_rule": rule}  # fmt: skip
        summary = f"{agent}: shop-home {TARGET} {what}"
        return {"exp_labels": labels, "exp_annotations": {"summary": summary, "runbook_url": runbook}}

    def local_down(agent: str, location: str) -> dict[str, object]:
        return here(agent, location, "minor", "down", "down")

    days = here("a3", "sin", "medium", "tls.days_left < 14", "tls.days_left < 14")
    promtool_test(
        tmp_path,
        CONFIG,
        [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    # one agent down for 4 minutes: the local rule fires for it, the quorum never does
                    {"eval_time": "4m", "alertname": "FirstwatchDown", "exp_alerts": [local_down("a1", "fra")]},
                    # two down since 5m: the local rule is two alerts, one per agent; the quorum
                    # rule is pending for 1m at 5m, firing from 6m: one alert for both
                    {
                        "eval_time": "5m",
                        "alertname": "FirstwatchDown",
                        "exp_alerts": [local_down("a1", "fra"), local_down("a2", "nyc")],
                    },
                    {
                        "eval_time": "7m",
                        "alertname": "FirstwatchDown",
                        "exp_alerts": [quorum_down(2), local_down("a1", "fra"), local_down("a2", "nyc")],
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
    # 4 runs a minute (every 15s), scraped every minute: 0.5s each until 5m, then 3s each;
    # W = max(4 x 15s, 4 x the default 1m scrape) = 4m. Rules evaluated every 30s, half of them
    # between two scrapes: a [1m] window there holds one sample, no rate, and for: never met.
    input_series = [
        {"series": f"firstwatch_check_duration_seconds_count{{{base}}}", "values": "0+4x20"},
        {"series": f"firstwatch_check_duration_seconds_sum{{{base}}}", "values": "0+2x5 10+12x15"},
        # the long window burns past 10x all along; the short one only from 10m
        {"series": burn + ',window="1h"}', "values": "12x20"},
        {"series": burn + ',window="5m"}', "values": "2x9 40x10"},
    ]
    agent = {"check_name": "api", "check_target": "10.0.0.1:443", "firstwatch_agent_name": "a1"}
    slow = {
        "exp_labels": {**agent, "check_type": "tcp", "severity": "major", "firstwatch_rule": "duration > 2s for 2m"},
        "exp_annotations": {"summary": "a1: api 10.0.0.1:443 duration > 2s (the mean over 4m)"},
    }
    burning = {  # the long window's series: its labels, window too
        "exp_labels": {**agent, "window": "1h", "severity": "critical",
                       "firstwatch_rule": "error budget burn > 10x over 1h and 5m"},
        "exp_annotations": {
            "summary": "a1: api 10.0.0.1:443 error budget burning 12.0x over 1h (and above 10x over 5m)"
        },
    }  # fmt: skip
    promtool_test(
        tmp_path,
        BURNS_AND_DURATION,
        [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    # the mean over [5m, 9m] is 2.25s: pending from 9m, firing from 11m
                    {"eval_time": "5m", "alertname": "FirstwatchValue", "exp_alerts": []},
                    {"eval_time": "10m30s", "alertname": "FirstwatchValue", "exp_alerts": []},
                    {"eval_time": "11m30s", "alertname": "FirstwatchValue", "exp_alerts": [slow]},
                    {"eval_time": "9m30s", "alertname": "FirstwatchSloBurn", "exp_alerts": []},
                    {"eval_time": "11m", "alertname": "FirstwatchSloBurn", "exp_alerts": [burning]},
                ],
            }
        ],
        evaluation="30s",
    )


TAKING_TURNS = """
checks:
  - name: box
    type: host
    alerts: [{when: down, for: 2m, severity: major}, {when: cpu > 90%, severity: minor}]
"""


def test_a_local_rule_is_judged_per_agent_not_by_agents_taking_turns(tmp_path: Path) -> None:
    """Host checks: ``check_target="localhost"`` on every agent. Two hosts down in turns, a minute
    each, never meet ``for: 2m`` (each host is up every other minute); two hosts' CPU above 90% is
    two alerts, each naming its host."""

    def labels(agent: str) -> str:
        return f'check_name="box",check_type="host",check_target="localhost",firstwatch_agent_name="{agent}"'

    input_series = [
        {"series": f"firstwatch_check_up{{{labels('h1')}}}", "values": "0 1 0 1 0 1 0 1 0 1 0"},
        {"series": f"firstwatch_check_up{{{labels('h2')}}}", "values": "1 0 1 0 1 0 1 0 1 0 1"},
        {"series": f"system_cpu_utilization{{{labels('h1')}}}", "values": "0.95x10"},
        {"series": f"system_cpu_utilization{{{labels('h2')}}}", "values": "0.97x10"},
    ]

    def hot(agent: str) -> dict[str, object]:
        return {
            "exp_labels": {"check_name": "box", "check_type": "host", "check_target": "localhost",
                           "firstwatch_agent_name": agent, "severity": "minor", "firstwatch_rule": "cpu > 90%"},
            "exp_annotations": {"summary": f"{agent}: box localhost cpu > 90%"},
        }  # fmt: skip

    promtool_test(
        tmp_path,
        TAKING_TURNS,
        [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": f"{m}m", "alertname": "FirstwatchDown", "exp_alerts": []} for m in range(11)
                ]
                + [{"eval_time": "5m", "alertname": "FirstwatchValue", "exp_alerts": [hot("h1"), hot("h2")]}],
            }
        ],
    )
