"""Render ``firstwatch check`` findings as a text table, one JSON document, or a Nagios plugin line.

Formats are contract (DESIGN.md A2): scripts parse ``--format json``, Nagios/Icinga parse
``--format nagios`` (``STATUS - summary | perfdata``, then one line per failing check).
"""

from __future__ import annotations

import json
from typing import Any

from agent.oneshot import CRITICAL, OK, UNKNOWN, WARNING, Finding, exit_code
from agent.units import format_duration, format_value
from checks.base import ValueSpec, find_value

STATUS_WORDS = {OK: "ok", WARNING: "warning", CRITICAL: "critical", UNKNOWN: "unknown"}


def summary(f: Finding) -> str:
    if f.failing:
        return "; ".join(f"{verdict.explanation} [{rule.text}]" for rule, verdict in f.failing)
    if not f.result.ok:  # failed, but no rule cares (e.g. only a latency rule)
        return f"down ({f.result.error}), no rule fires"
    return "ok: " + describe_values(f.spec.cls.VALUES, f.result.values)


def describe_values(specs: tuple[ValueSpec, ...], values: dict[str, float], limit: int = 8) -> str:
    """``cpu 12%, memory 41%, disk[/] 55%``: the measured values in their units."""
    parts = []
    for name, value in list(values.items())[:limit]:
        spec = find_value(specs, name)
        parts.append(f"{name} {format_value(value, spec.unit) if spec else f'{value:g}'}")
    return ", ".join(parts)


def _status_of(f: Finding) -> str:
    if f.failing:
        return (f.severity or "").upper()
    return "UNKNOWN" if f.internal_error else "OK"


def render_text(findings: list[Finding]) -> str:
    rows = [("CHECK", "TARGET", "STATUS", "TIME", "DETAIL")]
    for f in findings:
        r = f.result
        rows.append((r.check, r.target, _status_of(f), format_duration(r.duration_s), summary(f)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    failing = [f for f in findings if not f.ok]
    code = exit_code(findings)
    lines.append("")
    lines.append(
        f"{STATUS_WORDS[code].upper()}: {len(findings)} target(s) checked, {len(failing)} failing"
        + (f" (worst: {worst_text(findings)})" if failing else "")
    )
    return "\n".join(line.rstrip() for line in lines)


def worst_text(findings: list[Finding]) -> str:
    from agent.severity import worst

    return worst([f.severity for f in findings]) or "none"


def result_dict(f: Finding) -> dict[str, Any]:
    r = f.result
    return {
        "check": r.check,
        "target": r.target,
        "type": r.type,
        "ok": f.ok,
        "up": r.ok,
        "severity": f.severity,
        "summary": summary(f),
        "duration_s": round(r.duration_s, 6),
        "values": r.values,
        "error_kind": r.error_kind,
        "error": r.error,
        "failing": [
            {"rule": rule.text, "severity": rule.severity, "explanation": verdict.explanation, "value": verdict.value}
            for rule, verdict in f.failing
        ],
    }


def render_json(findings: list[Finding]) -> str:
    code = exit_code(findings)
    doc = {"status": STATUS_WORDS[code], "exit_code": code, "results": [result_dict(f) for f in findings]}
    return json.dumps(doc, indent=2)


def _label(f: Finding, single: bool) -> str:
    name = f.result.check if single else f"{f.result.check} {f.result.target}"
    return "'" + name.replace("'", "''").replace("=", "_") + " duration'"


def render_nagios(findings: list[Finding]) -> str:
    code = exit_code(findings)
    failing = [f for f in findings if not f.ok or f.internal_error]
    targets_per_check: dict[str, int] = {}
    for f in findings:
        targets_per_check[f.result.check] = targets_per_check.get(f.result.check, 0) + 1
    if failing:
        names = ", ".join(f"{f.result.check} {f.result.target} ({f.severity or 'unknown'})" for f in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        text = f"{len(failing)} of {len(findings)} failing: {names}{more}"
    else:
        text = f"all {len(findings)} targets ok"
    perf = " ".join(
        f"{_label(f, targets_per_check[f.result.check] == 1)}={f.result.duration_s:.6f}s;;;0" for f in findings
    )
    lines = [f"{STATUS_WORDS[code].upper()} - {text} | {perf}"]
    for f in failing:
        lines.append(f"{f.result.check} {f.result.target}: {_status_of(f)} {summary(f)}")
    return "\n".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "nagios": render_nagios}
