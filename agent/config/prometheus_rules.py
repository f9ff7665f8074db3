"""Prometheus rule groups for a config (``firstwatch rules``): a central Prometheus that scrapes
several agents' ``/metrics`` judges the config's alerts, each agent's as that agent would and the
``quorum`` ones across agents.

Pure: validated checks (:class:`agent.config.load.CheckSpec`) and the scrape interval Prometheus
uses -> typed records (:func:`rule_groups`) -> YAML text (:func:`render`, whose header says the
scrape interval the rules assume). No clock, no I/O, so the output of one config is the same on
every run (groups and rules in config order), fit for a diff in git.

One group per check, named ``firstwatch.<check name>``; in it, one alerting rule per rule of the
check that Prometheus can judge. Each agent's series carries ``firstwatch_agent_name`` and the
agent's labels (``location``), and Prometheus adds ``instance``. Two shapes:

- A rule **without** ``quorum`` is judged per agent, exactly as the agent judges it: the
  condition alone, no aggregation, so the alert keeps every label of the series (agent name and
  labels, ``instance``, ``check_target``): two hosts' ``localhost`` host checks are two alerts,
  and ``for:`` is met by one agent, never by agents taking turns. Its summary names the agent:
  ``{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }} down``.
- A rule **with** ``quorum: N`` counts agents: ``count by (check_name, check_target) (CONDITION)
  >= N``, one alert per check and target whichever agents they are; ``$value`` is the number of
  agents, in its summary ``shop-home {{ $labels.check_target }}: down from {{ $value }} agent(s)
  (quorum 2)``.

The conditions, by alert name (valid metric names):

- ``FirstwatchDown``: ``when: down``: ``firstwatch_check_up{check_name="shop-home"} == 0``.
- ``FirstwatchValue``: ``when: VALUE OP QUANTITY``, on the gauge the value is exported as
  (:func:`agent.telemetry.values.route`, so the name is computed in one place):
  ``firstwatch_check_tls_days_left_days{check_name="shop-home"} < 14``. The threshold is in the
  exported unit (seconds, bytes, days; host percentages that are exported as 0..1 ratios are
  scaled: ``cpu > 90%`` is ``system_cpu_utilization > 0.9``). ``duration`` is a histogram, so
  its value is the mean over a window W, per series:
  ``(rate(firstwatch_check_duration_seconds_sum{...}[W]) / rate(firstwatch_check_duration_seconds_count{...}[W]))
  > 2``, W = max(4 x the check's interval, 4 x the scrape interval) rounded up to whole seconds:
  at least 4 runs and 4 scrapes, as ``rate`` needs 2 samples in W at the very least (at
  Prometheus' default 1m scrape, a ``[1m]`` range would often hold one and never fire). The
  summary says "the mean over W": smoother than the agent's judgement of each run.
- ``FirstwatchSloBurn``: one per burn alert of a check's ``slo`` (never a quorum), on the agents'
  own burn-rate gauges (their ``window`` label is :func:`agent.alerting.slo.span` of the window):
  ``firstwatch_slo_burn_rate{check_name="shop-home",window="1h"} > 14.4 and ignoring (window)
  firstwatch_slo_burn_rate{check_name="shop-home",window="5m"} > 14.4``; ``$value`` is the
  agent's long-window burn. The agent pages one burn alert per SLO (the most severe); Prometheus
  judges each alone, so the shipped ``config/fleet/alertmanager.yml`` inhibits the lower ones.

``for:`` is the rule's ``for``, ``keep_firing_for:`` its ``recover_for`` when above 0 (Prometheus
2.42 or later). Labels: ``check_name`` (as in the series; it tells apart two checks' rules of
the same text, which ``promtool check rules`` counts as duplicates otherwise), ``severity``,
``firstwatch_rule`` (the rule's text, ``down for 1m``: it tells the rules of one check apart),
``quorum`` (``"2"``; absent on a per-agent rule, which the agent pages by itself too).
Annotations: ``summary`` and ``runbook_url`` (the rule's runbook, else the check's; absent when
none).

A rule Prometheus cannot judge from the exported series is skipped with a YAML comment saying why
(and :class:`Skipped` records, which the command prints on stderr as warnings): a plugin's
``perf.LABEL``, whose metric name depends on the unit the plugin reports at run time; a second
rule of a check with the same text and severity (the same alert twice). Label values in selectors
are PromQL strings (escaped), and literal text in labels and annotations cannot start a template.
``impact:`` and ``depends_on`` are judged by each agent only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import yaml

from agent.alerting.rules import Rule
from agent.alerting.slo import span
from agent.alerting.slo_windows import BurnRule
from agent.config.load import CheckSpec
from agent.telemetry.series import Metric, label_name, prometheus_name
from agent.telemetry.values import route, template_param
from checks.base import find_value

UP = prometheus_name(Metric("gauge", "firstwatch.check.up", "1", ""))
DURATION = prometheus_name(Metric("histogram", "firstwatch.check.duration", "s", ""))
BURN_RATE = prometheus_name(Metric("gauge", "firstwatch.slo.burn_rate", "1", ""))
CHECK_NAME, CHECK_TARGET = label_name("check.name"), label_name("check.target")
AGENT_NAME = label_name("firstwatch.agent.name")
BY = f"by ({CHECK_NAME}, {CHECK_TARGET})"
DEFAULT_SCRAPE_INTERVAL_S = 60.0  # Prometheus' own default scrape_interval
SCRAPES_PER_WINDOW = 4
HEADER = (
    "# Prometheus rules for a central Prometheus scraping firstwatch agents (firstwatch rules).\n"
    "# Generated from the config: edit the config, not this file.\n"
)


@dataclass(frozen=True)
class AlertingRule:
    """One Prometheus alerting rule; ``labels`` and ``annotations`` in output order."""

    alert: str
    expr: str
    for_s: float
    keep_firing_for_s: float
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Skipped:
    """A rule of ``check`` Prometheus cannot judge, and why."""

    check: str
    rule: str
    why: str


@dataclass(frozen=True)
class RuleGroup:
    """One check's group: its alerting rules and skipped rules, in the config's order."""

    name: str
    items: tuple[AlertingRule | Skipped, ...]

    @property
    def rules(self) -> tuple[AlertingRule, ...]:
        return tuple(i for i in self.items if isinstance(i, AlertingRule))

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return tuple(i for i in self.items if isinstance(i, Skipped))


def rule_groups(checks: Iterable[CheckSpec], scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> list[RuleGroup]:
    """One group per check with rules, in config order, for a Prometheus scraping the agents
    every ``scrape_interval_s`` (it sets the window of ``duration`` rules; pass the same to
    :func:`render`)."""
    assert scrape_interval_s > 0
    groups = []
    for spec in checks:
        items: list[AlertingRule | Skipped] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for rule in spec.rules:
            item = _item(spec, rule, scrape_interval_s)
            if isinstance(item, AlertingRule):
                key = (item.alert, item.labels)
                if key in seen:  # Prometheus would see one alert twice
                    item = Skipped(spec.config.name, rule.text, "the same alert as an earlier rule of the check")
                seen.add(key)
            items.append(item)
        if items:
            groups.append(RuleGroup(f"firstwatch.{spec.config.name}", tuple(items)))
    return groups


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string (Go escapes: quotes, backslashes, controls)."""
    return json.dumps(value, ensure_ascii=False)


def selector(metric: str, matchers: Sequence[tuple[str, str]]) -> str:
    """``metric{k="v",...}`` with every value escaped."""
    return metric + "{" + ",".join(f"{k}={promql_string(v)}" for k, v in matchers) + "}"


def duration(seconds: float) -> str:
    """A Prometheus duration: ``1h30m``, ``500ms``, ``0s`` (whole milliseconds)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out += f"{n}{unit}"
    return out


def number(value: float) -> str:
    """A PromQL number: ``0.9`` for ``90 * 0.01`` (12 significant digits), ``14``, ``1e+12``."""
    assert math.isfinite(value)
    text = f"{value:.12g}"
    return "0" if text == "-0" else text


def rate_window(interval_s: float, scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> float:
    """W of a ``duration`` rule: max(4 x the check's interval, 4 x the scrape interval), rounded
    up to whole seconds: at least 4 runs, and 4 scrapes (``rate`` needs 2 samples in W)."""
    return float(math.ceil(SCRAPES_PER_WINDOW * max(interval_s, scrape_interval_s) - 1e-9))


def literal(text: str) -> str:
    """``text`` for a label or annotation, which Prometheus expands as a Go template: a literal
    ``{{`` becomes ``{{ "{{" }}``; one line."""
    return " ".join(text.splitlines()).replace("{{", '{{ "{{" }}')


def _item(spec: CheckSpec, rule: Rule, scrape_interval_s: float) -> AlertingRule | Skipped:
    name = spec.config.name
    runbook = rule.runbook or spec.policy.runbook
    if isinstance(rule, BurnRule):
        return _burn(spec, rule, runbook)
    if rule.value_name is None:
        alert, condition, what = "FirstwatchDown", f"{selector(UP, [(CHECK_NAME, name)])} == 0", "down"
    else:
        alert, what = "FirstwatchValue", literal(rule.when)
        judged = _condition(spec, rule, scrape_interval_s)
        if isinstance(judged, Skipped):
            return judged
        condition, mean_over = judged
        if mean_over is not None:
            what += f" (the mean over {mean_over})"
    if rule.quorum is None:  # per agent, as the agent judges it: every label of the series kept
        return _alert(name, alert, condition, rule, runbook, f"{_here(name)} {what}")
    expr = f"count {BY} ({condition}) >= {rule.quorum}"
    summary = f"{_there(name)}: {what} from {{{{ $value }}}} agent(s) (quorum {rule.quorum})"
    return _alert(name, alert, expr, rule, runbook, summary)


def _there(check: str) -> str:
    """``shop-home {{ $labels.check_target }}``: the check and target of an alert."""
    return f"{literal(check)} {{{{ $labels.{CHECK_TARGET} }}}}"


def _here(check: str) -> str:
    """``{{ $labels.firstwatch_agent_name }}: shop-home {{ $labels.check_target }}``: a
    per-agent alert names its agent first."""
    return f"{{{{ $labels.{AGENT_NAME} }}}}: {_there(check)}"


def _condition(spec: CheckSpec, rule: Rule, scrape_interval_s: float) -> tuple[str, str | None] | Skipped:
    """The per-series PromQL condition of a value rule and the window of its mean (``duration``
    only), or why there is none."""
    assert rule.value_name is not None and rule.op is not None and rule.threshold is not None
    name = spec.config.name
    check = [(CHECK_NAME, name)]
    if rule.value_name == "duration":
        w = duration(rate_window(spec.config.interval, scrape_interval_s))
        mean = f"rate({selector(DURATION + '_sum', check)}[{w}]) / rate({selector(DURATION + '_count', check)}[{w}])"
        return f"({mean}) {rule.op} {number(rule.threshold)}", w
    value = find_value(spec.cls.VALUES, rule.value_name)
    if value is None:  # compile_rule refuses these: never here
        return Skipped(name, rule.text, f"{spec.config.type} checks do not declare {rule.value_name}")
    if value.unit == "any":
        why = (
            f"{rule.value_name}'s metric depends on the unit the plugin reports at run time"
            " (firstwatch_check_perf_seconds, _bytes, _ratio or firstwatch_check_perf)"
        )
        return Skipped(name, rule.text, why)
    r = route(spec.config.type, value)
    if r is None:
        return Skipped(name, rule.text, f"{rule.value_name} is not exported as a gauge")
    metric = prometheus_name(Metric("gauge", r.metric, r.unit, ""))
    matchers = check + [(label_name(k), v) for k, v in r.attributes]
    if r.param_attribute:
        matchers.append((label_name(r.param_attribute), template_param(value, rule.value_name)))
    return f"{selector(metric, matchers)} {rule.op} {number(rule.threshold * r.scale)}", None


def _burn(spec: CheckSpec, rule: BurnRule, runbook: str | None) -> AlertingRule:
    """Per agent (an SLO's burn alerts have no quorum): the agent's own burn-rate gauges."""
    assert rule.burn is not None and rule.quorum is None
    name, burn = spec.config.name, number(rule.burn.burn)
    long, short = span(rule.burn.long), span(rule.burn.short)
    over_long = f"{selector(BURN_RATE, [(CHECK_NAME, name), ('window', long)])} > {burn}"
    over_short = f"{selector(BURN_RATE, [(CHECK_NAME, name), ('window', short)])} > {burn}"
    expr = f"{over_long} and ignoring (window) {over_short}"
    summary = (
        f'{_here(name)} error budget burning {{{{ $value | printf "%.1f" }}}}x over {long}'
        f" (and above {burn}x over {short})"
    )
    return _alert(name, "FirstwatchSloBurn", expr, rule, runbook, summary)


def _alert(check: str, alert: str, expr: str, rule: Rule, runbook: str | None, summary: str) -> AlertingRule:
    labels = [(CHECK_NAME, literal(check)), ("severity", rule.severity), ("firstwatch_rule", literal(rule.text))]
    if rule.quorum is not None:
        labels.append(("quorum", str(rule.quorum)))
    annotations = [("summary", summary)]
    if runbook:
        annotations.append(("runbook_url", literal(runbook)))
    return AlertingRule(alert, expr, rule.for_s, rule.recover_for_s, tuple(labels), tuple(annotations))


def header(scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> str:
    """The rule file's comment lines: what made it, and the scrape interval it assumes."""
    every = duration(scrape_interval_s)
    return HEADER + (
        f"# Assumes Prometheus scrapes the agents every {every} (firstwatch rules --scrape-interval {every}):\n"
        "# a duration rule's mean spans at least 4 scrapes.\n"
    )


def render(groups: Sequence[RuleGroup], scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> str:
    """The rule file: ``groups:`` with each group's rules, a comment line per skipped rule;
    ``scrape_interval_s`` as given to :func:`rule_groups`, said in the header."""
    if not groups:
        return header(scrape_interval_s) + "groups: []\n"
    out = [header(scrape_interval_s), "groups:\n"]
    for group in groups:
        out.append(_dump([{"name": group.name}]))
        rules = group.rules
        out.append("  rules:\n" if rules else "  rules: []\n")
        for item in group.items:
            if isinstance(item, Skipped):
                out.append(f"  # skipped {' '.join(item.rule.splitlines())!r}: {' '.join(item.why.splitlines())}\n")
            else:
                out.append(_indent(_dump([_rule_mapping(item)]), "  "))
    return "".join(out)


def _rule_mapping(rule: AlertingRule) -> dict[str, object]:
    out: dict[str, object] = {"alert": rule.alert, "expr": rule.expr}
    if rule.for_s > 0:
        out["for"] = duration(rule.for_s)
    if rule.keep_firing_for_s > 0:
        out["keep_firing_for"] = duration(rule.keep_firing_for_s)
    out["labels"] = dict(rule.labels)
    out["annotations"] = dict(rule.annotations)
    return out


def _dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1_000_000)


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True))
