"""Turn results into events: judge each rule, step its state machine, and name the incidents.

One :class:`AlertBook` per runtime holds an :class:`agent.state.AlertState` per
(check, target, rule). It is the only place that creates incident ids and writes event summaries,
so every sink, the timeline and the CLI tell the same story.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import CheckSpec
from agent.events import Event, fingerprint, new_incident_id
from agent.rules import Rule, Verdict
from agent.state import INACTIVE, AlertState, step
from agent.units import format_duration
from checks.base import Result

log = logging.getLogger("firstwatch.alerts")

Key = tuple[str, str, int]  # check, target, rule index


@dataclass
class Alert:
    """The live state of one alert plus the incident it belongs to while firing."""

    state: AlertState = INACTIVE
    incident: str | None = None
    severity: str | None = None


class AlertBook:
    def __init__(self, agent_name: str, labels: dict[str, str], new_id: Callable[[], str] = new_incident_id) -> None:
        self.agent_name = agent_name
        self.labels = labels
        self.new_id = new_id
        self.alerts: dict[Key, Alert] = {}

    def observe(self, spec: CheckSpec, result: Result) -> list[Event]:
        """Judge ``result`` against every rule of ``spec``; return the events it causes."""
        events: list[Event] = []
        now = result.started_at
        for rule in spec.rules:
            key = (result.check, result.target, rule.index)
            alert = self.alerts.get(key)
            if alert is None:
                alert = self.alerts[key] = Alert()
            verdict = rule.evaluate(result)
            before = alert.state
            alert.state, transition = step(before, verdict.holds, now, rule.for_s, rule.recover_for_s)
            if transition == "firing":
                alert.incident, alert.severity = self.new_id(), rule.severity
                events.append(self._event("firing", spec, rule, result, verdict, alert, alert.state.since))
            elif transition == "resolved":
                events.append(self._event("resolved", spec, rule, result, verdict, alert, before.since))
                alert.incident = alert.severity = None
            elif transition is not None:
                log.debug("%s %s %s: %s (%s)", result.check, result.target, rule.text, transition, verdict.explanation)
        return events

    def firing(self) -> list[tuple[Key, Alert]]:
        return [(k, a) for k, a in self.alerts.items() if a.state.phase == "firing"]

    def _event(
        self,
        kind: str,
        spec: CheckSpec,
        rule: Rule,
        result: Result,
        verdict: Verdict,
        alert: Alert,
        since: float | None,
    ) -> Event:
        prefix = result.check if len(spec.config.targets or ()) <= 1 else f"{result.check} {result.target}"
        if kind == "firing":
            summary = f"{prefix}: {verdict.explanation}" + (f" for {format_duration(rule.for_s)}" if rule.for_s else "")
        else:
            lasted = format_duration(result.started_at - since) if since is not None else "?"
            summary = f"{prefix}: resolved after {lasted}: {rule.text} (now {verdict.explanation})"
        return Event(
            kind="firing" if kind == "firing" else "resolved",
            severity=alert.severity or rule.severity,
            summary=summary,
            agent=self.agent_name,
            time=result.started_at + result.duration_s,
            incident=alert.incident,
            fingerprint=fingerprint(self.agent_name, result.check, result.target, rule.text),
            check=result.check,
            target=result.target,
            type=result.type,
            rule=rule.text,
            value=verdict.value if verdict.value is not None else None,
            started_at=since,
            labels={**self.labels, **spec.config.labels},
        )
