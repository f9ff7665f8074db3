"""The status document of a running agent, built from a runtime's memory and its store.

What ``/status``, the status page and ``firstwatch status`` show: the agent, a summary, the open
incidents with their recent timeline (read on the database thread, never on the loop), and every
check's members with their last result (and its screenshot, if the run saved one) and the rules
firing on them. The shape is ``agent.web.snapshot.Snapshot``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agent import __version__
from agent.alerting.quiet import Quiet
from agent.core.events import iso_time
from agent.core.severity import SEVERITIES, rank, worst
from agent.incidents.model import Entry
from agent.incidents.report_facts import artifact_of, severity_bands
from agent.incidents.store import Store
from agent.web.snapshot import (
    CheckView,
    FiringRule,
    HeldRule,
    IncidentView,
    MemberView,
    QuietView,
    Snapshot,
    TimelineItem,
    artifact_name,
)

if TYPE_CHECKING:
    from agent.engine.runtime import Runtime


async def build_snapshot(rt: Runtime, started_at: float) -> Snapshot:
    open_incidents = await rt.writer.call(lambda: rt.store.incidents(open_only=True))
    timelines = await rt.writer.call(_timelines, rt.store, [inc.id for inc in open_incidents])
    members: dict[str, list[MemberView]] = {}
    firing: dict[tuple[str, str], list[FiringRule]] = {}
    for (name, member, rule), alert in rt.book.firing():
        firing.setdefault((name, member), []).append({"rule": rule, "severity": alert.severity or ""})
    now = time.time()
    held: dict[tuple[str, str], list[HeldRule]] = {}
    for (name, member, rule), why in rt.book.held(now):
        held.setdefault((name, member), []).append({"rule": rule, "why": why})
    histories = await rt.history.views([spec.config.name for spec, _ in rt.checks])
    slos = rt.slos.views()
    up = down = 0
    checks: list[CheckView] = []
    for spec, check in rt.checks:
        rows: list[MemberView] = []
        group = f"{len(spec.config.targets or [])} targets"
        for target in check.targets():
            r = rt.last.get((spec.config.name, target))
            up += bool(r and r.ok)
            down += bool(r and not r.ok)
            rows.append(
                {
                    "target": target,
                    "up": None if r is None else r.ok,
                    "last_run": iso_time(r.started_at) if r else None,
                    "duration_s": round(r.duration_s, 6) if r else None,
                    "error": r.error if r else None,
                    "values": dict(r.values) if r else {},
                    "units": dict(getattr(r.values, "units", {})) if r else {},
                    "firing": firing.get((spec.config.name, target), []) + firing.get((spec.config.name, group), []),
                    "held": held.get((spec.config.name, target), []) + held.get((spec.config.name, "*"), []),
                    "artifact": artifact_name(r.artifact) if r else None,
                }
            )
        members[spec.config.name] = rows
        checks.append(
            {
                "name": spec.config.name,
                "type": spec.config.type,
                "interval_s": spec.config.interval,
                "depends_on": list(spec.policy.depends_on),
                "runbook": spec.policy.runbook,
                "quiet": _quiet(rt.quiet.quiet_for(spec.config.name, {**rt.cfg.labels, **spec.config.labels}, now)),
                "members": rows,
                "history": histories[spec.config.name],
                "slo": slos.get(spec.config.name, []),
            }
        )
    incidents: list[IncidentView] = []
    for inc in sorted(open_incidents, key=lambda i: (-rank(i.severity), i.fired_at)):
        timeline: list[TimelineItem] = [
            {
                "time": iso_time(e.time),
                "kind": e.kind,
                "text": e.text,
                "author": e.author,
                "artifact": artifact_name(artifact_of(e)),
            }
            for e in timelines[inc.id]
            if e.kind != "delivered"
        ]
        incidents.append(
            {
                "id": inc.id,
                "summary": inc.summary,
                "severity": inc.severity,
                "check": inc.check,
                "target": inc.target,
                "started_at": iso_time(inc.started_at),
                "fired_at": iso_time(inc.fired_at),
                "acked_by": inc.acked_by,
                "acked_at": iso_time(inc.acked_at) if inc.acked_at else None,
                "runbook": inc.runbook,
                "affected": rt.book.deps.affected(inc.check),
                "timeline": timeline[-50:],
                "bands": severity_bands(inc, timelines[inc.id]),
            }
        )
    return {
        "agent": {
            "name": rt.cfg.agent_name,
            "version": __version__,
            "started_at": iso_time(started_at),
            "uptime_s": round(time.time() - started_at, 3),
            "labels": dict(rt.cfg.labels),
        },
        "refresh_s": 10,
        "summary": {
            "checks": len(rt.checks),
            "targets": sum(len(rows) for rows in members.values()),
            "up": up,
            "down": down,
            "open_incidents": len(incidents),
            "worst": worst([i["severity"] for i in incidents]),
        },
        "incidents": incidents,
        "checks": checks,
        "slos": [v for c in checks for v in c["slo"]],
        "severities": list(SEVERITIES),
    }


def _quiet(quiet: Quiet | None) -> QuietView | None:
    if quiet is None:
        return None
    return {
        "kind": quiet.kind,
        "name": quiet.name,
        "until": iso_time(quiet.until),
        "reason": quiet.reason,
        "by": quiet.by,
    }


def _timelines(store: Store, incidents: list[str]) -> dict[str, list[Entry]]:
    return {inc: store.entries(incident=inc) for inc in incidents}
