"""Render ``firstwatch check`` findings as a text table, one JSON document, or a Nagios plugin line.

Formats are contract (docs/contract.md): scripts parse ``--format json``, Nagios/Icinga parse
``--format nagios`` (``STATUS - summary | perfdata``, then one line per failing check and group).

Numbers are for humans in text (:mod:`agent.core.units`: ``11ms``, ``41%``, ``1.2MB``, ``0.0112``).
Nagios perfdata carries every numeric value of every target, each with its unit as the plugin
guidelines define them: seconds as ``s``, percent as ``%``, bytes as ``B``, anything else
(counts, status codes, days) without a unit. A label is ``CHECK VALUE`` (``CHECK TARGET VALUE``
when the check has several targets), in single quotes when it holds spaces or quotes (a quote
doubled inside), with ``=`` and ``|`` replaced by ``_``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from agent.alerting.rules import Rule
from agent.core.units import format_duration
from agent.engine.oneshot import CRITICAL, OK, UNKNOWN, WARNING, Finding, exit_code, groups, worst_severity
from checks.base import describe_values, unit_of

STATUS_WORDS = {OK: "ok", WARNING: "warning", CRITICAL: "critical", UNKNOWN: "unknown"}
_NAGIOS_UOM = {"s": "s", "%": "%", "bytes": "B"}  # any other unit: no UOM
_PERF_VALUES_PER_TARGET = 50  # perfdata labels are a plugin's to choose: bound the line


def _explain(f: Finding, rule_is_down: bool, explanation: str) -> str:
    if rule_is_down and f.plugin_state is not None and f.result.error:
        return f.result.error  # "WARNING: load 5.1", not "down (WARNING: load 5.1)"
    return explanation


def summary(f: Finding) -> str:
    explained = f" (depends on {', '.join(f.parents_failing)})" if f.parents_failing else ""
    return _summary(f) + explained


def _quorum(rule: Rule) -> str:
    return f" here; quorum of {rule.quorum} judged centrally" if rule.quorum is not None else ""


def _summary(f: Finding) -> str:
    if f.failing:
        return "; ".join(
            f"{_explain(f, rule.value_name is None, verdict.explanation)}{_quorum(rule)} [{rule.text}]"
            for rule, verdict in f.failing
        )
    if not f.result.ok:  # failed, but no rule cares (e.g. only a latency rule)
        if f.plugin_state is not None:
            return f"{f.result.error or f.result.status.upper()}, no rule fires"
        return f"down ({f.result.error}), no rule fires"
    return "ok: " + describe_values(f.spec.cls.VALUES, f.result.values)


def render_text(findings: list[Finding]) -> str:
    rows = [("CHECK", "TARGET", "STATUS", "TIME", "DETAIL")]
    for f in findings:
        r = f.result
        rows.append((r.check, r.target, f.label, format_duration(r.duration_s), summary(f)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    failing = [f for f in findings if f.state != OK]
    code = exit_code(findings)
    lines.append("")
    lines.extend(g.text for g in groups(findings) if g.failing)
    worst = worst_severity(findings)
    lines.append(
        f"{STATUS_WORDS[code].upper()}: {len(findings)} target(s) checked, {len(failing)} failing"
        + (f" (worst: {worst})" if failing and worst else "")
    )
    return "\n".join(line.rstrip() for line in lines)


def worst_text(findings: list[Finding]) -> str:
    return worst_severity(findings) or "none"


def result_dict(f: Finding) -> dict[str, Any]:
    r = f.result
    return {
        "check": r.check,
        "target": r.target,
        "type": r.type,
        "ok": f.ok,
        "up": r.ok,
        "status": STATUS_WORDS[f.state],
        "severity": f.severity,
        "summary": summary(f),
        "duration_s": round(r.duration_s, 6),
        "values": r.values,
        "error_kind": r.error_kind,
        "error": r.error,
        "failing": [
            {
                "rule": rule.text,
                "severity": rule.severity,
                "explanation": verdict.explanation,
                "value": verdict.value,
                "quorum": rule.quorum,
            }
            for rule, verdict in f.failing
        ],
        "depends_on_failing": list(f.parents_failing),
    }


def render_json(findings: list[Finding]) -> str:
    code = exit_code(findings)
    doc = {
        "status": STATUS_WORDS[code],
        "exit_code": code,
        "results": [result_dict(f) for f in findings],
        "groups": [
            {
                "check": g.check,
                "rule": g.rule.text,
                "members": g.members,
                "failing": g.failing,
                "severity": g.severity,
                "status": STATUS_WORDS[g.state],
            }
            for g in groups(findings)
        ],
    }
    return json.dumps(doc, indent=2)


def perf_label(text: str) -> str:
    """A perfdata label per the plugin guidelines: ``=`` and ``|`` replaced, quoted when needed."""
    text = "".join("_" if c in "=|" or not c.isprintable() else c for c in text)
    if any(c.isspace() or c == "'" for c in text):
        return "'" + text.replace("'", "''") + "'"
    return text


def perf_number(value: float) -> str:
    """A perfdata number: plain decimal notation (no exponent), at most 6 decimals."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def perfdata(f: Finding, single: bool) -> list[str]:
    """Every numeric value of one target as perfdata items; ``duration`` first."""
    r = f.result
    prefix = r.check if single else f"{r.check} {r.target}"
    values = {"duration": r.values.get("duration", r.duration_s), **r.values}
    items = []
    for name, value in list(values.items())[:_PERF_VALUES_PER_TARGET]:
        if not math.isfinite(value):
            continue
        unit = "s" if name == "duration" else unit_of(f.spec.cls.VALUES, r.values, name)
        uom = _NAGIOS_UOM.get(unit or "", "")
        bounds = ";;;0;100" if uom == "%" else ";;;0" if uom in ("s", "B") else ""
        items.append(f"{perf_label(f'{prefix} {name}')}={perf_number(value)}{uom}{bounds}")
    return items


def _line(text: str) -> str:
    """Text for a Nagios output line: ``|`` would start performance data there."""
    return text.replace("|", "/")


def render_nagios(findings: list[Finding]) -> str:
    code = exit_code(findings)
    failing = [f for f in findings if f.state != OK]
    failing_groups = [g for g in groups(findings) if g.failing]
    targets_per_check: dict[str, int] = {}
    for f in findings:
        targets_per_check[f.result.check] = targets_per_check.get(f.result.check, 0) + 1
    if failing:
        names = ", ".join(f"{f.result.check} {f.result.target} ({f.label.lower()})" for f in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        text = f"{len(failing)} of {len(findings)} failing: {names}{more}"
    else:
        text = f"all {len(findings)} targets ok"
    if failing_groups:
        text = "; ".join(g.text for g in failing_groups) + "; " + text
    perf = " ".join(item for f in findings for item in perfdata(f, targets_per_check[f.result.check] == 1))
    lines = [f"{STATUS_WORDS[code].upper()} - {_line(text)} | {perf}"]
    for f in failing:
        lines.append(_line(f"{f.result.check} {f.result.target}: {f.label} {summary(f)}"))
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "nagios": render_nagios}
